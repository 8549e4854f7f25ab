package kv

import "context"

// Backend is the host storage a Store keeps its records in: opaque keys and
// records, all of them sealed or MACed by the store, so a Backend is
// untrusted by design. It may lose, reorder, replay or alter records; the
// store detects it. EnclaveBackend adapts the enclave's host storage calls;
// kvtest.MemBackend is the in-memory test backend with fault injection.
type Backend interface {
	// Get returns the record under key; ok is false if there is none.
	Get(ctx context.Context, key []byte) (record []byte, ok bool, err error)
	// List returns every key that starts with prefix.
	List(ctx context.Context, prefix []byte) ([][]byte, error)
	// Commit applies ops atomically and durably: after it returns nil all
	// of them are durable, and after any crash either all or none are.
	Commit(ctx context.Context, ops []Op) error
}

// Op is one change of a Commit: Value stored under Key, or Key deleted.
type Op struct {
	Key    []byte
	Value  []byte
	Delete bool
}
