package kv_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/cloister-dev/cloister/kv"
	"github.com/cloister-dev/cloister/kv/kvtest"
	"github.com/cloister-dev/cloister/seal"
)

// The attacks of issue 15: each failed against the first kv release.

// The host applies a commit (a=X), reports failure, serves the older state;
// the reopened store commits and acknowledges a=Y at the same version; the
// host swaps X's record back in. The state must cover record contents,
// not only (record id, version).
func TestAttackUnacknowledgedRecordSwap(t *testing.T) {
	ctx := context.Background()
	b := kvtest.NewMemBackend()
	ctr := kv.NewMemCounter(kv.Count{})
	s := open(t, b, "s", kv.Options{Create: true, Counter: ctr})
	put(t, s, "a", "1")
	before := b.Snapshot()
	b.FailNext(kvtest.FaultDropAfter)
	if err := s.Put(ctx, "a", []byte("X")); err == nil {
		t.Fatal("the dropped commit was acknowledged")
	}
	recKey := s.RecordKeyForTest("a")
	recX, _ := b.Raw(recKey)
	b.Restore(before)
	s2 := open(t, b, "s", kv.Options{Counter: ctr})
	put(t, s2, "a", "Y")
	b.SetRaw(recKey, recX)
	if v, err := s2.Get(ctx, "a"); !errors.Is(err, kv.ErrReplay) {
		t.Fatalf("Get after the unacknowledged record was swapped in = %q, %v; want ErrReplay", v, err)
	}
	s3, err := kv.Open(ctx, b, "s", kv.Options{Sealer: sealer(), Counter: ctr})
	if err == nil {
		if v, err := s3.Get(ctx, "a"); !errors.Is(err, kv.ErrReplay) {
			t.Fatalf("Get after reopen = %q, %v; want ErrReplay", v, err)
		}
	}
}

// An old release of the same signer (lower SVN, another measurement) builds
// a whole state under PolicySigner for a store created with PolicyEnclave.
// The store must open only blobs sealed under its own policy.
func TestAttackPolicyDowngrade(t *testing.T) {
	ctx := context.Background()
	victim := kvtest.Sealer(root, 0xA1, 0x51, 2)
	old := kvtest.Sealer(root, 0x0D, 0x51, 1) // same signer and product, SVN 1
	b := kvtest.NewMemBackend()
	s := open(t, b, "s", kv.Options{Sealer: victim, Create: true})
	put(t, s, "a", "good")

	forged := kvtest.NewMemBackend()
	f := open(t, forged, "s", kv.Options{Sealer: old, Policy: seal.PolicySigner, Create: true})
	for f.Version() <= s.Version()+3 {
		put(t, f, "a", "evil")
	}
	b.Restore(forged.Snapshot())
	s2, err := kv.Open(ctx, b, "s", kv.Options{Sealer: victim})
	if err == nil {
		v, _ := s2.Get(ctx, "a")
		t.Fatalf("a PolicyEnclave store opened a PolicySigner state (a = %q)", v)
	}
	if !errors.Is(err, kv.ErrUnseal) || !errors.Is(err, seal.ErrWrongPolicy) {
		t.Fatalf("Open = %v, want ErrUnseal wrapping seal.ErrWrongPolicy", err)
	}
}

// A PolicySigner store upgraded to SVN 3: the old SVN 2 release, run by
// the host on a copy taken before the upgrade, commits until its state is
// one version past the trusted counter, which the first release accepted as
// the crash catch-up of a commit in flight.
func TestAttackForgedCatchUp(t *testing.T) {
	ctx := context.Background()
	v2 := kvtest.Sealer(root, 0xA1, 0x51, 2)
	v3 := kvtest.Sealer(root, 0xA3, 0x51, 3)
	b := kvtest.NewMemBackend()
	ctr := kv.NewMemCounter(kv.Count{}) // persistent and trusted
	s := open(t, b, "s", kv.Options{Sealer: v2, Policy: seal.PolicySigner, Create: true, Counter: ctr})
	put(t, s, "a", "good")
	preUpgrade := b.Snapshot()
	s3 := open(t, b, "s", kv.Options{Sealer: v3, Policy: seal.PolicySigner, Counter: ctr})
	put(t, s3, "a", "upgraded")
	put(t, s3, "b", "upgraded")
	target := s3.Version() + 1

	fork := kvtest.NewMemBackend()
	fork.Restore(preUpgrade)
	old := open(t, fork, "s", kv.Options{Sealer: v2, Policy: seal.PolicySigner})
	for old.Version() < target {
		put(t, old, "a", "evil")
	}
	b.Restore(fork.Snapshot())
	s4, err := kv.Open(ctx, b, "s", kv.Options{Sealer: v3, Policy: seal.PolicySigner, Counter: ctr})
	if err == nil {
		v, _ := s4.Get(ctx, "a")
		t.Fatalf("a forged state at counter+1 passed as crash catch-up (a = %q)", v)
	}
	if !errors.Is(err, kv.ErrFork) {
		t.Fatalf("Open = %v, want ErrFork", err)
	}
}

