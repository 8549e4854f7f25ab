package kv_test

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/cloister-dev/cloister/kv"
	"github.com/cloister-dev/cloister/kv/kvtest"
)

// A commit deletes the index pages its new tree replaced (the old root at
// least) in the same host batch that writes the new ones, before the
// counter moves and the store advances. A Get or List of an unrelated key
// reading the committed tree in that window, with those pages no longer
// cached (evicted: DropPageCacheForTest), finds them gone on the host. That
// is the store's own commit, not the host's doing: it must wait for the
// commit and read the new tree, never report ErrMissingRecord.
func TestReadsDuringCommitOfOtherKeys(t *testing.T) {
	ctx := context.Background()
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	g := &gateBackend{MemBackend: kvtest.NewMemBackend(), applied: make(chan struct{}), release: make(chan error)}
	s := open(t, g, "s", kv.Options{Create: true})
	put(t, s, "a", "1")
	put(t, s, "b", "2")
	g.mu.Lock()
	g.armed = true
	g.mu.Unlock()
	putErr := make(chan error, 1)
	go func() { putErr <- s.Put(ctx, "a", []byte("3")) }()
	<-g.applied // the old root is deleted on the host; the commit is not acknowledged
	s.DropPageCacheForTest()

	// A reader that cannot wait must say so, not raise an alarm.
	if v, err := s.Get(cancelled, "b"); err != nil && !errors.Is(err, context.Canceled) {
		t.Fatalf("Get(b) during another key's commit = %q, %v; want 2 or context.Canceled", v, err)
	}
	if _, err := s.List(cancelled, ""); err != nil && !errors.Is(err, context.Canceled) {
		t.Fatalf("List during a commit = %v; want the names or context.Canceled", err)
	}
	type res struct {
		v     []byte
		names []string
		err   error
	}
	got := make(chan res, 2)
	go func() {
		v, err := s.Get(ctx, "b")
		got <- res{v: v, err: err}
	}()
	go func() {
		names, err := s.List(ctx, "")
		got <- res{names: names, err: err}
	}()
	g.release <- nil
	if err := <-putErr; err != nil {
		t.Fatal(err)
	}
	for range 2 {
		r := <-got
		if r.err != nil {
			t.Fatalf("read waiting for another key's commit: %v", r.err)
		}
		if r.names == nil && string(r.v) != "2" {
			t.Fatalf("Get(b) = %q, want 2", r.v)
		}
		if r.names != nil && !slices.Equal(r.names, []string{"a", "b"}) {
			t.Fatalf("List = %q, want [a b]", r.names)
		}
	}
	mustGet(t, s, "a", "3")
}
