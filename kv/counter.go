package kv

import (
	"context"
	"sync"
)

// Counter is a trusted monotonic counter, one per store: the store's
// version is checked against it at Open and moved by every commit. Trusted
// means the host cannot roll it back; monotonic means Increment never
// returns a value it returned before.
//
// What a Counter detects depends on where it lives:
//   - MemCounter (the default) lives in enclave memory for one run. During
//     the run it catches replay of records and rollback of the whole store.
//     Across a restart it is gone: Open trusts whatever authentic state the
//     host serves first (trust on first use), so a rollback to any earlier
//     sealed state made while the enclave was down is NOT detected, unless
//     the operator pins Options.MinVersion (recording Store.Version at
//     shutdown) or a persistent Counter is used.
//   - A persistent Counter (the ledger will provide a replicated one)
//     survives restarts; then rollback across restarts is detected too.
type Counter interface {
	// Read returns the current value; a new counter reads 0.
	Read(ctx context.Context) (uint64, error)
	// Increment adds one and returns the new value. It must be durable
	// (for a persistent counter) when it returns.
	Increment(ctx context.Context) (uint64, error)
}

// MemCounter is a Counter in enclave memory: trusted, but lost when the
// enclave stops. Safe for concurrent use.
type MemCounter struct {
	mu sync.Mutex
	v  uint64
}

// NewMemCounter returns a MemCounter that reads start.
func NewMemCounter(start uint64) *MemCounter { return &MemCounter{v: start} }

// Read implements Counter.
func (c *MemCounter) Read(context.Context) (uint64, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.v, nil
}

// Increment implements Counter.
func (c *MemCounter) Increment(context.Context) (uint64, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.v++
	return c.v, nil
}