// gateBackend holds the next Commit after applying it until released, and
// can hold the next Get of one key before it reads the host.
type gateBackend struct {
	*kvtest.MemBackend
	mu         sync.Mutex
	armed      bool
	applied    chan struct{}
	release    chan error
	getKey     string
	getEntered chan struct{}
	getGo      chan struct{}
}

func (g *gateBackend) Commit(ctx context.Context, ops []kv.Op) error {
	g.mu.Lock()
	armed := g.armed
	g.armed = false
	g.mu.Unlock()
	if err := g.MemBackend.Commit(ctx, ops); err != nil || !armed {
		return err
	}
	close(g.applied)
	return <-g.release
}

func (g *gateBackend) Get(ctx context.Context, key []byte) ([]byte, bool, error) {
	g.mu.Lock()
	var entered, goOn chan struct{}
	if g.getKey != "" && string(key) == g.getKey {
		entered, goOn = g.getEntered, g.getGo
		g.getKey = ""
	}
	g.mu.Unlock()
	if entered != nil {
		close(entered)
		<-goOn
	}
	return g.MemBackend.Get(ctx, key)
}

// A Get racing a commit whose records the host already applied must not
// return them: the host then fails the commit, and the value was never
// acknowledged. Two races: a Get that read the index before the commit
// and reaches the host after the host applied it, and a Get that starts
// while the commit is in flight. Both run with a context that is already
// cancelled, so that a Get that would wait for the commit returns at once
// instead (and the test needs no timing); a third Get with a live context
// waits and returns once the commit failed.
func TestAttackDirtyRead(t *testing.T) {
	ctx := context.Background()
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	g := &gateBackend{MemBackend: kvtest.NewMemBackend(), applied: make(chan struct{}), release: make(chan error)}
	s := open(t, g, "s", kv.Options{Create: true})
	put(t, s, "a", "acked")
	type res struct {
		v   []byte
		err error
	}
	get := func(ctx context.Context) chan res {
		got := make(chan res, 1)
		go func() {
			v, err := s.Get(ctx, "a")
			got <- res{v, err}
		}()
		return got
	}
	check := func(name string, r res) {
		t.Helper()
		if string(r.v) == "dirty" {
			t.Fatalf("%s returned a value that was never acknowledged", name)
		}
		if r.err != nil && !errors.Is(r.err, kv.ErrCommitUnknown) && !errors.Is(r.err, context.Canceled) {
			t.Fatalf("%s = %q, %v; want no value yet, the acknowledged value or ErrCommitUnknown", name, r.v, r.err)
		}
	}
	g.mu.Lock()
	g.getKey = s.RecordKeyForTest("a")
	g.getEntered, g.getGo = make(chan struct{}), make(chan struct{})
	g.armed = true
	g.mu.Unlock()
	early := get(cancelled)
	<-g.getEntered // read the index, not yet the host
	putErr := make(chan error, 1)
	go func() { putErr <- s.Put(ctx, "a", []byte("dirty")) }()
	<-g.applied // the host holds the new record; the commit is not acknowledged
	close(g.getGo)
	check("Get before the commit", <-early)
	check("Get during the commit", <-get(cancelled))
	waiting := get(ctx)
	g.release <- kvtest.ErrDropped
	if err := <-putErr; err == nil {
		t.Fatal("the failed commit was acknowledged")
	}
	check("Get waiting for the commit", <-waiting)
}

