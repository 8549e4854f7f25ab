package eventlog

import (
	"encoding/binary"
	"fmt"
)

// Layout of the ACPI CCEL table (ACPI 6.5, section 5.2.34 "CC Event Log
// ACPI Table"): the 36-byte ACPI header, then CC type, CC subtype, two
// reserved bytes, the log area minimum length and start address.
const (
	ccelTableSize     = 56
	ccelSignature     = "CCEL"
	ccelOffType       = 36
	ccelOffSubtype    = 37
	ccelOffReserved   = 38
	ccelOffLogLength  = 40
	ccelOffLogAddress = 48
	// CCTypeTDX is the CC type of Intel TDX.
	CCTypeTDX = 2
)

// Table is a parsed ACPI CCEL table.
type Table struct {
	// CCType is the confidential computing type (CCTypeTDX).
	CCType uint8
	// LogLength and LogAddress locate the log area the table describes.
	LogLength, LogAddress uint64
}

// ParseTable parses an ACPI CCEL table (/sys/firmware/acpi/tables/CCEL)
// and checks its signature, length, checksum (all bytes sum to zero
// modulo 256, as ACPI requires), reserved bytes and TDX type.
func ParseTable(b []byte) (*Table, error) {
	if len(b) != ccelTableSize {
		return nil, fmt.Errorf("%w: CCEL table: %d bytes, want %d", ErrFormat, len(b), ccelTableSize)
	}
	if string(b[:4]) != ccelSignature {
		return nil, fmt.Errorf("%w: CCEL table: signature %q, want %q", ErrFormat, b[:4], ccelSignature)
	}
	if n := binary.LittleEndian.Uint32(b[4:]); n != ccelTableSize {
		return nil, fmt.Errorf("%w: CCEL table: header length %d, want %d", ErrFormat, n, ccelTableSize)
	}
	var sum byte
	for _, c := range b {
		sum += c
	}
	if sum != 0 {
		return nil, fmt.Errorf("%w: CCEL table: checksum: bytes sum to %#02x, want 0", ErrFormat, sum)
	}
	if b[ccelOffReserved] != 0 || b[ccelOffReserved+1] != 0 {
		return nil, fmt.Errorf("%w: CCEL table: reserved bytes %x are not zero", ErrFormat, b[ccelOffReserved:ccelOffReserved+2])
	}
	t := &Table{
		CCType:     b[ccelOffType],
		LogLength:  binary.LittleEndian.Uint64(b[ccelOffLogLength:]),
		LogAddress: binary.LittleEndian.Uint64(b[ccelOffLogAddress:]),
	}
	if t.CCType != CCTypeTDX || b[ccelOffSubtype] != 0 {
		return nil, fmt.Errorf("%w: CCEL table: CC type %d subtype %d, want TDX (%d, 0)", ErrFormat, t.CCType, b[ccelOffSubtype], CCTypeTDX)
	}
	return t, nil
}

// CheckLog checks that log is the whole log area t describes: its size is
// the table's log area length (the kernel exposes the area as is, at
// /sys/firmware/acpi/tables/data/CCEL).
func (t *Table) CheckLog(log []byte) error {
	if uint64(len(log)) != t.LogLength {
		return fmt.Errorf("%w: CCEL log area is %d bytes, the table says %d", ErrFormat, len(log), t.LogLength)
	}
	return nil
}
