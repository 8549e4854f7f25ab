package ledger

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/cloister-dev/cloister/kv/kvtest"
)

// TestAppendReceipt appends to two collections, waits for commit, and
// verifies every receipt with the merkle library and crypto/ecdsa, and
// the LedgerEntryV1 claims digest from the application claims.
func TestAppendReceipt(t *testing.T) {
	ctx := context.Background()
	n := openNode(t, kvtest.NewMemBackend())
	var txs []TxID
	for i := 0; i < 10; i++ {
		tx, err := n.Append(ctx, fmt.Sprintf("c%d", i%2), fmt.Sprintf("entry %d", i))
		if err != nil {
			t.Fatal(err)
		}
		if tx.View != 2 {
			t.Fatalf("view %d", tx.View)
		}
		txs = append(txs, tx)
	}
	for i, tx := range txs {
		if err := n.WaitCommitted(ctx, tx); err != nil {
			t.Fatal(err)
		}
		tr, ok, err := n.Receipt(tx)
		if err != nil || !ok {
			t.Fatalf("%s: %v %v", tx, ok, err)
		}
		n.mu.Lock()
		sig, _ := n.core.CoveringSignature(tx.Seqno, n.durable)
		n.mu.Unlock()
		checkReceipt(t, tr, n.Identity().ServiceCert, tx.Seqno-1, sig.TreeSize)
		c := tr.ApplicationClaims[0].LedgerEntry
		if c.Contents != fmt.Sprintf("entry %d", i) || c.Protocol != "LedgerEntryV1" {
			t.Fatalf("claims %+v", c)
		}
		k, _ := base64.StdEncoding.DecodeString(c.SecretKey)
		d := ClaimsDigest(LedgerEntryV1Digest(k, c.CollectionID, c.Contents))
		if fmt.Sprintf("%x", d) != tr.Receipt.LeafComponents.ClaimsDigest {
			t.Fatal("claims digest does not match the application claims")
		}
		e, err := n.Entry(tx)
		if err != nil || e.Contents != c.Contents {
			t.Fatalf("entry %s: %v", tx, err)
		}
	}
	if _, err := n.Entry(TxID{View: 3, Seqno: txs[0].Seqno}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("other view: %v", err)
	}
	if _, err := n.Entry(TxID{View: 2, Seqno: 10000}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("future seqno: %v", err)
	}
	if got := n.Collections(); len(got) != 2 || got[0] != "c0" || got[1] != "c1" {
		t.Fatalf("collections %v", got)
	}
	cur, err := n.Current("c1")
	if err != nil || cur.Contents != "entry 9" {
		t.Fatalf("current %v %v", cur, err)
	}
	page, more := n.List("c0", 0, 0)
	if len(page) != 5 || more {
		t.Fatalf("list %d %v", len(page), more)
	}
}

// TestReceiptTamper: a receipt with any leaf component, proof hash or
// signature byte changed no longer verifies (the checks in checkReceipt
// are not vacuous).
func TestReceiptTamper(t *testing.T) {
	ctx := context.Background()
	n := openNode(t, kvtest.NewMemBackend())
	var tx TxID
	for i := 0; i < 5; i++ {
		tx, _ = n.Append(ctx, "c", "x")
	}
	if err := n.WaitCommitted(ctx, tx); err != nil {
		t.Fatal(err)
	}
	tr, _, _ := n.Receipt(tx)
	r := tr.Receipt
	lc := func() LeafComponents {
		var c LeafComponents
		w, _ := hex.DecodeString(r.LeafComponents.WriteSetDigest)
		cd, _ := hex.DecodeString(r.LeafComponents.ClaimsDigest)
		c.WriteSetDigest, c.ClaimsDigest = [32]byte(w), [32]byte(cd)
		c.CommitEvidence = r.LeafComponents.CommitEvidence
		return c
	}
	base := lc().Leaf()
	c := lc()
	c.CommitEvidence += "0"
	if c.Leaf() == base {
		t.Fatal("commit evidence not in the leaf")
	}
	c = lc()
	c.ClaimsDigest[0] ^= 1
	if c.Leaf() == base {
		t.Fatal("claims digest not in the leaf")
	}
	sig, _ := base64.StdEncoding.DecodeString(r.Signature)
	n.mu.Lock()
	s, _ := n.core.CoveringSignature(tx.Seqno, n.durable)
	n.mu.Unlock()
	for i := range sig {
		b := append([]byte(nil), sig...)
		b[i] ^= 0x80
		if verifySig(n.Identity(), s.Root, b) {
			t.Fatalf("signature with byte %d flipped verifies", i)
		}
	}
}

