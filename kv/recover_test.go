package kv_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"maps"
	"strconv"
	"strings"
	"testing"

	"github.com/cloister-dev/cloister/kv"
	"github.com/cloister-dev/cloister/kv/kvtest"
	"github.com/cloister-dev/cloister/seal"
)

func sameHost(a, b kvtest.Snapshot) bool {
	return maps.EqualFunc(a, b, func(x, y []byte) bool { return bytes.Equal(x, y) })
}

// The host lost its last commits (a disk restored from backup): the
// persistent counter is ahead and Open refuses. Recover accepts the loss of
// exactly the named versions, logs it, and moves on past the counter, so
// that the lost states can never be served later.
func TestRecoverCounterAhead(t *testing.T) {
	ctx := context.Background()
	b := kvtest.NewMemBackend()
	ctr := &kvtest.Counter{}
	s := open(t, b, "s", kv.Options{Create: true, Counter: ctr})
	put(t, s, "a", "1")
	backup, backupVer := b.Snapshot(), s.Version()
	put(t, s, "a", "2")
	put(t, s, "b", "2")
	lost := b.Snapshot()
	top := s.Version()
	b.Restore(backup)

	if _, err := kv.Open(ctx, b, "s", kv.Options{Sealer: sealer(), Counter: ctr}); !errors.Is(err, kv.ErrRollback) {
		t.Fatalf("Open with the counter ahead = %v, want ErrRollback", err)
	}
	var logBuf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logBuf, nil))
	for _, r := range []kv.Recovery{
		{From: backupVer + 1, To: top - 1, Log: log}, // names less than was lost
		{From: backupVer, To: top, Log: log},         // names more
		{From: backupVer + 1, To: top + 1, Log: log},
		{From: backupVer + 1, To: top}, // no log
	} {
		if _, err := kv.Recover(ctx, b, "s", kv.Options{Sealer: sealer(), Counter: ctr}, r); err == nil {
			t.Fatalf("Recover(%d..%d, log %v) succeeded", r.From, r.To, r.Log != nil)
		}
		if !sameHost(backup, b.Snapshot()) {
			t.Fatal("a refused Recover changed the host")
		}
	}
	if _, err := kv.Recover(ctx, b, "s", kv.Options{Sealer: sealer()}, kv.Recovery{From: backupVer + 1, To: top, Log: log}); err == nil {
		t.Fatal("Recover without a counter succeeded")
	}
	if logBuf.Len() != 0 {
		t.Fatalf("a refused Recover logged: %s", logBuf.String())
	}

	r, err := kv.Recover(ctx, b, "s", kv.Options{Sealer: sealer(), Counter: ctr}, kv.Recovery{From: backupVer + 1, To: top, Log: log})
	if err != nil {
		t.Fatalf("Recover: %v", err)
	}
	for _, want := range []string{"level=WARN", "lost_from=" + itoa(backupVer+1), "lost_to=" + itoa(top), "store=s"} {
		if !strings.Contains(logBuf.String(), want) {
			t.Fatalf("recovery log %q lacks %q", logBuf.String(), want)
		}
	}
	if r.Version() != top+1 {
		t.Fatalf("recovered version %d, want %d", r.Version(), top+1)
	}
	mustGet(t, r, "a", "1")
	if _, err := r.Get(ctx, "b"); !errors.Is(err, kv.ErrNotFound) {
		t.Fatalf("Get(b) after recovery = %v, want ErrNotFound (b was in the lost versions)", err)
	}
	put(t, r, "c", "3")
	mustGet(t, open(t, b, "s", kv.Options{Counter: ctr}), "c", "3")
	// The lost states are stale for good.
	b.Restore(lost)
	if _, err := kv.Open(ctx, b, "s", kv.Options{Sealer: sealer(), Counter: ctr}); !errors.Is(err, kv.ErrRollback) {
		t.Fatalf("Open over a lost state after recovery = %v, want ErrRollback", err)
	}
	// Nothing lost: Recover refuses.
	b2 := kvtest.NewMemBackend()
	ctr2 := &kvtest.Counter{}
	open(t, b2, "s", kv.Options{Create: true, Counter: ctr2})
	if _, err := kv.Recover(ctx, b2, "s", kv.Options{Sealer: sealer(), Counter: ctr2}, kv.Recovery{From: 2, To: 1, Log: log}); err == nil {
		t.Fatal("Recover of a store that lost nothing succeeded")
	}
}