// Two instances serve copies of one store with one shared trusted counter.
// The fork must be detected at the second instance's commit, and must not
// leave the counter ahead of every state: the first instance stays usable.
func TestAttackForkSharedCounter(t *testing.T) {
	ctx := context.Background()
	ctr := kv.NewMemCounter(kv.Count{})
	b := kvtest.NewMemBackend()
	a := open(t, b, "s", kv.Options{Create: true, Counter: ctr})
	put(t, a, "k", "0")
	copyB := kvtest.NewMemBackend()
	copyB.Restore(b.Snapshot())
	bInst := open(t, copyB, "s", kv.Options{Counter: ctr})
	put(t, a, "k", "A")
	err := bInst.Put(ctx, "k", []byte("B"))
	if !errors.Is(err, kv.ErrFork) {
		t.Fatalf("the fork's commit = %v, want ErrFork", err)
	}
	if _, err := kv.Open(ctx, copyB, "s", kv.Options{Sealer: sealer(), Counter: ctr}); !errors.Is(err, kv.ErrRollback) {
		t.Fatalf("reopening the fork's copy = %v, want ErrRollback", err)
	}
	a2 := open(t, b, "s", kv.Options{Counter: ctr})
	mustGet(t, a2, "k", "A")
	put(t, a2, "k", "A2")
}

// A host that deletes every record of a store: with a trusted counter above
// zero, or a pinned version, Open{Create} refuses instead of starting an
// empty store, and leaves the host as it was.
func TestAttackWipe(t *testing.T) {
	ctx := context.Background()
	for _, withCounter := range []bool{true, false} {
		t.Run(fmt.Sprintf("counter=%v", withCounter), func(t *testing.T) {
			b := kvtest.NewMemBackend()
			ctr := kv.NewMemCounter(kv.Count{})
			o := kv.Options{Create: true}
			if withCounter {
				o.Counter = ctr
			}
			s := open(t, b, "s", o)
			put(t, s, "a", "1")
			ver := s.Version()
			b.Restore(kvtest.Snapshot{})
			o2 := kv.Options{Sealer: sealer(), Create: true}
			if withCounter {
				o2.Counter = ctr
			} else {
				o2.MinVersion = ver
			}
			if _, err := kv.Open(ctx, b, "s", o2); !errors.Is(err, kv.ErrRollback) {
				t.Fatalf("Open(Create) over a wiped store = %v, want ErrRollback", err)
			}
			if len(b.Keys()) != 0 {
				t.Fatal("a refused Open wrote to the host")
			}
		})
	}
}

// The documented limit of the default counter: across a restart, a wiped
// store is not told from a new one.
func TestLimitWipeWithDefaultCounter(t *testing.T) {
	b := kvtest.NewMemBackend()
	s := open(t, b, "s", kv.Options{Create: true})
	put(t, s, "a", "1")
	b.Restore(kvtest.Snapshot{})
	s2 := open(t, b, "s", kv.Options{Create: true})
	if _, err := s2.Get(context.Background(), "a"); !errors.Is(err, kv.ErrNotFound) {
		t.Fatalf("Get(a) in the store re-created over a wipe = %v; the documented limit changed", err)
	}
}

// The documented limit of separate counters: two instances on copies of
// one store, each with its own counter, both commit; neither can tell.
func TestLimitForkSeparateCounters(t *testing.T) {
	b := kvtest.NewMemBackend()
	a := open(t, b, "s", kv.Options{Create: true, Counter: kv.NewMemCounter(kv.Count{})})
	put(t, a, "k", "0")
	copyB := kvtest.NewMemBackend()
	copyB.Restore(b.Snapshot())
	other := open(t, copyB, "s", kv.Options{}) // its own counter
	put(t, a, "k", "A")
	put(t, other, "k", "B")
	mustGet(t, a, "k", "A")
	mustGet(t, other, "k", "B")
}

// A record sealed under another policy, served in place of one of the
// store's, does not open.
func TestAttackRecordOfAnotherPolicy(t *testing.T) {
	ctx := context.Background()
	b := kvtest.NewMemBackend()
	s := open(t, b, "s", kv.Options{Create: true})
	put(t, s, "a", "1")
	forged := kvtest.NewMemBackend()
	f := open(t, forged, "s", kv.Options{Sealer: kvtest.Sealer(root, 0x0D, 0x51, 1), Policy: seal.PolicySigner, Create: true})
	put(t, f, "a", "evil")
	rec, _ := forged.Raw(f.RecordKeyForTest("a"))
	b.SetRaw(s.RecordKeyForTest("a"), rec)
	if _, err := s.Get(ctx, "a"); !errors.Is(err, kv.ErrTampered) || !errors.Is(err, seal.ErrWrongPolicy) {
		t.Fatalf("Get of a record sealed under another policy = %v, want ErrTampered wrapping seal.ErrWrongPolicy", err)
	}
}

