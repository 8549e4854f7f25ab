package ledger

import (
	"bytes"
	"crypto/rand"
	"testing"

	"github.com/cloister-dev/cloister/kv/kvtest"
)

// FuzzSegment feeds the segment decoders real segments (from a ledger
// with entries, users, counters and signatures) and mutations of them:
// the sealed decoder must never panic and must reject anything it cannot
// authenticate; the plaintext decoder (what a key holder would see) must
// never panic, and what it accepts must re-encode to the same bytes.
func FuzzSegment(f *testing.F) {
	b := kvtest.NewMemBackend()
	fill(&testing.T{}, b, 5)
	key := bytes.Repeat([]byte{9}, 32)
	aead, _ := newAEAD(key)
	for _, k := range b.Keys() {
		if v, ok := b.Raw(k); ok && bytes.HasPrefix([]byte(k), []byte(segPrefix)) {
			f.Add(v, false)
		}
	}
	recs := []Record{
		{Kind: KindEntry, Seqno: 1, Collection: "c", Contents: "hello"},
		{Kind: KindUser, Seqno: 2, UserID: "AB:CD", Role: RoleReader},
		{Kind: KindCounter, Seqno: 3, Name: "n", Version: 1, Value: []byte{1, 2}},
		{Kind: KindSignature, Seqno: 4, TreeSize: 3, Signature: []byte{0x30, 1, 2}},
	}
	v, err := encodeSegment(aead, rand.Reader, 0, [32]byte{}, recs)
	if err != nil {
		f.Fatal(err)
	}
	pt, _ := aead.Open(nil, v[12:24], v[segHeader:], v[:12])
	f.Add(pt, true)
	f.Fuzz(func(t *testing.T, data []byte, plain bool) {
		if !plain {
			if _, err := decodeSegment(aead, 0, data); err == nil {
				t.Fatal("a segment not sealed with this key decoded")
			}
			return
		}
		s, err := decodePlain(0, data)
		if err != nil {
			return
		}
		v, err := encodeSegment(aead, rand.Reader, 0, s.prev, s.records)
		if err != nil {
			t.Fatalf("accepted segment does not re-encode: %v", err)
		}
		again, err := aead.Open(nil, v[12:24], v[segHeader:], v[:12])
		if err != nil || !bytes.Equal(again, data) {
			t.Fatal("accepted segment re-encodes differently")
		}
	})
}

// FuzzTxID: ParseTxID never panics, and what it accepts prints back to
// the same text.
func FuzzTxID(f *testing.F) {
	for _, s := range []string{"2.15", "1.1", "18446744073709551615.3", "02.1", "2.", "a.b", "2.15.1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tx, err := ParseTxID(s)
		if err == nil && tx.String() != s {
			t.Fatalf("%q parses to %s", s, tx)
		}
	})
}

// FuzzKeys: the key record decoder (behind the seal) never panics on any
// plaintext, seeded with a real record.
func FuzzKeys(f *testing.F) {
	id, err := NewIdentity(IdentityOptions{Now: testNow})
	if err != nil {
		f.Fatal(err)
	}
	pt, err := encodeKeys(&keys{view: 2, id: id})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(pt)
	f.Fuzz(func(t *testing.T, data []byte) {
		k, err := decodeKeys(data)
		if err == nil && (k.id.NodeKey == nil || k.id.ServiceCert == nil) {
			t.Fatal("a key record decoded without its keys")
		}
	})
}
