package kv

import (
	"context"
	"errors"
	"fmt"
	"sync"
)

// Count is what a trusted Counter holds for one store: the last committed
// version with the digest of the state committed at it, and the digest of
// the state of the commit in flight, if any. Digests are SHA-256 of the
// state's host record, which commits to every record's contents.
type Count struct {
	// Version is the store version last committed; 0 before creation.
	Version uint64
	// Digest is the digest of the state committed at Version (zero at 0).
	Digest [32]byte
	// Next is the digest of the state of the commit in flight, which will
	// be Version+1; zero when no commit is in flight. Open accepts a state
	// at Version+1 only if its digest is Next: exactly the commit this
	// store had prepared, identified by content.
	Next [32]byte
}

// ErrCounterConflict is what a Counter's CompareAndSwap returns when the
// counter does not hold the expected Count: another instance moved it.
var ErrCounterConflict = errors.New("kv: counter changed under the store")

// Counter is a trusted, monotonic register of one store's Count. Trusted
// means the host cannot change or roll it back; monotonic means its
// Version never decreases. A persistent, replicated Counter (the ledger)
// survives restarts and can be shared by the instances of a store.
//
// Each commit uses it twice, in this order around the host write:
//
//  1. CompareAndSwap(cur, cur with Next = digest of the new state)
//  2. the atomic host commit of the records and state
//  3. CompareAndSwap(that, {Version+1, Digest: Next})
//
// and Open clears a stale Next (the host holds the older state) or
// finishes step 3 (the host holds exactly the Next state).
//
// What a Counter detects depends on where it lives: see the package
// documentation's table.
type Counter interface {
	// Read returns the current Count; a new counter reads the zero Count.
	Read(ctx context.Context) (Count, error)
	// CompareAndSwap replaces old with new if the counter holds old,
	// atomically and (for a persistent counter) durably before it
	// returns; otherwise it changes nothing and returns an error wrapping
	// ErrCounterConflict. It must refuse a new.Version below old.Version.
	CompareAndSwap(ctx context.Context, old, new Count) error
}

// MemCounter is a Counter in enclave memory: trusted, but lost when the
// enclave stops. Safe for concurrent use. Sharing one MemCounter between
// Opens in one run keeps detection across those reopens.
type MemCounter struct {
	mu sync.Mutex
	c  Count
}

// NewMemCounter returns a MemCounter that holds c.
func NewMemCounter(c Count) *MemCounter { return &MemCounter{c: c} }

// Read implements Counter.
func (m *MemCounter) Read(context.Context) (Count, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.c, nil
}

// CompareAndSwap implements Counter.
func (m *MemCounter) CompareAndSwap(_ context.Context, old, new Count) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.c != old {
		return fmt.Errorf("%w: holds version %d, expected %d", ErrCounterConflict, m.c.Version, old.Version)
	}
	if new.Version < old.Version {
		return fmt.Errorf("kv: counter: refusing to move back from %d to %d", old.Version, new.Version)
	}
	m.c = new
	return nil
}