// countingBackend counts the bytes each Commit writes.
type countingBackend struct {
	*kvtest.MemBackend
	mu   sync.Mutex
	last int
}

func (c *countingBackend) Commit(ctx context.Context, ops []kv.Op) error {
	n := 0
	for _, op := range ops {
		n += len(op.Key) + len(op.Value)
	}
	c.mu.Lock()
	c.last = n
	c.mu.Unlock()
	return c.MemBackend.Commit(ctx, ops)
}

// TestManyKeys: 20,000 keys with 64-byte names (the one-record index of the
// first release held 1,896), and a Put of one key writes its record, the
// pages on one path and the state: a bounded number of bytes that grows
// with the index height, not with the number of keys.
func TestManyKeys(t *testing.T) {
	ctx := context.Background()
	cb := &countingBackend{MemBackend: kvtest.NewMemBackend()}
	s := open(t, cb, "s", kv.Options{Create: true})
	name := func(i int) string { return fmt.Sprintf("%064d", i) }
	perPut := map[int]int{}
	for n := 0; n < 20000; n += 25 {
		err := s.Update(ctx, func(tx *kv.Tx) error {
			for i := n; i < n+25; i++ {
				tx.Put(name(i), []byte("v"))
			}
			return nil
		})
		if err != nil {
			t.Fatalf("at %d keys: %v", n, err)
		}
		if n+25 == 1000 || n+25 == 20000 {
			put(t, s, name(n/2), "updated")
			perPut[n+25] = cb.last
		}
	}
	// A leaf is at most 4 KiB, and three levels cover 20,000 keys.
	for keys, b := range perPut {
		if b > 3*(4096+200)+2048 {
			t.Errorf("a Put at %d keys wrote %d bytes", keys, b)
		}
	}
	t.Logf("bytes written by one Put: %v", perPut)
	mustGet(t, s, name(0), "v")
	mustGet(t, s, name(19999), "v")
	names, err := s.List(ctx, name(1234)[:62])
	if err != nil || len(names) != 100 {
		t.Fatalf("List = %d names, %v; want 100", len(names), err)
	}
	s2 := open(t, cb, "s", kv.Options{MinVersion: s.Version()})
	mustGet(t, s2, name((20000-25)/2), "updated")
}

// With a shared counter, an instance that opens while another has a
// commit prepared cannot tell it from a crashed one and clears it. The
// commit in flight then fails with ErrFork after its host write, and is
// not acknowledged; its copy then fails Open with ErrFork. The instance
// that opened wins, and nothing acknowledged is lost.
func TestForkOpenDuringAnotherInstancesCommit(t *testing.T) {
	ctx := context.Background()
	ctr := kv.NewMemCounter(kv.Count{})
	g := &gateBackend{MemBackend: kvtest.NewMemBackend(), applied: make(chan struct{}), release: make(chan error)}
	a := open(t, g, "s", kv.Options{Create: true, Counter: ctr})
	put(t, a, "k", "0")
	copyB := kvtest.NewMemBackend()
	copyB.Restore(g.Snapshot())
	g.mu.Lock()
	g.armed = true
	g.mu.Unlock()
	putErr := make(chan error, 1)
	go func() { putErr <- a.Put(ctx, "k", []byte("A")) }()
	<-g.applied // a's host holds its commit; the counter holds it prepared
	bInst := open(t, copyB, "s", kv.Options{Counter: ctr})
	g.release <- nil
	if err := <-putErr; !errors.Is(err, kv.ErrFork) {
		t.Fatalf("the commit whose prepare another instance cleared = %v, want ErrFork", err)
	}
	put(t, bInst, "k", "B")
	if _, err := kv.Open(ctx, g, "s", kv.Options{Sealer: sealer(), Counter: ctr}); !errors.Is(err, kv.ErrRollback) && !errors.Is(err, kv.ErrFork) {
		t.Fatalf("reopening the losing copy = %v, want ErrRollback or ErrFork", err)
	}
	mustGet(t, open(t, copyB, "s", kv.Options{Counter: ctr}), "k", "B")
}
