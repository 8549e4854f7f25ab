package host

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"sync"
)

// ErrNotFound is returned by Store.Get for a key with no record.
var ErrNotFound = errors.New("host: storage: not found")

// Store keeps the enclave's opaque records on the host. The enclave seals
// every record before it is stored, so a Store sees only ciphertext and
// keys; it still must not lose, reorder or silently alter what it is given,
// and the enclave (kv/) detects it if one does. Implementations are safe
// for concurrent use. Keys are 1 to boundary.MaxStorageKey bytes.
//
// NewMemStore is for tests; OpenBoltStore is the default, and a
// PostgreSQL or etcd Store can take over behind the same interface
// (DESIGN.md, "One machine first").
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
	// Close releases the store.
	Close() error
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

// Close implements Store.
func (s *MemStore) Close() error { return nil }
