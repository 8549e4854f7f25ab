package eventlog

import (
	"bytes"
	"crypto/sha512"
	"encoding/binary"
	"testing"
	"time"

	"github.com/google/go-tdx-guest/abi"
	tdxrtmr "github.com/google/go-tdx-guest/rtmr"
	"github.com/google/go-tdx-guest/verify"
)

// ccelEventOffsets walks the cos-113 CCEL (every event has one SHA-384
// digest) and returns where each event starts and where the padding does.
func ccelEventOffsets(t *testing.T, log []byte) (starts []int, end int) {
	t.Helper()
	off := 32 + int(binary.LittleEndian.Uint32(log[28:]))
	for binary.LittleEndian.Uint32(log[off:]) != 0xFFFFFFFF {
		if binary.LittleEndian.Uint32(log[off+8:]) != 1 || binary.LittleEndian.Uint16(log[off+12:]) != algSHA384 {
			t.Fatalf("event at %d: not one SHA-384 digest", off)
		}
		starts = append(starts, off)
		n := off + 14 + DigestSize
		off = n + 4 + int(binary.LittleEndian.Uint32(log[n:]))
	}
	return starts, off
}

// TestCCELMutationsAgainstGoTDXGuest is the differential on mutations of
// the real vector: for each, our Parse+Replay and go-tdx-guest's
// ParseCcelWithTdQuote (go-eventlog's replay) must both accept or both
// refuse, except where our rule is stricter or the prefix rule says why.
// The log area keeps its size (the table's length): insertions overwrite
// padding.
func TestCCELMutationsAgainstGoTDXGuest(t *testing.T) {
	v := loadCCEL(t)
	raw, err := readTestdata("cos-113-tdx-quote.dat")
	if err != nil {
		t.Fatal(err)
	}
	quote, err := abi.QuoteToProto(raw)
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2024, 8, 1, 0, 0, 0, 0, time.UTC)
	opts := tdxrtmr.TdxDefaultOpts(make([]byte, 64))
	opts.Verification = &verify.Options{Now: &verify.TimeSet{PckCertChain: at, TcbInfo: at, QeIdentity: at, PckCrl: at, RootCaCrl: at}}
	starts, end := ccelEventOffsets(t, v.log)
	if len(starts) != 43 {
		t.Fatalf("%d events", len(starts))
	}
	insert := func(ev []byte) []byte {
		b := bytes.Clone(v.log)
		copy(b[end:], ev)
		return b
	}
	edit := func(f func(b []byte)) []byte {
		b := bytes.Clone(v.log)
		f(b)
		return b
	}
	someDigest := sha512.Sum384([]byte("not measured"))
	// Two consecutive events of one register with different digests.
	parsed, err := Parse(v.log)
	if err != nil {
		t.Fatal(err)
	}
	sw := -1
	for i := 0; i+1 < len(parsed) && sw < 0; i++ {
		if parsed[i].Register == parsed[i+1].Register && parsed[i].Digest != parsed[i+1].Digest {
			sw = i
		}
	}
	if sw < 0 {
		t.Fatal("no two consecutive events of one register differ")
	}
	cases := []struct {
		name string
		log  []byte
		// ours, theirs: accepted?
		ours, theirs bool
	}{
		{"unchanged", v.log, true, true},
		{"extra trailing RTMR0 event", insert(EncodeEvent(0, 0x0D, someDigest, nil)), false, false},
		{"extra trailing RTMR2 event", insert(EncodeEvent(2, 0x0D, someDigest, []byte("x"))), false, false},
		// EV_NO_ACTION extends nothing (TCG PC Client): both skip it.
		{"trailing EV_NO_ACTION with a digest", insert(EncodeEvent(0, evNoAction, someDigest, []byte("x"))), true, true},
		{"first event relabelled EV_NO_ACTION", edit(func(b []byte) { binary.LittleEndian.PutUint32(b[starts[0]+4:], evNoAction) }), false, false},
		{"last event relabelled EV_NO_ACTION", edit(func(b []byte) { binary.LittleEndian.PutUint32(b[starts[42]+4:], evNoAction) }), false, false},
		{"RTMR0 event moved to RTMR1 (MR index 1 -> 2)", edit(func(b []byte) { binary.LittleEndian.PutUint32(b[starts[0]:], 2) }), false, false},
		{"RTMR2 event moved to RTMR3 (MR index 3 -> 4)", edit(func(b []byte) { binary.LittleEndian.PutUint32(b[starts[42]:], 4) }), false, false},
		{"event with MR index 0 (MRTD)", edit(func(b []byte) { binary.LittleEndian.PutUint32(b[starts[0]:], 0) }), false, false},
		{"two events swapped in order (same register)", swapEvents(v.log, starts, sw, sw+1), false, false},
		// Event data is not measured (the digest is of what was loaded):
		// both accept a changed data byte of a firmware event.
		{"firmware event data changed", edit(func(b []byte) { b[starts[42]+14+DigestSize+4] ^= 1 }), true, true},
		// An RTMR3 event after the quote: RTMR3 is zero in the quote. Ours
		// reports it uncovered (the runtime log's prefix rule: it is not
		// in the claims); go-eventlog compares the full replay and refuses.
		{"trailing RTMR3 event (uncovered)", insert(EncodeEvent(3, 0x0D, someDigest, nil)), true, false},
	}
	for _, c := range cases {
		_, terr := tdxrtmr.ParseCcelWithTdQuote(c.log, v.table, quote, &opts)
		var oerr error
		var res *Result
		events, oerr := Parse(c.log)
		if oerr == nil {
			res, oerr = Replay(events, v.rtmr)
		}
		if (oerr == nil) != c.ours || (terr == nil) != c.theirs {
			t.Errorf("%s: ours %v (want accepted=%v), go-tdx-guest %v (want accepted=%v)", c.name, oerr, c.ours, terr, c.theirs)
			continue
		}
		if res != nil && len(res.Events) != 43 {
			t.Errorf("%s: %d events covered, want the 43 of the vector", c.name, len(res.Events))
		}
	}
}

// swapEvents swaps events i and i+1 of log (by their byte ranges).
func swapEvents(log []byte, starts []int, i, j int) []byte {
	a := log[starts[i]:starts[j]]
	end := len(log)
	if j+1 < len(starts) {
		end = starts[j+1]
	}
	b := log[starts[j]:end]
	out := bytes.Clone(log[:starts[i]])
	out = append(out, b...)
	out = append(out, a...)
	return append(out, log[end:]...)
}