// TestRestartKeepsEverything: entries, receipts, users and counters
// survive a reopen of the same host storage, and old receipts still
// verify with the same service certificate.
func TestRestartKeepsEverything(t *testing.T) {
	ctx := context.Background()
	b := kvtest.NewMemBackend()
	n1, err := Open(ctx, testOptions(b))
	if err != nil {
		t.Fatal(err)
	}
	tx, _ := n1.Append(ctx, "c", "before")
	n1.WaitCommitted(ctx, tx)
	tr1, _, _ := n1.Receipt(tx)
	if _, err := n1.SetUser(ctx, "AA:BB", RoleReader); err != nil {
		t.Fatal(err)
	}
	if _, err := n1.CompareAndIncrement(ctx, "k", 0, []byte("v1")); err != nil {
		t.Fatal(err)
	}
	svc := n1.Identity().ServiceCert
	n1.Close()

	n2 := openNode(t, b)
	if !n2.Identity().ServiceCert.Equal(svc) {
		t.Fatal("service certificate changed across a restart")
	}
	tr2, ok, err := n2.Receipt(tx)
	if err != nil || !ok {
		t.Fatal(ok, err)
	}
	if tr2.Receipt.Signature != tr1.Receipt.Signature {
		t.Fatal("receipt changed across a restart")
	}
	checkReceipt(t, tr2, svc, tx.Seqno-1, mustSig(t, n2, tx).TreeSize)
	if n2.User("AA:BB") != RoleReader {
		t.Fatal("user lost")
	}
	c, err := n2.Counter(ctx, "k")
	if err != nil || c.Version != 1 || string(c.Value) != "v1" {
		t.Fatalf("counter %v %v", c, err)
	}
	tx2, err := n2.Append(ctx, "c", "after")
	if err != nil || tx2.Seqno <= tx.Seqno {
		t.Fatal(tx2, err)
	}
}

// TestCounterCompareAndIncrement: only the holder of the current version
// moves the counter; concurrent movers from one version: exactly one wins.
func TestCounterCompareAndIncrement(t *testing.T) {
	ctx := context.Background()
	n := openNode(t, kvtest.NewMemBackend())
	var wg sync.WaitGroup
	var mu sync.Mutex
	wins := 0
	for i := 0; i < 16; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			_, err := n.CompareAndIncrement(ctx, "ctr", 0, []byte{byte(i)})
			if err == nil {
				mu.Lock()
				wins++
				mu.Unlock()
			} else if !errors.Is(err, ErrCounterConflict) {
				t.Error(err)
			}
		}(i)
	}
	wg.Wait()
	if wins != 1 {
		t.Fatalf("%d movers from version 0 won", wins)
	}
	if _, err := n.CompareAndIncrement(ctx, "ctr", 0, nil); !errors.Is(err, ErrCounterConflict) {
		t.Fatalf("stale version: %v", err)
	}
	r, err := n.CompareAndIncrement(ctx, "ctr", 1, []byte("two"))
	if err != nil || r.Version != 2 {
		t.Fatal(r, err)
	}
}

