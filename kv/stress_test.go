package kv_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/cloister-dev/cloister/kv"
	"github.com/cloister-dev/cloister/kv/kvtest"
)

// integrityErrs are the errors that accuse the host. With an honest host
// that only fails calls, none of them may ever appear.
var integrityErrs = []error{kv.ErrMissingRecord, kv.ErrTampered, kv.ErrReplay, kv.ErrSwapped, kv.ErrRollback, kv.ErrFork, kv.ErrForeignStore}

func accuses(err error) bool {
	for _, e := range integrityErrs {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// TestStressWritersReadersFailingCommits runs many writers (each owning a
// key, writing increasing sequence numbers) and readers (Get and List) on
// one store while the host and the trusted counter fail a commit now and
// then, before or after applying it. Then it reopens, as after a crash, on
// the same host and counter. Throughout: no read returns a value that was
// not acknowledged when the read ended, or older than what was
// acknowledged when it began; no error accuses the honest host; after each
// reopen every acknowledged write is there, and a key holds either its
// last acknowledged value or its one write whose outcome was unknown. The
// page cache holds one page, so reads go to the host.
func TestStressWritersReadersFailingCommits(t *testing.T) {
	const writers, readers, puts, rounds = 12, 4, 15, 6
	ctx := context.Background()
	b := kvtest.NewMemBackend()
	ctr := &kvtest.Counter{}
	rng := rand.New(rand.NewPCG(1, 2))
	var acked, tried [writers]atomic.Int64 // last acknowledged / last attempted seq per writer
	key := func(w int) string { return fmt.Sprintf("w%02d", w) }
	seqOf := func(t *testing.T, v []byte) int64 {
		n, err := strconv.ParseInt(string(v), 10, 64)
		if err != nil {
			t.Errorf("value %q", v)
		}
		return n
	}
	failed := 0
	for round := range rounds {
		s, err := kv.Open(ctx, b, "stress", kv.Options{Sealer: sealer(), Counter: ctr, Create: round == 0})
		if err != nil {
			t.Fatalf("round %d: open after a failed commit: %v", round, err)
		}
		// One page: the pages a commit replaces are evicted at once, so
		// readers race their deletion on the host.
		s.SetPageCacheForTest(1)
		// After a reopen: every key is at its last acknowledged value or at
		// the one write after it whose outcome was unknown.
		for w := range writers {
			v, err := s.Get(ctx, key(w))
			if errors.Is(err, kv.ErrNotFound) && acked[w].Load() == 0 {
				continue
			}
			if err != nil {
				t.Fatalf("round %d: Get %s: %v", round, key(w), err)
			}
			got := seqOf(t, v)
			switch got {
			case acked[w].Load():
			case tried[w].Load():
				acked[w].Store(got) // the unknown write landed: it is the value now
			default:
				t.Fatalf("round %d: %s = %d, acknowledged %d, last tried %d", round, key(w), got, acked[w].Load(), tried[w].Load())
			}
		}
		faultAt := 1 + rng.IntN(writers*puts/2)
		fault := rng.IntN(6)
		var wg sync.WaitGroup
		var calls, stopped atomic.Int64
		stop := make(chan struct{})
		for w := range writers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range puts {
					if calls.Add(1) == int64(faultAt) {
						switch fault {
						case 0, 1:
							b.FailNext(kvtest.Fault(1 + fault))
						case 2, 3:
							ctr.FailNext(kvtest.Fault(fault - 1))
						default:
							ctr.FailLater(1, kvtest.Fault(fault-3))
						}
					}
					seq := tried[w].Load() + 1
					tried[w].Store(seq)
					err := s.Put(ctx, key(w), []byte(strconv.FormatInt(seq, 10)))
					switch {
					case err == nil:
						acked[w].Store(seq)
					case accuses(err):
						t.Errorf("Put %s: %v", key(w), err)
						return
					default:
						stopped.Add(1)
						return // the store stopped (ErrCommitUnknown, sticky): reopen
					}
				}
			}()
		}
		var rwg sync.WaitGroup
		var mu sync.Mutex
		var seen [][2]int64 // (writer, seq) read before its Put returned
		for r := range readers {
			rwg.Add(1)
			go func() {
				defer rwg.Done()
				for i := 0; ; i++ {
					select {
					case <-stop:
						return
					default:
					}
					if r == 0 {
						names, err := s.List(ctx, "w")
						if accuses(err) {
							t.Errorf("List: %v", err)
							return
						}
						for _, n := range names {
							if !strings.HasPrefix(n, "w") {
								t.Errorf("List invented %q", n)
							}
						}
						continue
					}
					w := (r*7 + i) % writers
					before := acked[w].Load()
					v, err := s.Get(ctx, key(w))
					after := acked[w].Load()
					if errors.Is(err, kv.ErrNotFound) {
						if before > 0 {
							t.Errorf("Get %s: not found, %d acknowledged", key(w), before)
						}
						continue
					}
					if accuses(err) {
						t.Errorf("Get %s: %v", key(w), err)
						return
					}
					if err != nil {
						continue // sticky error after a failed commit
					}
					got := seqOf(t, v)
					if got < before {
						t.Errorf("Get %s = %d; acknowledged %d before the read", key(w), got, before)
					}
					if got > after {
						// Committed but not yet returned to its writer, or
						// never acknowledged: decided when the writers stop.
						mu.Lock()
						seen = append(seen, [2]int64{int64(w), got})
						mu.Unlock()
					}
				}
			}()
		}
		wg.Wait()
		close(stop)
		rwg.Wait()
		for _, o := range seen {
			if o[1] > acked[o[0]].Load() {
				t.Errorf("Get %s returned %d, which was never acknowledged (acknowledged %d)", key(int(o[0])), o[1], acked[o[0]].Load())
			}
		}
		if t.Failed() {
			t.FailNow()
		}
		if stopped.Load() > 0 {
			failed++
		}
		s.Close()
	}
	if failed == 0 {
		t.Fatal("no commit failed: the test tested nothing")
	}
}
