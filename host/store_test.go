package host

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"testing"
)

// testStore is the one conformance suite every Store passes.
func testStore(t *testing.T, open func(t *testing.T) Store) {
	ctx := context.Background()
	t.Run("get missing", func(t *testing.T) {
		s := open(t)
		if _, err := s.Get(ctx, []byte("nope")); !errors.Is(err, ErrNotFound) {
			t.Fatalf("Get(missing) = %v, want ErrNotFound", err)
		}
	})
	t.Run("put get replace delete", func(t *testing.T) {
		s := open(t)
		k := []byte("k1")
		if err := s.Put(ctx, k, []byte("v1")); err != nil {
			t.Fatal(err)
		}
		if err := s.Put(ctx, k, []byte("v2")); err != nil {
			t.Fatal(err)
		}
		got, err := s.Get(ctx, k)
		if err != nil || string(got) != "v2" {
			t.Fatalf("Get = %q, %v; want v2", got, err)
		}
		got[0] = 'X' // the caller owns the copy
		if again, _ := s.Get(ctx, k); string(again) != "v2" {
			t.Fatalf("Get after mutating a result = %q", again)
		}
		if err := s.Delete(ctx, k); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Get(ctx, k); !errors.Is(err, ErrNotFound) {
			t.Fatalf("Get after Delete = %v, want ErrNotFound", err)
		}
		if err := s.Delete(ctx, k); err != nil {
			t.Fatalf("Delete(missing) = %v, want nil", err)
		}
	})
	t.Run("empty record", func(t *testing.T) {
		s := open(t)
		if err := s.Put(ctx, []byte("e"), nil); err != nil {
			t.Fatal(err)
		}
		got, err := s.Get(ctx, []byte("e"))
		if err != nil || len(got) != 0 {
			t.Fatalf("Get(empty record) = %q, %v", got, err)
		}
	})
	t.Run("bad keys", func(t *testing.T) {
		s := open(t)
		if err := s.Put(ctx, nil, []byte("v")); err == nil {
			t.Error("Put(empty key) succeeded")
		}
		if err := s.Put(ctx, bytes.Repeat([]byte("k"), 2000), []byte("v")); err == nil {
			t.Error("Put(oversized key) succeeded")
		}
	})
	t.Run("commit batch", func(t *testing.T) {
		s := open(t)
		if err := s.Put(ctx, []byte("old"), []byte("x")); err != nil {
			t.Fatal(err)
		}
		err := s.CommitBatch(ctx, []BatchOp{
			{Key: []byte("a"), Value: []byte("1")},
			{Key: []byte("b"), Value: []byte("2")},
			{Key: []byte("a"), Value: []byte("3")}, // later ops win
			{Key: []byte("old"), Delete: true},
			{Key: []byte("never"), Delete: true}, // deleting a missing key is fine
		})
		if err != nil {
			t.Fatal(err)
		}
		for k, want := range map[string]string{"a": "3", "b": "2"} {
			if got, err := s.Get(ctx, []byte(k)); err != nil || string(got) != want {
				t.Errorf("Get(%s) = %q, %v; want %q", k, got, err, want)
			}
		}
		if _, err := s.Get(ctx, []byte("old")); !errors.Is(err, ErrNotFound) {
			t.Errorf("Get(deleted in batch) = %v, want ErrNotFound", err)
		}
	})
	t.Run("commit batch is all or nothing", func(t *testing.T) {
		s := open(t)
		// A bad key anywhere refuses the whole batch before applying any.
		err := s.CommitBatch(ctx, []BatchOp{{Key: []byte("first"), Value: []byte("1")}, {Key: nil, Value: []byte("bad")}})
		if err == nil {
			t.Fatal("CommitBatch with an empty key succeeded")
		}
		if _, err := s.Get(ctx, []byte("first")); !errors.Is(err, ErrNotFound) {
			t.Fatalf("Get(first) after a refused batch = %v, want ErrNotFound", err)
		}
	})
	t.Run("keys", func(t *testing.T) {
		s := open(t)
		for _, k := range []string{"b/2", "a/1", "b/1", "b/3", "c", "b"} {
			if err := s.Put(ctx, []byte(k), []byte("v"+k)); err != nil {
				t.Fatal(err)
			}
		}
		list := func(prefix, after string, limit int) []string {
			var got []string
			err := s.Keys(ctx, []byte(prefix), []byte(after), func(k []byte) bool {
				got = append(got, string(k))
				return len(got) < limit
			})
			if err != nil {
				t.Fatal(err)
			}
			return got
		}
		for _, tc := range []struct {
			prefix, after string
			limit         int
			want          string
		}{
			{"", "", 100, "[a/1 b b/1 b/2 b/3 c]"},
			{"b/", "", 100, "[b/1 b/2 b/3]"},
			{"b/", "b/1", 100, "[b/2 b/3]"},
			{"b/", "b/15", 100, "[b/2 b/3]"},
			{"b/", "a", 100, "[b/1 b/2 b/3]"},
			{"b/", "c", 100, "[]"},
			{"b/", "", 2, "[b/1 b/2]"},
			{"z", "", 100, "[]"},
		} {
			if got := fmt.Sprint(list(tc.prefix, tc.after, tc.limit)); got != tc.want && !(got == "[]" && tc.want == "[]") {
				t.Errorf("Keys(%q, after %q, limit %d) = %s, want %s", tc.prefix, tc.after, tc.limit, got, tc.want)
			}
		}
	})
}

func TestMemStore(t *testing.T) {
	testStore(t, func(t *testing.T) Store { return NewMemStore() })
}

func TestBoltStore(t *testing.T) {
	testStore(t, func(t *testing.T) Store {
		s, err := OpenBoltStore(filepath.Join(t.TempDir(), "sub", "store.db"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	})
}

// TestBoltStorePersists: what was put survives closing and reopening.
func TestBoltStorePersists(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "store.db")
	s, err := OpenBoltStore(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Put(ctx, []byte("k"), []byte("v")); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = OpenBoltStore(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if got, err := s.Get(ctx, []byte("k")); err != nil || string(got) != "v" {
		t.Fatalf("after reopen: Get = %q, %v", got, err)
	}
}
