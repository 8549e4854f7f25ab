package ledger

import (
	"context"
	"errors"
	"sync"
	"testing"

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
