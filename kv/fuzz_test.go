package kv

import (
	"bytes"
	"testing"
)

// FuzzRecord feeds the host-record and state decoders arbitrary bytes: they
// must not panic, must fail closed with ErrTampered, and what they accept
// must re-encode to the same bytes.
func FuzzRecord(f *testing.F) {
	var h recordHeader
	h.store[0], h.rid[0], h.version, h.blob = 1, 2, 3, []byte("CLS1 blob")
	f.Add(encodeRecord(h))
	f.Add(encodeStateRecord(stateHeader{version: 1, blob: []byte("x")}))
	c, src := newTestCore()
	rd, _ := propose(src, c.st, []group{{changes: []change{{name: "a", value: []byte("1")}}}}, false)
	f.Add(encodeState(rd.next))
	f.Add([]byte{})
	f.Add([]byte("KVR1"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if h, err := decodeRecord(b); err == nil {
			if !bytes.Equal(encodeRecord(h), b) {
				t.Fatal("record does not round-trip")
			}
		}
		if h, err := decodeStateRecord(b); err == nil {
			if !bytes.Equal(encodeStateRecord(h), b) {
				t.Fatal("state record does not round-trip")
			}
		}
		if st, err := decodeState(b); err == nil {
			if !bytes.Equal(encodeState(st), b) {
				t.Fatal("state does not round-trip")
			}
		}
	})
}