// A wiped store with a persistent counter: Open{Create} refuses, Recover
// from version 1 starts it again, empty, past the counter.
func TestRecoverWipe(t *testing.T) {
	ctx := context.Background()
	b := kvtest.NewMemBackend()
	ctr := &kvtest.Counter{}
	s := open(t, b, "s", kv.Options{Create: true, Counter: ctr})
	put(t, s, "a", "1")
	top := s.Version()
	b.Restore(kvtest.Snapshot{})
	if _, err := kv.Open(ctx, b, "s", kv.Options{Sealer: sealer(), Counter: ctr, Create: true}); !errors.Is(err, kv.ErrRollback) {
		t.Fatalf("Open(Create) over a wipe = %v, want ErrRollback", err)
	}
	var logBuf bytes.Buffer
	r, err := kv.Recover(ctx, b, "s", kv.Options{Sealer: sealer(), Counter: ctr}, kv.Recovery{From: 1, To: top, Log: slog.New(slog.NewTextHandler(&logBuf, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Get(ctx, "a"); !errors.Is(err, kv.ErrNotFound) {
		t.Fatalf("Get(a) after recovering a wipe = %v", err)
	}
	put(t, r, "a", "new")
	mustGet(t, open(t, b, "s", kv.Options{Counter: ctr}), "a", "new")
}

// After an upgrade, the first Open re-seals the state at the new SVN; with
// Options.MinSVN at the new SVN, a state the old release sealed is refused
// even with no persistent counter.
func TestMinSVN(t *testing.T) {
	ctx := context.Background()
	v2 := kvtest.Sealer(root, 0xA1, 0x51, 2)
	v3 := kvtest.Sealer(root, 0xA3, 0x51, 3)
	b := kvtest.NewMemBackend()
	s := open(t, b, "s", kv.Options{Sealer: v2, Policy: seal.PolicySigner, Create: true})
	put(t, s, "a", "1")
	old := b.Snapshot()
	if _, err := kv.Open(ctx, b, "s", kv.Options{Sealer: v3, Policy: seal.PolicySigner, MinSVN: 3}); !errors.Is(err, kv.ErrDowngrade) {
		t.Fatalf("Open(MinSVN 3) of a state sealed at SVN 2 = %v, want ErrDowngrade", err)
	}
	up := open(t, b, "s", kv.Options{Sealer: v3, Policy: seal.PolicySigner, MinSVN: 2})
	if up.Version() != s.Version()+1 {
		t.Fatalf("the upgrade did not re-seal the state: version %d", up.Version())
	}
	mustGet(t, up, "a", "1") // a record sealed at SVN 2 is pinned by the state
	mustGet(t, open(t, b, "s", kv.Options{Sealer: v3, Policy: seal.PolicySigner, MinSVN: 3}), "a", "1")
	b.Restore(old)
	if _, err := kv.Open(ctx, b, "s", kv.Options{Sealer: v3, Policy: seal.PolicySigner, MinSVN: 3}); !errors.Is(err, kv.ErrDowngrade) {
		t.Fatalf("Open(MinSVN 3) of the pre-upgrade state = %v, want ErrDowngrade", err)
	}
	if _, err := kv.Open(ctx, b, "s", kv.Options{Sealer: v3, MinSVN: 3}); err == nil {
		t.Fatal("MinSVN accepted for a PolicyEnclave store")
	}
}

func itoa(v uint64) string { return strconv.FormatUint(v, 10) }

// The documented limit of Recover: the counter remembers the digest of its
// latest version only, so Recover cannot tell the acknowledged state at
// the version before the lost ones from another authentic state of that
// version, such as a commit the host applied but reported as failed. A
// host that lost v+1 and serves that unacknowledged state at v makes the
// operator's "lose v+1" also lose the acknowledged v, and bring back a
// write that was never acknowledged.
func TestLimitRecoverCannotTellWhichStateAtTheVersionBefore(t *testing.T) {
	ctx := context.Background()
	b := kvtest.NewMemBackend()
	ctr := &kvtest.Counter{}
	s, unacked := abandonedCommit(t, b, ctr)
	put(t, s, "a", "acknowledged") // the same version as the unacknowledged one
	put(t, s, "b", "2")
	top := s.Version()
	b.Restore(unacked) // the host "lost" the last commit
	r, err := kv.Recover(ctx, b, "s", kv.Options{Sealer: sealer(), Counter: ctr},
		kv.Recovery{From: top, To: top, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatalf("Recover: %v; the documented limit changed", err)
	}
	mustGet(t, r, "a", "never acknowledged")
}

// abandonedCommit makes store "s" on b with a=1, has the host apply
// a=never acknowledged but lose its answer (ErrCommitUnknown), then serves
// the state before it again and reopens: the returned store holds a=1 and
// the returned snapshot the unacknowledged commit.
func abandonedCommit(t *testing.T, b *kvtest.MemBackend, ctr *kvtest.Counter) (*kv.Store, kvtest.Snapshot) {
	t.Helper()
	s := open(t, b, "s", kv.Options{Create: true, Counter: ctr})
	put(t, s, "a", "1")
	before := b.Snapshot()
	b.FailNext(kvtest.FaultDropAfter)
	if err := s.Put(context.Background(), "a", []byte("never acknowledged")); !errors.Is(err, kv.ErrCommitUnknown) {
		t.Fatalf("Put with the host answer lost = %v, want ErrCommitUnknown", err)
	}
	unacked := b.Snapshot()
	b.Restore(before) // the host serves the older state: the commit is abandoned
	return open(t, b, "s", kv.Options{Counter: ctr}), unacked
}

// The host lost the committed state and holds another authentic state of
// the same version (a commit it applied but reported as failed): Open
// refuses with ErrRollback, and Recover must offer a way out, naming that
// one version as lost, rather than leave the store unusable for good.
func TestRecoverOtherStateAtTheCounterVersion(t *testing.T) {
	ctx := context.Background()
	b := kvtest.NewMemBackend()
	ctr := &kvtest.Counter{}
	s, unacked := abandonedCommit(t, b, ctr)
	put(t, s, "a", "acknowledged")
	top := s.Version()
	b.Restore(unacked) // the host lost version top, and holds another state at top
	if _, err := kv.Open(ctx, b, "s", kv.Options{Sealer: sealer(), Counter: ctr}); !errors.Is(err, kv.ErrRollback) {
		t.Fatalf("Open = %v, want ErrRollback", err)
	}
	var logBuf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logBuf, nil))
	for _, r := range []kv.Recovery{{From: top + 1, To: top, Log: log}, {From: top - 1, To: top, Log: log}, {From: top, To: top + 1, Log: log}} {
		if _, err := kv.Recover(ctx, b, "s", kv.Options{Sealer: sealer(), Counter: ctr}, r); err == nil {
			t.Fatalf("Recover(%d..%d) succeeded; the lost version is %d alone", r.From, r.To, top)
		}
	}
	r, err := kv.Recover(ctx, b, "s", kv.Options{Sealer: sealer(), Counter: ctr}, kv.Recovery{From: top, To: top, Log: log})
	if err != nil {
		t.Fatalf("Recover(%d..%d): %v", top, top, err)
	}
	if !strings.Contains(logBuf.String(), "lost_from="+itoa(top)) {
		t.Fatalf("recovery log %q does not name version %d", logBuf.String(), top)
	}
	if r.Version() != top+1 {
		t.Fatalf("recovered version %d, want %d", r.Version(), top+1)
	}
	put(t, r, "b", "2")
	mustGet(t, open(t, b, "s", kv.Options{Counter: ctr}), "b", "2")
}
