// Package eventlog reads and writes the TCG2 crypto-agile event logs of TDX
// runtime measurement registers (RTMR0-3) and replays them against the
// registers of a verified quote.
//
// Two logs meet here. The firmware's Confidential Computing Event Log
// (CCEL, with its ACPI table) records what TDVF, the boot loader and the
// kernel measured into RTMR0-2. Cloister's own runtime log records what
// `cloister run` extended into RTMR3: one event per app launch. Both use
// the TCG PC Client "crypto agile" format (a TCG_PCR_EVENT header carrying
// "Spec ID Event03", then TCG_PCR_EVENT2 records), so one parser
// (github.com/google/go-eventlog/tcg, the kept library) reads both and one
// replay covers all four registers. The event's "PCR index" is the CC
// measurement register index of the CCEL (GHCI 1.5: 0 is MRTD, 1..4 are
// RTMR0..3).
//
// Cloister's app event is an EV_EVENT_TAG (TCG_PCClientTaggedEvent) with
// tag AppEventTag, whose data is the fixed AppRecordSize-byte record of
// App; the digest extended into RTMR3 is SHA-384 of the whole event data,
// so the record a verifier reads is exactly what was extended.
//
// Parsing is pure (bytes in, events out); Replay takes the register values
// from the caller, who must have read them from a verified quote.
package eventlog

import (
	"bytes"
	"crypto/sha512"
	"encoding/binary"
	"errors"
	"fmt"
)

// Sizes and indexes of the format.
const (
	// DigestSize is the size of an RTMR and of every digest replayed into
	// one (SHA-384).
	DigestSize = sha512.Size384
	// Registers is the number of RTMRs.
	Registers = 4
	// RuntimeRegister is the RTMR Cloister extends (the one the TDX
	// architecture leaves to the guest's run time).
	RuntimeRegister = 3
	// algSHA384 is TPM_ALG_SHA384.
	algSHA384 = 0x000C
	// evNoAction, evEventTag are TCG PC Client event types.
	evNoAction = 0x00000003
	evEventTag = 0x00000006
	// AppEventTag is the taggedEventID of Cloister's app event: "CLAP"
	// little-endian, chosen to be readable in a hex dump.
	AppEventTag = 0x50414c43
	// AppRecordSize is the size of the app record (the tagged event data).
	AppRecordSize = len(appMagic) + 32 + 32 + 2 + 2 + 1
	// MaxLogSize caps one event log given to Parse. A real CCEL log area
	// is 256 KiB (go-tdx-guest's vector, TDVF's default); a runtime log
	// grows by 149 bytes per launch.
	MaxLogSize = 4 << 20
	// MaxEvents caps the events of all logs together.
	MaxEvents = 16384
)

// appMagic starts the app record and names its version.
var appMagic = [16]byte{'C', 'L', 'O', 'I', 'S', 'T', 'E', 'R', '-', 'A', 'P', 'P', '-', 'v', '1', 0}

// App is what Cloister's runtime event records about one app launch: the
// app's identity exactly as `cloister measure` computes it (package
// tee/appsign), which the evidence itself cannot name on TDX.
type App struct {
	// Measurement is the app's MRENCLAVE-style digest (SHA-256 over the
	// binary and its signed configuration): the "app digest".
	Measurement [32]byte
	// Signer is MRSIGNER (zero for an unsigned app).
	Signer [32]byte
	// ProductID, SVN and Debug come from the signed configuration.
	ProductID uint16
	SVN       uint16
	Debug     bool
}

// ErrFormat is wrapped by every format error of this package.
var ErrFormat = errors.New("eventlog: malformed")

// Record returns the app record: appMagic | measurement | signer |
// product id (u16 LE) | svn (u16 LE) | flags (u8: bit 0 debug).
func (a App) Record() []byte {
	b := make([]byte, 0, AppRecordSize)
	b = append(b, appMagic[:]...)
	b = append(b, a.Measurement[:]...)
	b = append(b, a.Signer[:]...)
	b = binary.LittleEndian.AppendUint16(b, a.ProductID)
	b = binary.LittleEndian.AppendUint16(b, a.SVN)
	var flags byte
	if a.Debug {
		flags = 1
	}
	return append(b, flags)
}