// TestHammer: 32 writers under -race, every acknowledged entry present
// once, in a distinct seqno.
func TestHammer(t *testing.T) {
	ctx := context.Background()
	n := openNode(t, kvtest.NewMemBackend())
	var wg sync.WaitGroup
	var mu sync.Mutex
	seen := map[uint64]string{}
	for w := 0; w < 32; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < 50; i++ {
				c := fmt.Sprintf("w%d-%d", w, i)
				tx, err := n.Append(ctx, "h", c)
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				if _, dup := seen[tx.Seqno]; dup {
					t.Errorf("seqno %d twice", tx.Seqno)
				}
				seen[tx.Seqno] = c
				mu.Unlock()
			}
		}(w)
	}
	wg.Wait()
	for s, c := range seen {
		e, err := n.Entry(TxID{View: 2, Seqno: s})
		if err != nil || e.Contents != c {
			t.Fatalf("seqno %d: %v %v", s, e, err)
		}
	}
}

func mustSig(t *testing.T, n *Node, tx TxID) Record {
	t.Helper()
	n.mu.Lock()
	defer n.mu.Unlock()
	s, ok := n.core.CoveringSignature(tx.Seqno, n.durable)
	if !ok {
		t.Fatal("no signature")
	}
	return s
}

// TestAdminsOnlyBootstrap: Options.Admins come from the host (the app's
// command line), so they name the first administrators of a ledger that
// has no user yet and nothing more: a host restarting an existing ledger
// with its own id among the admins does not become one (it would then
// read every entry and manage every user).
func TestAdminsOnlyBootstrap(t *testing.T) {
	ctx := context.Background()
	b := kvtest.NewMemBackend()
	o := testOptions(b)
	o.Admins = []string{"AA:01"}
	n, err := Open(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	if n.User("AA:01") != RoleAdministrator {
		t.Fatal("the first administrator was not made")
	}
	n.Close()

	o.Admins = []string{"AA:01", "EE:66"} // the host adds itself
	n, err = Open(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	if r := n.User("EE:66"); r != RoleNone {
		t.Fatalf("a restart made the host's id %s", r)
	}
	if n.User("AA:01") != RoleAdministrator {
		t.Fatal("the administrator lost its role")
	}
}

// TestAdminsAfterCrashAtCreation: a ledger whose first start stopped
// before its administrators were stored (it has no user) gets them at the
// next start, so it is never left without one.
func TestAdminsAfterCrashAtCreation(t *testing.T) {
	ctx := context.Background()
	b := kvtest.NewMemBackend()
	n, err := Open(ctx, testOptions(b)) // no admins: as if stopped before
	if err != nil {
		t.Fatal(err)
	}
	n.Close()
	o := testOptions(b)
	o.Admins = []string{"AA:01"}
	n, err = Open(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	if n.User("AA:01") != RoleAdministrator {
		t.Fatal("a ledger without users did not get its first administrator")
	}
}

// TestNoReceiptBeforeSignature: an acknowledged (durable) entry that no
// durable signature covers yet reads as Pending and has no receipt; the
// receipt appears only with the signature.
func TestNoReceiptBeforeSignature(t *testing.T) {
	ctx := context.Background()
	b := kvtest.NewMemBackend()
	o := testOptions(b)
	o.SignEvery, o.SignInterval = 1<<30, 1<<62 // nothing gets signed
	n, err := Open(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	tx, err := n.Append(ctx, "c", "x")
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := n.Status(tx); err != nil || ok {
		t.Fatalf("status of an unsigned entry: committed=%v %v", ok, err)
	}
	if tr, ok, err := n.Receipt(tx); err != nil || ok || tr != nil {
		t.Fatalf("receipt of an unsigned entry: %v %v %v", tr, ok, err)
	}
	if c, _ := n.Committed(); c >= tx.Seqno {
		t.Fatalf("committed seqno %d covers unsigned %s", c, tx)
	}
	n.Close()
}
