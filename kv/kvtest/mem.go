// Package kvtest provides an in-memory kv.Backend for tests, with the
// host's powers made explicit: snapshots to roll back to, raw access to
// swap, replay, change or delete records, and fault points to drop a commit
// before or after it is applied.
package kvtest

import (
	"bytes"
	"context"
	"errors"
	"maps"
	"slices"
	"sync"

	"github.com/cloister-dev/cloister/kv"
)

// ErrDropped is what a Fault returns: the call was dropped.
var ErrDropped = errors.New("kvtest: call dropped")

// Fault says what happens to the next Commit.
type Fault int

const (
	// FaultNone lets commits through.
	FaultNone Fault = iota
	// FaultDropBefore drops the commit before it is applied (the host
	// crashed before its transaction).
	FaultDropBefore
	// FaultDropAfter applies the commit and then fails the call (the host
	// crashed after its transaction, or the answer was lost).
	FaultDropAfter
)

// MemBackend is a kv.Backend in memory. Safe for concurrent use.
type MemBackend struct {
	mu      sync.Mutex
	m       map[string][]byte
	fault   Fault
	commits int
}

// NewMemBackend returns an empty MemBackend.
func NewMemBackend() *MemBackend { return &MemBackend{m: map[string][]byte{}} }

// Get implements kv.Backend.
func (b *MemBackend) Get(_ context.Context, key []byte) ([]byte, bool, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	v, ok := b.m[string(key)]
	return bytes.Clone(v), ok, nil
}

// List implements kv.Backend.
func (b *MemBackend) List(_ context.Context, prefix []byte) ([][]byte, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out [][]byte
	for k := range b.m {
		if bytes.HasPrefix([]byte(k), prefix) {
			out = append(out, []byte(k))
		}
	}
	slices.SortFunc(out, bytes.Compare)
	return out, nil
}

// Commit implements kv.Backend, applying the fault set by FailNext once.
func (b *MemBackend) Commit(_ context.Context, ops []kv.Op) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	f := b.fault
	b.fault = FaultNone
	if f == FaultDropBefore {
		return ErrDropped
	}
	for _, op := range ops {
		if op.Delete {
			delete(b.m, string(op.Key))
		} else {
			b.m[string(op.Key)] = bytes.Clone(op.Value)
		}
	}
	b.commits++
	if f == FaultDropAfter {
		return ErrDropped
	}
	return nil
}

// FailNext makes the next Commit fail with f.
func (b *MemBackend) FailNext(f Fault) {
	b.mu.Lock()
	b.fault = f
	b.mu.Unlock()
}

// Commits returns how many commits were applied.
func (b *MemBackend) Commits() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.commits
}

// Snapshot is a copy of every record, to roll back to.
type Snapshot map[string][]byte

// Snapshot copies the backend's records.
func (b *MemBackend) Snapshot() Snapshot {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := make(Snapshot, len(b.m))
	for k, v := range b.m {
		s[k] = bytes.Clone(v)
	}
	return s
}

// Restore replaces every record with the snapshot's: a whole-store
// rollback.
func (b *MemBackend) Restore(s Snapshot) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.m = maps.Clone(s)
}

// Keys returns every key, sorted.
func (b *MemBackend) Keys() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Sorted(maps.Keys(b.m))
}

// Raw returns the record under key and whether there is one.
func (b *MemBackend) Raw(key string) ([]byte, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	v, ok := b.m[key]
	return bytes.Clone(v), ok
}

// SetRaw stores v under key, as a hostile host may.
func (b *MemBackend) SetRaw(key string, v []byte) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.m[key] = bytes.Clone(v)
}

// DeleteRaw removes key, as a hostile host may.
func (b *MemBackend) DeleteRaw(key string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.m, key)
}
