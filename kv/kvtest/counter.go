package kvtest

import (
	"context"
	"sync"

	"github.com/cloister-dev/cloister/kv"
)

// Counter is a fake persistent trusted counter: it outlives every Store
// opened on it (a test "restarts" the enclave by opening a new Store with
// the same Counter), the way the ledger's replicated counter will. Its
// next CompareAndSwap can be dropped before or after it takes effect, and
// it counts the swaps it applied. Safe for concurrent use.
type Counter struct {
	mu    sync.Mutex
	c     kv.MemCounter
	fault Fault
	skip  int // calls to let through before fault applies
	swaps int
}

// Read implements kv.Counter.
func (c *Counter) Read(ctx context.Context) (kv.Count, error) { return c.c.Read(ctx) }

// CompareAndSwap implements kv.Counter, applying the fault set by FailNext
// once: FaultDropBefore loses the call, FaultDropAfter applies it and
// loses the answer.
func (c *Counter) CompareAndSwap(ctx context.Context, old, new kv.Count) error {
	c.mu.Lock()
	f := FaultNone
	if c.skip > 0 {
		c.skip--
	} else {
		f, c.fault = c.fault, FaultNone
	}
	c.mu.Unlock()
	if f == FaultDropBefore {
		return ErrDropped
	}
	if err := c.c.CompareAndSwap(ctx, old, new); err != nil {
		return err
	}
	c.mu.Lock()
	c.swaps++
	c.mu.Unlock()
	if f == FaultDropAfter {
		return ErrDropped
	}
	return nil
}

// FailNext makes the next CompareAndSwap fail with f.
func (c *Counter) FailNext(f Fault) { c.FailLater(0, f) }

// FailLater lets skip CompareAndSwap calls through and makes the one after
// them fail with f: a commit makes two (prepare, then commit), so
// FailLater(1, f) hits the commit step.
func (c *Counter) FailLater(skip int, f Fault) {
	c.mu.Lock()
	c.fault, c.skip = f, skip
	c.mu.Unlock()
}

// Swaps returns how many swaps were applied.
func (c *Counter) Swaps() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.swaps
}
