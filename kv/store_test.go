package kv_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/cloister-dev/cloister/kv"
	"github.com/cloister-dev/cloister/kv/kvtest"
	"github.com/cloister-dev/cloister/seal"
)

var root = bytes.Repeat([]byte{7}, 32)

func sealer() seal.Sealer { return kvtest.Sealer(root, 0xA1, 0x51, 2) }

func open(t *testing.T, b kv.Backend, name string, o kv.Options) *kv.Store {
	t.Helper()
	if o.Sealer.Keys == nil {
		o.Sealer = sealer()
	}
	s, err := kv.Open(context.Background(), b, name, o)
	if err != nil {
		t.Fatalf("Open(%q): %v", name, err)
	}
	return s
}

func put(t *testing.T, s *kv.Store, k, v string) {
	t.Helper()
	if err := s.Put(context.Background(), k, []byte(v)); err != nil {
		t.Fatalf("Put(%q): %v", k, err)
	}
}

func mustGet(t *testing.T, s *kv.Store, k, want string) {
	t.Helper()
	got, err := s.Get(context.Background(), k)
	if err != nil || string(got) != want {
		t.Fatalf("Get(%q) = %q, %v; want %q", k, got, err, want)
	}
}

func TestBasic(t *testing.T) {
	ctx := context.Background()
	b := kvtest.NewMemBackend()
	if _, err := kv.Open(ctx, b, "s", kv.Options{Sealer: sealer()}); !errors.Is(err, kv.ErrStoreNotFound) {
		t.Fatalf("Open(missing, no Create) = %v, want ErrStoreNotFound", err)
	}
	s := open(t, b, "s", kv.Options{Create: true})
	put(t, s, "user/alice", "1")
	put(t, s, "user/bob", "2")
	put(t, s, "other", "3")
	put(t, s, "user/alice", "4")
	mustGet(t, s, "user/alice", "4")
	if _, err := s.Get(ctx, "nobody"); !errors.Is(err, kv.ErrNotFound) {
		t.Fatalf("Get(missing) = %v", err)
	}
	names, _ := s.List(ctx, "user/")
	if fmt.Sprint(names) != "[user/alice user/bob]" {
		t.Fatalf("List = %v", names)
	}
	if err := s.Delete(ctx, "user/bob"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, "user/bob"); !errors.Is(err, kv.ErrNotFound) {
		t.Fatalf("Get(deleted) = %v", err)
	}
	// Names never reach the host in clear.
	for _, k := range b.Keys() {
		v, _ := b.Raw(k)
		for _, secret := range []string{"alice", "user/", "other"} {
			if bytes.Contains([]byte(k), []byte(secret)) || bytes.Contains(v, []byte(secret)) {
				t.Fatalf("host key or record contains %q", secret)
			}
		}
	}
	// Reopen: same content, same version.
	ver := s.Version()
	s2 := open(t, b, "s", kv.Options{MinVersion: ver})
	mustGet(t, s2, "user/alice", "4")
	mustGet(t, s2, "other", "3")
	if s2.Version() != ver {
		t.Fatalf("version after reopen %d, want %d", s2.Version(), ver)
	}
}

func TestTooLarge(t *testing.T) {
	ctx := context.Background()
	s := open(t, kvtest.NewMemBackend(), "s", kv.Options{Create: true})
	if err := s.Put(ctx, "k", make([]byte, kv.MaxValueSize+1)); !errors.Is(err, kv.ErrTooLarge) {
		t.Fatalf("Put(oversized) = %v", err)
	}
	err := s.Update(ctx, func(tx *kv.Tx) error {
		for i := range 4 {
			tx.Put(fmt.Sprint(i), make([]byte, kv.MaxValueSize))
		}
		return nil
	})
	if !errors.Is(err, kv.ErrTooLarge) {
		t.Fatalf("Update(oversized) = %v", err)
	}
	put(t, s, "still", "works") // refused before sending: the store is fine
}

