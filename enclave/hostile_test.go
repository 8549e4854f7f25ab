package enclave

import (
	"context"
	"encoding/binary"
	"errors"
	"testing"

	"github.com/cloister-dev/cloister/host"
)

// endlessStore is a host store whose listing never ends: every page is
// valid (keys under the prefix, strictly increasing), and there is always
// another one, up to far more keys than an enclave should hold.
type endlessStore struct {
	*host.MemStore
	total uint64 // keys it is willing to list
}

func (s endlessStore) Keys(ctx context.Context, prefix, after []byte, fn func(key []byte) bool) error {
	var next uint64
	if len(after) == len(prefix)+8 {
		next = binary.BigEndian.Uint64(after[len(prefix):]) + 1
	}
	k := make([]byte, len(prefix)+8)
	copy(k, prefix)
	for ; next < s.total; next++ {
		binary.BigEndian.PutUint64(k[len(prefix):], next)
		if !fn(k) {
			return nil
		}
	}
	return nil
}

// TestListBounded: a host that keeps returning valid pages cannot make
// Store.List grow without bound: List stops at its default limits with
// ErrListTooLong, ListLimit at the caller's, and a listing within the
// limits is returned whole.
func TestListBounded(t *testing.T) {
	env := newTestEnv(t, host.ServiceOptions{Store: endlessStore{host.NewMemStore(), DefaultListMaxKeys + 1}})
	ctx := context.Background()
	s := env.Store()
	if keys, err := s.List(ctx, []byte("p/")); !errors.Is(err, ErrListTooLong) {
		t.Fatalf("List over the default limit: %d keys, %v", len(keys), err)
	}
	if keys, err := s.ListLimit(ctx, []byte("p/"), 100, 1<<20); !errors.Is(err, ErrListTooLong) {
		t.Fatalf("ListLimit(100 keys): %d keys, %v", len(keys), err)
	}
	if keys, err := s.ListLimit(ctx, []byte("p/"), 1<<20, 1000); !errors.Is(err, ErrListTooLong) {
		t.Fatalf("ListLimit(1000 bytes): %d keys, %v", len(keys), err)
	}
	env2 := newTestEnv(t, host.ServiceOptions{Store: endlessStore{host.NewMemStore(), 5000}})
	keys, err := env2.Store().ListLimit(ctx, []byte("p/"), 5000, 5000*10)
	if err != nil || len(keys) != 5000 {
		t.Fatalf("ListLimit within the limits: %d keys, %v", len(keys), err)
	}
}
