package enclave_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"

	"github.com/cloister-dev/cloister/enclave"
	"github.com/cloister-dev/cloister/host"
	"github.com/cloister-dev/cloister/kv"
	"github.com/cloister-dev/cloister/tee"
)

// TestStoreCommit: storage.commit through the boundary applies puts and
// deletes together.
func TestStoreCommit(t *testing.T) {
	ctx := context.Background()
	env := enclave.NewTestEnv(t, host.ServiceOptions{})
	st := env.Store()
	if err := st.Put(ctx, []byte("gone"), []byte("x")); err != nil {
		t.Fatal(err)
	}
	err := st.Commit(ctx, []enclave.CommitOp{{Key: []byte("a"), Value: []byte("1")}, {Key: []byte("gone"), Delete: true}})
	if err != nil {
		t.Fatal(err)
	}
	if v, err := st.Get(ctx, []byte("a")); err != nil || string(v) != "1" {
		t.Fatalf("Get(a) = %q, %v", v, err)
	}
	if _, err := st.Get(ctx, []byte("gone")); !errors.Is(err, enclave.ErrNotFound) {
		t.Fatalf("Get(gone) = %v", err)
	}
	if err := st.Commit(ctx, nil); err == nil {
		t.Fatal("empty commit accepted")
	}
}

// TestKVOverHostStorage runs kv through the real boundary and host services
// over a bbolt file: concurrent writers, then a reopen of the kv store
// that checks every record against the sealed state.
func TestKVOverHostStorage(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "state.db")
	bolt, err := host.OpenBoltStore(path)
	if err != nil {
		t.Fatal(err)
	}
	env := enclave.NewTestEnv(t, host.ServiceOptions{Store: bolt})
	ctr := kv.NewMemCounter(kv.Count{})
	opts := kv.Options{Sealer: tee.NewSealer(env.Platform()), Counter: ctr, Create: true}
	s, err := kv.Open(ctx, kv.EnclaveBackend(env.Store()), "app", opts)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for w := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 8 {
				if err := s.Put(ctx, fmt.Sprintf("k%d/%d", w, i), []byte(fmt.Sprint(w, i))); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	s2, err := kv.OpenEnv(ctx, env, "app", kv.Options{Counter: ctr})
	if err != nil {
		t.Fatal(err)
	}
	for w := range 16 {
		for i := range 8 {
			if v, err := s2.Get(ctx, fmt.Sprintf("k%d/%d", w, i)); err != nil || string(v) != fmt.Sprint(w, i) {
				t.Fatalf("Get = %q, %v", v, err)
			}
		}
	}
}
