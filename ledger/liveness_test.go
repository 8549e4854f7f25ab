package ledger

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/cloister-dev/cloister/kv/kvtest"
)

// TestCloseReleasesEveryone: appenders, counter movers and receipt
// waiters blocked on a node all return when it closes, with ErrStopped,
// and later calls return at once. (Liveness: the test ends only if every
// wait returns; there is no timing assertion.)
func TestCloseReleasesEveryone(t *testing.T) {
	ctx := context.Background()
	o := testOptions(kvtest.NewMemBackend())
	o.SignEvery, o.SignInterval = 1<<30, 1<<62 // nothing gets signed
	n, err := Open(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	tx, err := n.Append(ctx, "c", "unsigned")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for i := 0; i < 16; i++ {
		wg.Add(3)
		go func() { defer wg.Done(); errs <- n.WaitCommitted(ctx, tx) }()
		go func() {
			defer wg.Done()
			for {
				if _, err := n.Append(ctx, "c", "x"); err != nil {
					errs <- err
					return
				}
			}
		}()
		go func() {
			defer wg.Done()
			for v := uint64(0); ; v++ {
				if _, err := n.CompareAndIncrement(ctx, "k", v, nil); err != nil && !errors.Is(err, ErrCounterConflict) {
					errs <- err
					return
				}
			}
		}()
	}
	n.Close()
	wg.Wait()
	close(errs)
	for err := range errs {
		if !errors.Is(err, ErrStopped) {
			t.Errorf("released with %v, want ErrStopped", err)
		}
	}
	if _, err := n.Append(ctx, "c", "late"); !errors.Is(err, ErrStopped) {
		t.Fatalf("append after close: %v", err)
	}
	if err := n.WaitCommitted(ctx, tx); !errors.Is(err, ErrStopped) {
		t.Fatalf("wait after close: %v", err)
	}
}

// TestRestartSignsUnsignedTail: transactions made durable but not yet
// signed when the node stopped (a crash between the entry's segment and
// the signature's) get their signature after a restart without waiting
// for another write: a client polling the receipt of an acknowledged
// entry is not left at Loading for ever. (Liveness: the wait returns; the
// context's deadline only turns a hang into a failure.)
func TestRestartSignsUnsignedTail(t *testing.T) {
	ctx := context.Background()
	b := kvtest.NewMemBackend()
	o := testOptions(b)
	o.SignEvery, o.SignInterval = 1<<30, 1<<62 // nothing gets signed
	n, err := Open(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	tx, err := n.Append(ctx, "c", "acknowledged, unsigned")
	if err != nil {
		t.Fatal(err)
	}
	n.Close()

	n2 := openNode(t, b) // signs after SignInterval
	if ok, err := n2.Status(tx); err != nil {
		t.Fatal(err)
	} else if ok {
		t.Fatal("an unsigned transaction reads as committed right after the restart")
	}
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := n2.WaitCommitted(wctx, tx); err != nil {
		t.Fatalf("the unsigned tail was never signed after the restart: %v", err)
	}
	tr, ok, err := n2.Receipt(tx)
	if err != nil || !ok {
		t.Fatalf("receipt after the restart: ok=%v %v", ok, err)
	}
	checkReceipt(t, tr, n2.Identity().ServiceCert, tx.Seqno-1, tr2size(n2, tx))
}

// tr2size is the tree size the signature covering tx signed.
func tr2size(n *Node, tx TxID) uint64 {
	n.mu.Lock()
	defer n.mu.Unlock()
	sig, _ := n.core.CoveringSignature(tx.Seqno, n.durable)
	return sig.TreeSize
}