// EventData returns the EV_EVENT_TAG event data of a's launch: the
// TCG_PCClientTaggedEvent {taggedEventID, taggedEventDataSize, record}.
func (a App) EventData() []byte {
	rec := a.Record()
	b := binary.LittleEndian.AppendUint32(nil, AppEventTag)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(rec)))
	return append(b, rec...)
}

// Digest is the value extended into RTMR3 for a's launch: SHA-384 of the
// event data.
func (a App) Digest() [DigestSize]byte { return sha512.Sum384(a.EventData()) }

// ParseAppEvent parses the data of an EV_EVENT_TAG event as Cloister's app
// event. ok is false (and err nil) when the data is a tagged event of
// another tag; a Cloister tag with a malformed record is an error.
func ParseAppEvent(data []byte) (a App, ok bool, err error) {
	if len(data) < 8 {
		return App{}, false, fmt.Errorf("%w: tagged event of %d bytes is shorter than its 8-byte header", ErrFormat, len(data))
	}
	if binary.LittleEndian.Uint32(data) != AppEventTag {
		return App{}, false, nil
	}
	n := binary.LittleEndian.Uint32(data[4:])
	rec := data[8:]
	if uint64(n) != uint64(len(rec)) || len(rec) != AppRecordSize {
		return App{}, false, fmt.Errorf("%w: app event: tagged data size %d, %d bytes follow, want %d", ErrFormat, n, len(rec), AppRecordSize)
	}
	if !bytes.Equal(rec[:len(appMagic)], appMagic[:]) {
		return App{}, false, fmt.Errorf("%w: app event: record starts %q, want %q", ErrFormat, rec[:len(appMagic)], appMagic[:])
	}
	rec = rec[len(appMagic):]
	copy(a.Measurement[:], rec[:32])
	copy(a.Signer[:], rec[32:64])
	a.ProductID = binary.LittleEndian.Uint16(rec[64:])
	a.SVN = binary.LittleEndian.Uint16(rec[66:])
	switch rec[68] {
	case 0:
	case 1:
		a.Debug = true
	default:
		return App{}, false, fmt.Errorf("%w: app event: flags %#02x, only bit 0 (debug) is defined", ErrFormat, rec[68])
	}
	return a, true, nil
}

// EncodeHeader returns the first record of a runtime log: a TCG_PCR_EVENT
// (SHA-1 layout, as the spec requires of the first record) of type
// EV_NO_ACTION whose data is the TCG_EfiSpecIDEventStruct "Spec ID
// Event03" naming one algorithm, SHA-384 (the RTMRs' only bank).
func EncodeHeader() []byte {
	var spec []byte
	spec = append(spec, "Spec ID Event03\x00"...)
	spec = binary.LittleEndian.AppendUint32(spec, 0) // platformClass: client
	spec = append(spec, 0, 2, 2, 2)                  // specVersionMinor 0, Major 2, errata 2, uintnSize 2 (UINT64)
	spec = binary.LittleEndian.AppendUint32(spec, 1) // numberOfAlgorithms
	spec = binary.LittleEndian.AppendUint16(spec, algSHA384)
	spec = binary.LittleEndian.AppendUint16(spec, DigestSize)
	spec = append(spec, 0) // vendorInfoSize

	b := binary.LittleEndian.AppendUint32(nil, 0) // PCRIndex
	b = binary.LittleEndian.AppendUint32(b, evNoAction)
	b = append(b, make([]byte, 20)...) // SHA-1 digest: zero
	b = binary.LittleEndian.AppendUint32(b, uint32(len(spec)))
	return append(b, spec...)
}

// EncodeEvent returns one TCG_PCR_EVENT2 record for RTMR rtmr (0..3) with one
// SHA-384 digest.
func EncodeEvent(rtmr int, eventType uint32, digest [DigestSize]byte, data []byte) []byte {
	b := binary.LittleEndian.AppendUint32(nil, uint32(rtmr+1)) // CC MR index
	b = binary.LittleEndian.AppendUint32(b, eventType)
	b = binary.LittleEndian.AppendUint32(b, 1) // digests.count
	b = binary.LittleEndian.AppendUint16(b, algSHA384)
	b = append(b, digest[:]...)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(data)))
	return append(b, data...)
}

// EncodeAppEvent returns the RTMR3 record of a's launch.
func EncodeAppEvent(a App) []byte {
	return EncodeEvent(RuntimeRegister, evEventTag, a.Digest(), a.EventData())
}
