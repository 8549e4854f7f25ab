package replica

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"testing"
	"time"

	"github.com/cloister-dev/cloister/ledger"
)

// TestMachineDeterministic: two machines fed the same committed payloads
// hold the same transactions byte for byte (signatures included, made
// with RFC 6979), and those signatures pass a fresh Core's Apply, which
// verifies each one: the signatures appended without re-verification
// (Core.AppendSignature) are valid.
func TestMachineDeterministic(t *testing.T) {
	id, err := ledger.NewIdentity(ledger.IdentityOptions{Now: time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)})
	if err != nil {
		t.Fatal(err)
	}
	sh := &shared{view: 2, id: id}
	rand.Read(sh.secret[:])
	a, b := newMachine(sh, 4), newMachine(sh, 4)
	for i := range 30 {
		var p []byte
		if i%7 == 6 {
			p = []byte{tagSign}
		} else {
			rec := ledger.Record{Kind: ledger.KindEntry, Collection: "c", Contents: fmt.Sprint(i)}
			p = ledger.AppendRecord(append([]byte{tagRecord}, bytes.Repeat([]byte{byte(i)}, 16)...), &rec)
		}
		for _, m := range []*machine{a, b} {
			if _, res, err := m.applyNormal(uint64(i+1), p); err != nil || res.err != nil {
				t.Fatalf("payload %d: %v %v", i, err, res.err)
			}
		}
	}
	last := a.core.Next() - 1
	if last != b.core.Next()-1 {
		t.Fatalf("machines at %d and %d", last, b.core.Next()-1)
	}
	fresh := ledger.NewCore(sh.view, sh.secret[:], &sh.id.NodeKey.PublicKey)
	sigs := 0
	for s := uint64(1); s <= last; s++ {
		ra, _ := a.core.Record(s, last)
		rb, _ := b.core.Record(s, last)
		if fmt.Sprint(ra) != fmt.Sprint(rb) {
			t.Fatalf("seqno %d differs:\n%+v\n%+v", s, ra, rb)
		}
		if ra.Kind == ledger.KindSignature {
			sigs++
		}
		if err := fresh.Apply(ra); err != nil {
			t.Fatalf("seqno %d does not re-apply: %v", s, err)
		}
	}
	if sigs < 5 {
		t.Fatalf("%d signatures in %d transactions", sigs, last)
	}
	// A signature made with another key is refused by Apply: the fresh
	// Core above really checked them.
	other, _ := ledger.NewIdentity(ledger.IdentityOptions{Now: time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)})
	c := ledger.NewCore(sh.view, sh.secret[:], &sh.id.NodeKey.PublicKey)
	c.Apply(ledger.Record{Kind: ledger.KindEntry, Seqno: 1, Collection: "c", Contents: "x"})
	bad, err := c.SignatureRecord(func(root [32]byte) ([]byte, error) { return other.NodeKey.Sign(rand.Reader, root[:], nil) })
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Apply(bad); err == nil {
		t.Fatal("a signature by another key applied")
	}
}
