package kvtest

import (
	"context"
	"errors"
	"sync"

	"github.com/cloister-dev/cloister/host"
	"github.com/cloister-dev/cloister/kv"
)

// HostBackend adapts a host.Store (memory, bbolt) to kv.Backend directly,
// without a boundary: the host's storage as kv sees it, for tests that
// restart the host store between steps.
func HostBackend(s host.Store) kv.Backend { return hostBackend{s} }

type hostBackend struct{ s host.Store }

// Get implements kv.Backend.
func (b hostBackend) Get(ctx context.Context, key []byte) ([]byte, bool, error) {
	v, err := b.s.Get(ctx, key)
	if errors.Is(err, host.ErrNotFound) {
		return nil, false, nil
	}
	return v, err == nil, err
}

// List implements kv.Backend.
func (b hostBackend) List(ctx context.Context, prefix []byte) ([][]byte, error) {
	var out [][]byte
	err := b.s.Keys(ctx, prefix, nil, func(k []byte) bool {
		out = append(out, append([]byte(nil), k...))
		return true
	})
	return out, err
}

// Commit implements kv.Backend with one Store.CommitBatch.
func (b hostBackend) Commit(ctx context.Context, ops []kv.Op) error {
	bops := make([]host.BatchOp, len(ops))
	for i, op := range ops {
		bops[i] = host.BatchOp{Key: op.Key, Value: op.Value, Delete: op.Delete}
	}
	return b.s.CommitBatch(ctx, bops)
}

// Faulty wraps a Backend so that its next Commit can be dropped before or
// after it reaches the backend.
type Faulty struct {
	kv.Backend
	mu    sync.Mutex
	fault Fault
}

// FailNext makes the next Commit fail with f.
func (f *Faulty) FailNext(fault Fault) {
	f.mu.Lock()
	f.fault = fault
	f.mu.Unlock()
}

// Commit implements kv.Backend.
func (f *Faulty) Commit(ctx context.Context, ops []kv.Op) error {
	f.mu.Lock()
	fault := f.fault
	f.fault = FaultNone
	f.mu.Unlock()
	if fault == FaultDropBefore {
		return ErrDropped
	}
	if err := f.Backend.Commit(ctx, ops); err != nil {
		return err
	}
	if fault == FaultDropAfter {
		return ErrDropped
	}
	return nil
}
