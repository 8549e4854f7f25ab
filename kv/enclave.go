package kv

import (
	"context"
	"errors"

	"github.com/cloister-dev/cloister/enclave"
	"github.com/cloister-dev/cloister/tee"
)

// EnclaveBackend returns the Backend over the enclave's host storage calls
// (env.Store()): storage.get, storage.list and the atomic storage.commit.
func EnclaveBackend(s *enclave.Store) Backend { return enclaveBackend{s} }

type enclaveBackend struct{ s *enclave.Store }

// Get implements Backend; the host's not-found answer is ok == false.
func (b enclaveBackend) Get(ctx context.Context, key []byte) ([]byte, bool, error) {
	v, err := b.s.Get(ctx, key)
	if errors.Is(err, enclave.ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	return v, true, nil
}

// List implements Backend over paged storage.list calls.
func (b enclaveBackend) List(ctx context.Context, prefix []byte) ([][]byte, error) {
	return b.s.List(ctx, prefix)
}

// Commit implements Backend with one storage.commit call.
func (b enclaveBackend) Commit(ctx context.Context, ops []Op) error {
	cops := make([]enclave.CommitOp, len(ops))
	for i, op := range ops {
		cops[i] = enclave.CommitOp{Key: op.Key, Value: op.Value, Delete: op.Delete}
	}
	return b.s.Commit(ctx, cops)
}

// OpenEnv opens the store called name in the enclave's host storage: Open
// over EnclaveBackend(env.Store()), sealing with the platform's keys
// (tee.NewSealer(env.Platform())) unless opts.Sealer is set.
func OpenEnv(ctx context.Context, env *enclave.Env, name string, opts Options) (*Store, error) {
	if opts.Sealer.Keys == nil {
		opts.Sealer = tee.NewSealer(env.Platform())
	}
	return Open(ctx, EnclaveBackend(env.Store()), name, opts)
}
