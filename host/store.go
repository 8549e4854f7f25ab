package host

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"sync"

	"github.com/cloister-dev/cloister/host/wire"
)

// ErrNotFound is returned by Store.Get for a key with no record.
var ErrNotFound = errors.New("host: storage: not found")

// Store keeps the enclave's opaque records on the host. The enclave seals
// every record before it is stored, so a Store sees only ciphertext and
// keys; it still must not lose, reorder or silently alter what it is given,
// and the enclave (kv/) detects it if one does. Implementations are safe
// for concurrent use. Keys are 1 to boundary.MaxStorageKey bytes.
//
// NewMemStore is for tests; OpenBoltStore is the default, and
// OpenPostgresStore takes over behind the same interface for scale-out
// (DESIGN.md, "One machine first"). All three pass one conformance suite.
type Store interface {
	// Get returns a copy of the record under key, or ErrNotFound.
	Get(ctx context.Context, key []byte) ([]byte, error)
	// Put stores record under key, replacing any previous one. It is
	// durable when it returns (for stores that persist).
	Put(ctx context.Context, key, record []byte) error
	// Delete removes key's record; deleting a missing key is not an error.
	Delete(ctx context.Context, key []byte) error
	// Keys calls fn with every key that starts with prefix and sorts after
	// after (bytewise), in increasing order, until fn returns false. The
	// slice passed to fn is valid only during the call.
	Keys(ctx context.Context, prefix, after []byte, fn func(key []byte) bool) error
	// CommitBatch applies ops in order as ONE atomic, durable change: when
	// it returns nil all of them are durable, and after any crash either
	// all or none are. kv relies on this to make a commit all-or-nothing.
	// Keys are checked before anything is applied.
	CommitBatch(ctx context.Context, ops []BatchOp) error
	// Close releases the store.
	Close() error
}

// BatchOp is one change of Store.CommitBatch: Value stored under Key, or
// Key deleted. It is the storage.commit wire op, decoded.
type BatchOp = wire.CommitOp

// checkBatch enforces the key bounds on every op before any is applied.
func checkBatch(ops []BatchOp) error {
	for _, op := range ops {
		if err := checkKey(op.Key); err != nil {
			return err
		}
	}
	return nil
}

// MemStore is a Store in memory, for tests and for runs that need no
// persistence.
type MemStore struct {
	mu sync.RWMutex
	m  map[string][]byte
}

// NewMemStore returns an empty MemStore.
func NewMemStore() *MemStore { return &MemStore{m: make(map[string][]byte)} }

// Get implements Store.
func (s *MemStore) Get(ctx context.Context, key []byte) ([]byte, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	v, ok := s.m[string(key)]
	if !ok {
		return nil, ErrNotFound
	}
	return bytes.Clone(v), nil
}

// Put implements Store.
func (s *MemStore) Put(ctx context.Context, key, record []byte) error {
	if err := checkKey(key); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.m[string(key)] = append([]byte{}, record...)
	return nil
}

// Delete implements Store.
func (s *MemStore) Delete(ctx context.Context, key []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m, string(key))
	return nil
}

// Keys implements Store. It sorts a snapshot of the matching keys, so fn
// may call the store.
func (s *MemStore) Keys(ctx context.Context, prefix, after []byte, fn func(key []byte) bool) error {
	s.mu.RLock()
	var keys []string
	for k := range s.m {
		if len(k) >= len(prefix) && k[:len(prefix)] == string(prefix) && k > string(after) {
			keys = append(keys, k)
		}
	}
	s.mu.RUnlock()
	slices.Sort(keys)
	for _, k := range keys {
		if err := ctx.Err(); err != nil {
			return err
		}
		if !fn([]byte(k)) {
			break
		}
	}
	return nil
}

// CommitBatch implements Store: one lock hold makes it atomic.
func (s *MemStore) CommitBatch(ctx context.Context, ops []BatchOp) error {
	if err := checkBatch(ops); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, op := range ops {
		if op.Delete {
			delete(s.m, string(op.Key))
		} else {
			s.m[string(op.Key)] = append([]byte{}, op.Value...)
		}
	}
	return nil
}

// Close implements Store.
func (s *MemStore) Close() error { return nil }
