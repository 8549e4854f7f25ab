package enclave

import (
	"context"
	"errors"
	"fmt"

	"github.com/cloister-dev/cloister/boundary"
	"github.com/cloister-dev/cloister/host/wire"
)

// ErrNotFound is returned by Store.Get for a key with no record.
var ErrNotFound = errors.New("enclave: store: not found")

// ErrListTooLong is returned (wrapped) by Store.List and Store.ListLimit
// when the host lists more keys, or more key bytes, than the limit: a host
// that keeps answering with valid pages cannot make the enclave grow
// without bound.
var ErrListTooLong = errors.New("enclave: store: list: more keys than the limit")

// Default bounds of Store.List: at most DefaultListMaxKeys keys of at most
// DefaultListMaxBytes key bytes in total (each key also costs a slice
// header of private memory, so the whole list stays under ~24 MiB).
const (
	DefaultListMaxKeys  = 1 << 18
	DefaultListMaxBytes = 16 << 20
)

// Store is the host's storage of opaque records, keyed by byte strings of
// 1 to boundary.MaxStorageKey bytes, each record at most
// boundary.MaxStorageValue bytes.
//
// The host sees and keeps whatever is put: seal every record first
// (tee.NewSealer(env.Platform()).Seal, with the key as label so records
// cannot be swapped), and expect the host to be able to drop, replay or
// roll back records; package kv adds freshness on top.
type Store struct {
	env *Env
}

// Get returns the record under key, or ErrNotFound.
func (s *Store) Get(ctx context.Context, key []byte) ([]byte, error) {
	if len(key) == 0 || len(key) > boundary.MaxStorageKey {
		return nil, fmt.Errorf("enclave: store: get: key of %d bytes", len(key))
	}
	resp := make([]byte, boundary.MaxStorageValue)
	n, err := s.env.client.Call(ctx, boundary.CallStorageGet, key, resp)
	if errors.Is(err, boundary.ErrNotFound) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("enclave: store: get: %w", err)
	}
	return resp[:n:n], nil
}

// Put stores record under key, replacing any previous record.
func (s *Store) Put(ctx context.Context, key, record []byte) error {
	req, err := wire.KeyRecord(key, record)
	if err != nil {
		return fmt.Errorf("enclave: store: put: %w", err)
	}
	if _, err := s.env.client.Call(ctx, boundary.CallStoragePut, req, nil); err != nil {
		return fmt.Errorf("enclave: store: put: %w", err)
	}
	return nil
}

// Delete removes key's record; a missing key is not an error.
func (s *Store) Delete(ctx context.Context, key []byte) error {
	if len(key) == 0 || len(key) > boundary.MaxStorageKey {
		return fmt.Errorf("enclave: store: delete: key of %d bytes", len(key))
	}
	if _, err := s.env.client.Call(ctx, boundary.CallStorageDelete, key, nil); err != nil {
		return fmt.Errorf("enclave: store: delete: %w", err)
	}
	return nil
}

// List returns the keys that start with prefix, in bytewise order, fetched
// a page at a time; it is ListLimit with DefaultListMaxKeys and
// DefaultListMaxBytes. Each page is checked (prefix, strictly increasing),
// but the host may still omit keys.
func (s *Store) List(ctx context.Context, prefix []byte) ([][]byte, error) {
	return s.ListLimit(ctx, prefix, DefaultListMaxKeys, DefaultListMaxBytes)
}

// ListLimit is List bounded by the caller: it fails with ErrListTooLong
// as soon as the host has listed more than maxKeys keys or more than
// maxBytes bytes of keys, having kept no more than that. ctx is checked
// before every page.
func (s *Store) ListLimit(ctx context.Context, prefix []byte, maxKeys, maxBytes int) ([][]byte, error) {
	var all [][]byte
	size := 0
	resp := make([]byte, boundary.MaxStorageList)
	var after []byte
	for {
		req, err := wire.ListRequest(prefix, after)
		if err != nil {
			return nil, fmt.Errorf("enclave: store: list: %w", err)
		}
		n, err := s.env.client.Call(ctx, boundary.CallStorageList, req, resp)
		if err != nil {
			return nil, fmt.Errorf("enclave: store: list: %w", err)
		}
		keys, err := wire.ParseListPage(resp[:n], prefix, after)
		if err != nil {
			return nil, fmt.Errorf("enclave: store: list: %w", err)
		}
		if len(keys) == 0 {
			return all, nil
		}
		for _, k := range keys {
			size += len(k)
		}
		if len(all)+len(keys) > maxKeys || size > maxBytes {
			return nil, fmt.Errorf("%w: %d keys, %d key bytes so far (limits %d keys, %d bytes)", ErrListTooLong, len(all)+len(keys), size, maxKeys, maxBytes)
		}
		all = append(all, keys...)
		after = keys[len(keys)-1]
	}
}

// CommitOp is one change of Store.Commit: Value under Key, or Key deleted.
type CommitOp = wire.CommitOp

// Commit applies ops on the host atomically (storage.commit: one bbolt
// transaction): after it returns nil all of them are durable, and after a
// host crash either all or none are. If it returns an error the outcome is
// unknown (the host may have applied the batch and lost the answer).
func (s *Store) Commit(ctx context.Context, ops []CommitOp) error {
	req, err := wire.CommitRequest(ops)
	if err != nil {
		return fmt.Errorf("enclave: store: commit: %w", err)
	}
	if _, err := s.env.client.Call(ctx, boundary.CallStorageCommit, req, nil); err != nil {
		return fmt.Errorf("enclave: store: commit: %w", err)
	}
	return nil
}