func TestUpdateAtomicAndConflicts(t *testing.T) {
	ctx := context.Background()
	b := kvtest.NewMemBackend()
	s := open(t, b, "s", kv.Options{Create: true})
	put(t, s, "n", "0")
	var wg sync.WaitGroup
	var mu sync.Mutex
	ok := 0
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 10 {
				err := s.Update(ctx, func(tx *kv.Tx) error {
					v, err := tx.Get("n")
					if err != nil {
						return err
					}
					var n int
					fmt.Sscan(string(v), &n)
					return tx.Put("n", []byte(fmt.Sprint(n+1)))
				})
				if err == nil {
					mu.Lock()
					ok++
					mu.Unlock()
				} else if !errors.Is(err, kv.ErrConflict) {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	mustGet(t, s, "n", fmt.Sprint(ok))
	// An error from fn writes nothing.
	boom := errors.New("boom")
	if err := s.Update(ctx, func(tx *kv.Tx) error { tx.Put("x", []byte("1")); return boom }); !errors.Is(err, boom) {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, "x"); !errors.Is(err, kv.ErrNotFound) {
		t.Fatalf("Get(x) after failed Update = %v", err)
	}
}

// TestGroupCommit: many concurrent Puts share host commits.
func TestGroupCommit(t *testing.T) {
	ctx := context.Background()
	b := kvtest.NewMemBackend()
	ctr := &kvtest.Counter{}
	s := open(t, b, "s", kv.Options{Create: true, Counter: ctr})
	before, swapsBefore := b.Commits(), ctr.Swaps()
	const writers, each = 64, 8
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				if err := s.Put(ctx, fmt.Sprintf("w%d/%d", w, i), []byte(fmt.Sprint(w*1000+i))); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	for w := range writers {
		for i := range each {
			mustGet(t, s, fmt.Sprintf("w%d/%d", w, i), fmt.Sprint(w*1000+i))
		}
	}
	commits := b.Commits() - before
	t.Logf("%d puts in %d host commits", writers*each, commits)
	if commits >= writers*each {
		t.Errorf("%d puts took %d commits: no batching", writers*each, commits)
	}
	if swaps := ctr.Swaps() - swapsBefore; swaps != 2*commits {
		t.Errorf("%d host commits took %d counter swaps, want two each", commits, swaps)
	}
	// Reads racing writes and deletes never raise a false alarm.
	wg = sync.WaitGroup{}
	for w := range 8 {
		wg.Add(2)
		go func() {
			defer wg.Done()
			for i := range 20 {
				var err error
				if i%3 == 2 {
					err = s.Delete(ctx, fmt.Sprintf("r%d", w))
				} else {
					err = s.Put(ctx, fmt.Sprintf("r%d", w), []byte(fmt.Sprint(i)))
				}
				if err != nil {
					t.Error(err)
				}
			}
		}()
		go func() {
			defer wg.Done()
			for range 20 {
				if _, err := s.Get(ctx, fmt.Sprintf("r%d", w)); err != nil && !errors.Is(err, kv.ErrNotFound) {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
}

// An Update that only reads must see one committed state too: a key it
// read that another writer changed before fn returned makes fn run again,
// as for an Update that writes, so that two keys written together are
// never read torn.
func TestReadOnlyUpdateIsNotTorn(t *testing.T) {
	ctx := context.Background()
	s := open(t, kvtest.NewMemBackend(), "s", kv.Options{Create: true})
	pair := func(v string) error {
		return s.Update(ctx, func(tx *kv.Tx) error {
			tx.Put("a", []byte(v))
			return tx.Put("b", []byte(v))
		})
	}
	if err := pair("1"); err != nil {
		t.Fatal(err)
	}
	runs := 0
	var a, b []byte
	err := s.Update(ctx, func(tx *kv.Tx) error {
		runs++
		var err error
		if a, err = tx.Get("a"); err != nil {
			return err
		}
		if runs == 1 {
			// Another writer commits between this transaction's reads.
			if err := pair("2"); err != nil {
				return err
			}
		}
		b, err = tx.Get("b")
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if string(a) != string(b) {
		t.Fatalf("a read-only Update saw a=%s, b=%s: torn across two commits", a, b)
	}
	if runs != 2 {
		t.Fatalf("fn ran %d times, want 2 (once more after the conflict)", runs)
	}
}
