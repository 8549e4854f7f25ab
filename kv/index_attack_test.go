package kv_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/cloister-dev/cloister/boundary"
	"github.com/cloister-dev/cloister/kv"
	"github.com/cloister-dev/cloister/kv/kvtest"
)

// bigStore returns a store of 2,000 keys with 64-byte names: an index of
// height 2 (29 keys per leaf, 41 children per internal page).
func bigStore(t *testing.T, b kv.Backend, o kv.Options) *kv.Store {
	t.Helper()
	o.Create = true
	s := open(t, b, "s", o)
	for n := 0; n < 2000; n += 25 {
		if err := s.Update(context.Background(), func(tx *kv.Tx) error {
			for i := n; i < n+25; i++ {
				tx.Put(name64(i), []byte("v"))
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

func name64(i int) string { return fmt.Sprintf("%064d", i) }

// What a host can do to the pages of the index under a state it cannot
// change: serve an older version of a page, another page in its place,
// swap two pages, truncate or change one, reorder its bytes, or drop it.
// Each is detected at the next read that needs the page, in the run and
// at the next Open.
func TestAttackIndexPages(t *testing.T) {
	ctx := context.Background()
	b := kvtest.NewMemBackend()
	s := bigStore(t, b, kv.Options{})
	target, neighbour := name64(500), name64(1500)
	pathBefore, err := s.IndexPathKeysForTest(target)
	if err != nil {
		t.Fatal(err)
	}
	if len(pathBefore) != 3 {
		t.Fatalf("index height %d, want 2", len(pathBefore)-1)
	}
	old := b.Snapshot()
	put(t, s, target, "new") // rewrites the path to target
	path, _ := s.IndexPathKeysForTest(target)
	other, _ := s.IndexPathKeysForTest(neighbour)
	leaf, otherLeaf := path[2], other[2]
	good, _ := b.Raw(leaf)
	otherGood, _ := b.Raw(otherLeaf)
	oldLeaf := old[pathBefore[2]]
	rootGood, _ := b.Raw(path[0])
	for _, tc := range []struct {
		name  string
		apply func()
		want  error
	}{
		{"older page under the newer root", func() { b.SetRaw(leaf, oldLeaf) }, kv.ErrReplay},
		{"another page in its place", func() { b.SetRaw(leaf, otherGood) }, kv.ErrReplay},
		{"two pages swapped", func() { b.SetRaw(leaf, otherGood); b.SetRaw(otherLeaf, good) }, kv.ErrReplay},
		{"truncated", func() { b.SetRaw(leaf, good[:len(good)/2]) }, kv.ErrTampered},
		{"a byte changed", func() { c := append([]byte(nil), good...); c[len(c)-20] ^= 1; b.SetRaw(leaf, c) }, kv.ErrTampered},
		{"bytes reordered", func() {
			c := append([]byte(nil), good...)
			h := len(c) / 2
			c[h], c[h+1] = c[h+1], c[h]
			b.SetRaw(leaf, c)
		}, kv.ErrTampered},
		{"dropped", func() { b.DeleteRaw(leaf) }, kv.ErrMissingRecord},
		{"older root under the newer state", func() { b.SetRaw(path[0], old[pathBefore[0]]) }, kv.ErrReplay},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.apply()
			s.DropPageCacheForTest()
			if v, err := s.Get(ctx, target); !errors.Is(err, tc.want) {
				t.Errorf("Get = %q, %v; want %v", v, err, tc.want)
			}
			if _, err := kv.Open(ctx, b, "s", kv.Options{Sealer: sealer()}); !errors.Is(err, tc.want) {
				t.Errorf("Open = %v, want %v", err, tc.want)
			}
			b.SetRaw(leaf, good)
			b.SetRaw(otherLeaf, otherGood)
			b.SetRaw(path[0], rootGood)
			s.DropPageCacheForTest()
			mustGet(t, s, target, "new") // restored: no lasting false alarm
		})
	}
}

// TestSpreadWritersFitTheHostCommit: 64 writers, each an Update of ten
// keys spread over an index of 40,000 keys. Their batch rewrites a leaf per
// key and the internal pages above, more than the batching estimate counts;
// a commit that would exceed the host's commit limit is refused before
// anything is sent and retried in halves, so every Update succeeds. (With
// the check removed, the host refuses a commit and the Updates fail.)
func TestSpreadWritersFitTheHostCommit(t *testing.T) {
	ctx := context.Background()
	b := &limitBackend{MemBackend: kvtest.NewMemBackend()}
	s := open(t, b, "s", kv.Options{Create: true})
	const keys = 40000
	for n := 0; n < keys; n += 25 {
		if err := s.Update(ctx, func(tx *kv.Tx) error {
			for i := n; i < n+25; i++ {
				tx.Put(name64(i), nil)
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	value := make([]byte, 1<<10)
	key := func(w, i int) string { return name64((w*10 + i) * 617 % keys) }
	var wg sync.WaitGroup
	for w := range 64 {
		wg.Go(func() {
			if err := s.Update(ctx, func(tx *kv.Tx) error {
				for i := range 10 {
					tx.Put(key(w, i), value)
				}
				return nil
			}); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	t.Logf("largest commit %d bytes", b.largest)
	for w := range 64 {
		for i := range 10 {
			if v, err := s.Get(ctx, key(w, i)); err != nil || len(v) != len(value) {
				t.Fatalf("Get = %d bytes, %v", len(v), err)
			}
		}
	}
	// One Update of 300 keys in 300 leaves cannot fit one host commit: it
	// is refused with ErrTooLarge before anything is sent, and the store
	// goes on.
	err := s.Update(ctx, func(tx *kv.Tx) error {
		for i := range 300 {
			tx.Put(name64(i*131%keys), []byte("x"))
		}
		return nil
	})
	if !errors.Is(err, kv.ErrTooLarge) {
		t.Fatalf("Update of 300 spread keys = %v, want ErrTooLarge", err)
	}
	put(t, s, name64(1), "after")
	mustGet(t, s, name64(1), "after")
}

// limitBackend refuses a commit larger than the boundary's storage.commit
// limit, as the real host does (it cannot even be sent).
type limitBackend struct {
	*kvtest.MemBackend
	mu      sync.Mutex
	largest int
}

func (l *limitBackend) Commit(ctx context.Context, ops []kv.Op) error {
	n := 0
	for _, op := range ops {
		n += len(op.Key) + len(op.Value)
	}
	if n > boundary.MaxStorageCommit {
		return fmt.Errorf("commit of %d bytes over the limit", n)
	}
	l.mu.Lock()
	l.largest = max(l.largest, n)
	l.mu.Unlock()
	return l.MemBackend.Commit(ctx, ops)
}
