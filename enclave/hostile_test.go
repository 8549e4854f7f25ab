package enclave

import (
	"context"
	"encoding/binary"
	"errors"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/cloister-dev/cloister/boundary/boundarytest"
	"github.com/cloister-dev/cloister/host"
	"github.com/cloister-dev/cloister/seal"
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

// Liveness bounds: a hang detector for a loaded 2-core machine, never a
// speed assertion.
const (
	liveDeadline = 200 * time.Millisecond
	liveSlack    = 2 * time.Second
)

// TestSDKLiveness: every enclave SDK operation (network, storage, time,
// platform) against a host that never answers, one that takes requests and
// stalls, and one that streams junk frames, returns an error within its
// deadline (or, for the calls without a context, closeTimeout) plus a
// generous bound. Operations without a deadline of their own (Accept)
// return once Close is called.
func TestSDKLiveness(t *testing.T) {
	for _, behaviour := range []string{"never answers", "stalled", "junk"} {
		t.Run(behaviour, func(t *testing.T) {
			th := newTestHost(t, host.ServiceOptions{Listen: []string{"127.0.0.1:0"}})
			env := th.env
			// A connection and a listener, made while the host behaves.
			peer, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer peer.Close()
			go func() {
				for {
					c, err := peer.Accept()
					if err != nil {
						return
					}
					defer c.Close()
				}
			}()
			conn, err := env.Dial("tcp", peer.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			ln, err := env.Listen("tcp", ":0")
			if err != nil {
				t.Fatal(err)
			}

			// The host turns hostile.
			th.stopServer()
			hh, err := boundarytest.Map(th.region.File(), th.region.Config())
			if err != nil {
				t.Fatal(err)
			}
			defer hh.Close()
			switch behaviour {
			case "stalled":
				hh.Stall()
			case "junk":
				hh.Junk()
			}

			live := func(what string, bound time.Duration, f func(ctx context.Context) error) {
				t.Helper()
				ctx, cancel := context.WithTimeout(context.Background(), liveDeadline)
				defer cancel()
				done := make(chan error, 1)
				go func() { done <- f(ctx) }()
				select {
				case err := <-done:
					if err == nil {
						t.Errorf("%s: succeeded against a hostile host", what)
					}
				case <-time.After(bound + liveSlack):
					t.Errorf("%s: still blocked %v after its %v bound", what, liveSlack, bound)
				}
			}
			s := env.Store()
			p := env.Platform()
			ops := []struct {
				name string
				f    func(ctx context.Context) error
			}{
				{"UntrustedNow", func(ctx context.Context) error { _, err := env.UntrustedNow(ctx); return err }},
				{"Store.Get", func(ctx context.Context) error { _, err := s.Get(ctx, []byte("k")); return err }},
				{"Store.Put", func(ctx context.Context) error { return s.Put(ctx, []byte("k"), []byte("v")) }},
				{"Store.Delete", func(ctx context.Context) error { return s.Delete(ctx, []byte("k")) }},
				{"Store.List", func(ctx context.Context) error { _, err := s.List(ctx, []byte("k")); return err }},
				{"Store.Commit", func(ctx context.Context) error {
					return s.Commit(ctx, []CommitOp{{Key: []byte("k"), Value: []byte("v")}})
				}},
				{"Platform.Evidence", func(ctx context.Context) error { _, err := p.Evidence(ctx, [64]byte{}); return err }},
				{"Platform.SealKey", func(ctx context.Context) error {
					_, err := p.SealKey(ctx, seal.KeyRequest{Policy: seal.PolicySigner})
					return err
				}},
				{"DialContext", func(ctx context.Context) error {
					c, err := env.DialContext(ctx, "tcp", peer.Addr().String())
					if err == nil {
						c.Close()
					}
					return err
				}},
				{"ListenContext", func(ctx context.Context) error {
					l, err := env.ListenContext(ctx, "tcp", ":0")
					if err == nil {
						l.Close()
					}
					return err
				}},
				{"Conn.Read", func(context.Context) error {
					conn.SetReadDeadline(time.Now().Add(liveDeadline))
					_, err := conn.Read(make([]byte, 8))
					return err
				}},
				{"Conn.Write", func(context.Context) error {
					conn.SetWriteDeadline(time.Now().Add(liveDeadline))
					_, err := conn.Write([]byte("x"))
					return err
				}},
			}
			for _, op := range ops {
				live(op.name, liveDeadline, op.f)
			}
			// A Read without a deadline returns when the deadline is then
			// set in the past (as net/http aborts a background read).
			live("Conn.Read aborted by SetReadDeadline", liveDeadline, func(context.Context) error {
				conn.SetReadDeadline(time.Time{})
				time.AfterFunc(liveDeadline, func() { conn.SetReadDeadline(time.Unix(1, 0)) })
				_, err := conn.Read(make([]byte, 8))
				return err
			})
			// Accept has no deadline: Close ends it, and Close itself
			// waits for the host at most closeTimeout.
			accepted := make(chan error, 1)
			go func() { _, err := ln.Accept(); accepted <- err }()
			time.Sleep(liveDeadline)
			live("Listener.Close", closeTimeout, func(context.Context) error {
				ln.Close()
				select {
				case err := <-accepted:
					return err
				case <-time.After(liveSlack):
					return nil // reported as a failure by live
				}
			})
			live("Conn.Close", closeTimeout, func(context.Context) error {
				conn.Close()
				_, err := conn.Read(make([]byte, 1))
				return err
			})
		})
	}
}

// slowStore blocks every Put until release is closed, as a store stuck in
// a long fsync would.
type slowStore struct {
	*host.MemStore
	entered chan struct{}
	release chan struct{}
}

func (s slowStore) Put(ctx context.Context, key, record []byte) error {
	s.entered <- struct{}{}
	<-s.release
	return s.MemStore.Put(ctx, key, record)
}

// TestSlowStoreDoesNotStallOtherCalls: while one storage call waits on a
// slow store, the host answers other calls (time, another channel) at
// once: storage calls are deferred to the storage goroutine instead of
// holding the Serve goroutine.
func TestSlowStoreDoesNotStallOtherCalls(t *testing.T) {
	st := slowStore{host.NewMemStore(), make(chan struct{}, 1), make(chan struct{})}
	env := newTestEnv(t, host.ServiceOptions{Store: st})
	release := sync.OnceFunc(func() { close(st.release) })
	t.Cleanup(release) // runs before the env's cleanup: a failed test does not hang
	put := make(chan error, 1)
	go func() { put <- env.Store().Put(context.Background(), []byte("k"), []byte("v")) }()
	<-st.entered
	ctx, cancel := context.WithTimeout(context.Background(), liveSlack)
	defer cancel()
	for range 3 {
		if _, err := env.UntrustedNow(ctx); err != nil {
			t.Fatalf("time call while a put is stuck in the store: %v", err)
		}
	}
	release()
	if err := <-put; err != nil {
		t.Fatal(err)
	}
	if got, err := env.Store().Get(context.Background(), []byte("k")); err != nil || string(got) != "v" {
		t.Fatalf("Get after the slow put: %q, %v", got, err)
	}
}

// lyingStore fails every Get with an untyped error whose text is exactly
// the old wire message for a missing record.
type lyingStore struct{ *host.MemStore }

func (lyingStore) Get(context.Context, []byte) ([]byte, error) { return nil, errors.New("not found") }

// TestStoreStatusIsTyped: the enclave takes "no such record" from the
// response's typed code, never from the message text: a host failure
// whose text is "not found" stays a failure (it must not read as an
// absent key, which kv would trust), while a missing key is ErrNotFound.
func TestStoreStatusIsTyped(t *testing.T) {
	ctx := context.Background()
	env := newTestEnv(t, host.ServiceOptions{Store: lyingStore{host.NewMemStore()}})
	_, err := env.Store().Get(ctx, []byte("k"))
	if err == nil || errors.Is(err, ErrNotFound) {
		t.Fatalf("Get with a host failure worded \"not found\" = %v, want a failure that is not ErrNotFound", err)
	}
	env2 := newTestEnv(t, host.ServiceOptions{Store: host.NewMemStore()})
	if _, err := env2.Store().Get(ctx, []byte("k")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get(missing) = %v, want ErrNotFound", err)
	}
}
