package kv_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/cloister-dev/cloister/host"
	"github.com/cloister-dev/cloister/kv"
	"github.com/cloister-dev/cloister/kv/kvtest"
)

// crash points of one commit, in order: the counter drops the prepare, or
// applies it and loses the answer; the host drops the batch, or applies it
// and loses the answer; the counter drops the commit, or applies it and
// loses the answer.
var crashPoints = []string{"prepare before", "prepare after", "host before", "host after", "counter before", "counter after"}

// prefill puts 300 keys with 64-byte names: an index of about ten leaves
// under a root, so that a commit touching spread keys rewrites several
// pages (a multi-page commit).
func prefill(t *testing.T, s *kv.Store) {
	t.Helper()
	for n := 0; n < 300; n += 25 {
		if err := s.Update(context.Background(), func(tx *kv.Tx) error {
			for i := n; i < n+25; i++ {
				tx.Put(name64(i), []byte("p"))
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
}

// spread are keys of the prefill in three different leaves.
var spread = []int{10, 150, 290}

// injectCrash arms the crash point on the backend b (a MemBackend or a
// Faulty) and the persistent counter.
func injectCrash(point string, b interface{ FailNext(kvtest.Fault) }, ctr *kvtest.Counter) {
	switch point {
	case "prepare before":
		ctr.FailNext(kvtest.FaultDropBefore)
	case "prepare after":
		ctr.FailNext(kvtest.FaultDropAfter)
	case "host before":
		b.FailNext(kvtest.FaultDropBefore)
	case "host after":
		b.FailNext(kvtest.FaultDropAfter)
	case "counter before":
		ctr.FailLater(1, kvtest.FaultDropBefore)
	case "counter after":
		ctr.FailLater(1, kvtest.FaultDropAfter)
	}
}

// TestCrashAtEveryCommitStep: for every point, a crash during an Update of
// two keys, then a restart (reopen on the same host and the same
// persistent counter; and once more with a fresh in-memory counter, as
// after a real restart without a persistent one). After it: every
// acknowledged write is there, the unacknowledged Update is all there or
// not at all, no false rollback alarm, and the store keeps working.
func TestCrashAtEveryCommitStep(t *testing.T) {
	ctx := context.Background()
	for _, point := range crashPoints {
		for _, persistent := range []bool{true, false} {
			t.Run(fmt.Sprintf("%s/persistent=%v", point, persistent), func(t *testing.T) {
				if !persistent && point != "host before" && point != "host after" {
					t.Skip("a fresh in-memory counter per run has no swap to drop")
				}
				b := kvtest.NewMemBackend()
				ctr := &kvtest.Counter{}
				opts := func() kv.Options {
					o := kv.Options{Sealer: sealer()}
					if persistent {
						o.Counter = ctr
					}
					return o
				}
				o := opts()
				o.Create = true
				s := open(t, b, "s", o)
				prefill(t, s)
				for i := range 3 { // acknowledged before the crash
					put(t, s, fmt.Sprint("acked", i), "v")
				}
				injectCrash(point, b, ctr)
				err := s.Update(ctx, func(tx *kv.Tx) error {
					tx.Put("x", []byte("1"))
					tx.Put("y", []byte("1"))
					for _, i := range spread { // three leaves, and the pages above
						tx.Put(name64(i), []byte("1"))
					}
					return tx.Delete("acked0")
				})
				if !errors.Is(err, kv.ErrCommitUnknown) {
					t.Fatalf("Update during crash = %v, want ErrCommitUnknown", err)
				}
				// The store refuses use until reopened.
				if err := s.Put(ctx, "z", nil); !errors.Is(err, kv.ErrCommitUnknown) {
					t.Fatalf("Put after a failed commit = %v, want ErrCommitUnknown", err)
				}

				// Restart.
				s2, err := kv.Open(ctx, b, "s", opts())
				if err != nil {
					t.Fatalf("reopen after crash at %s: %v (false alarm)", point, err)
				}
				for i := 1; i < 3; i++ {
					mustGet(t, s2, fmt.Sprint("acked", i), "v")
				}
				_, errX := s2.Get(ctx, "x")
				_, errY := s2.Get(ctx, "y")
				_, errA := s2.Get(ctx, "acked0")
				applied := errX == nil
				if (errY == nil) != applied || (errA == nil) == applied {
					t.Fatalf("half a commit: x %v, y %v, acked0 %v", errX, errY, errA)
				}
				for _, i := range spread {
					want := "p"
					if applied {
						want = "1"
					}
					mustGet(t, s2, name64(i), want)
				}
				// The host write happens after the prepare and is the
				// commit point: dropped before it, the Update is not there.
				wantApplied := point == "host after" || point == "counter before" || point == "counter after"
				if applied != wantApplied {
					t.Fatalf("commit applied = %v, want %v", applied, wantApplied)
				}
				put(t, s2, "after", "1")
				if _, err := kv.Open(ctx, b, "s", opts()); err != nil {
					t.Fatalf("second reopen: %v", err)
				}
			})
		}
	}
}

// TestCrashDuringCreate: a store whose creation commit crashed is either
// there (empty) or not, and can be opened or created again.
func TestCrashDuringCreate(t *testing.T) {
	ctx := context.Background()
	for _, f := range []kvtest.Fault{kvtest.FaultDropBefore, kvtest.FaultDropAfter} {
		b := kvtest.NewMemBackend()
		ctr := kv.NewMemCounter(kv.Count{})
		b.FailNext(f)
		if _, err := kv.Open(ctx, b, "s", kv.Options{Sealer: sealer(), Counter: ctr, Create: true}); !errors.Is(err, kv.ErrCommitUnknown) {
			t.Fatalf("fault %d: Open = %v, want ErrCommitUnknown", f, err)
		}
		s := open(t, b, "s", kv.Options{Counter: ctr, Create: true})
		put(t, s, "a", "1")
	}
}

// TestCrashWithHostRestart: the same crash points over a bbolt file, with
// the host store closed and reopened (a host process restart) after each
// crash, in a loop over the points on one store.
func TestCrashWithHostRestart(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "kv.db")
	ctr := &kvtest.Counter{}
	var acked []string
	restart := func() (*host.BoltStore, *kvtest.Faulty, *kv.Store) {
		t.Helper()
		bs, err := host.OpenBoltStore(path)
		if err != nil {
			t.Fatal(err)
		}
		f := &kvtest.Faulty{Backend: kvtest.HostBackend(bs)}
		s, err := kv.Open(ctx, f, "s", kv.Options{Sealer: sealer(), Counter: ctr, Create: true})
		if err != nil {
			t.Fatalf("open after restart: %v (false alarm)", err)
		}
		for _, k := range acked {
			mustGet(t, s, k, "v")
		}
		return bs, f, s
	}
	bs, f, s := restart()
	prefill(t, s)
	for round, point := range crashPoints {
		k := fmt.Sprint("acked", round)
		put(t, s, k, "v")
		acked = append(acked, k)
		injectCrash(point, f, ctr)
		ka, kb := fmt.Sprint("a", round), fmt.Sprint("b", round)
		err := s.Update(ctx, func(tx *kv.Tx) error {
			tx.Put(ka, []byte("1"))
			for _, i := range spread { // a multi-page commit
				tx.Put(name64(i), []byte(fmt.Sprint(round)))
			}
			return tx.Put(kb, []byte("1"))
		})
		if !errors.Is(err, kv.ErrCommitUnknown) {
			t.Fatalf("%s: Update = %v, want ErrCommitUnknown", point, err)
		}
		if err := bs.Close(); err != nil {
			t.Fatal(err)
		}
		bs, f, s = restart()
		_, errA := s.Get(ctx, ka)
		_, errB := s.Get(ctx, kb)
		if (errA == nil) != (errB == nil) {
			t.Fatalf("%s: half a commit: %v, %v", point, errA, errB)
		}
		for _, i := range spread {
			v, err := s.Get(ctx, name64(i))
			if err != nil || (string(v) == fmt.Sprint(round)) != (errA == nil) {
				t.Fatalf("%s: half a commit: %s = %q, %v while %s: %v", point, name64(i)[60:], v, err, ka, errA)
			}
		}
	}
	bs.Close()
}
