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

// DigestCounter is a Counter that also remembers the digest of the state
// each value was moved for. It closes a gap a bare number leaves open: after
// a commit whose outcome is unknown, the host can keep that unacknowledged
// state, serve the older one, and later swap the unacknowledged state in
// for a newer commit of the same version. With the digest, Open refuses a
// state whose version matches the counter but whose bytes are not the
// committed ones. MemCounter implements it.
type DigestCounter interface {
	Counter
	// ReadDigest returns the value and the digest recorded with it; ok is
	// false when no digest was recorded for the current value.
	ReadDigest(ctx context.Context) (v uint64, digest [32]byte, ok bool, err error)
	// IncrementWith adds one and records digest with the new value.
	IncrementWith(ctx context.Context, digest [32]byte) (uint64, error)
}

// MemCounter is a Counter in enclave memory: trusted, but lost when the
// enclave stops. Safe for concurrent use.
type MemCounter struct {
	mu sync.Mutex
	v  uint64
	d  [32]byte
	ok bool // d belongs to v
}

// NewMemCounter returns a MemCounter that reads start.
func NewMemCounter(start uint64) *MemCounter { return &MemCounter{v: start} }

// Read implements Counter.
func (c *MemCounter) Read(context.Context) (uint64, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.v, nil
}

// Increment implements Counter. The new value has no digest.
func (c *MemCounter) Increment(context.Context) (uint64, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.v++
	c.ok = false
	return c.v, nil
}

// ReadDigest implements DigestCounter.
func (c *MemCounter) ReadDigest(context.Context) (uint64, [32]byte, bool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.v, c.d, c.ok, nil
}

// IncrementWith implements DigestCounter.
func (c *MemCounter) IncrementWith(_ context.Context, digest [32]byte) (uint64, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.v++
	c.d, c.ok = digest, true
	return c.v, nil
}
