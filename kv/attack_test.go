package kv_test

import (
	"context"
	"errors"
	"maps"
	"testing"

	"github.com/cloister-dev/cloister/kv"
	"github.com/cloister-dev/cloister/kv/kvtest"
	"github.com/cloister-dev/cloister/seal"
)

// Each test below is one thing a hostile host can do; each must be
// detected with its named error, during the run and, where the attack
// survives a restart, at the next Open.

func TestAttackSwap(t *testing.T) {
	b := kvtest.NewMemBackend()
	s := open(t, b, "s", kv.Options{Create: true})
	put(t, s, "a", "alpha")
	put(t, s, "b", "beta")
	ka, kb := s.RecordKeyForTest("a"), s.RecordKeyForTest("b")
	va, _ := b.Raw(ka)
	vb, _ := b.Raw(kb)
	b.SetRaw(ka, vb)
	b.SetRaw(kb, va)
	for _, k := range []string{"a", "b"} {
		if _, err := s.Get(context.Background(), k); !errors.Is(err, kv.ErrSwapped) {
			t.Errorf("Get(%s) after swap = %v, want ErrSwapped", k, err)
		}
	}
}

func TestAttackReplayOneKey(t *testing.T) {
	b := kvtest.NewMemBackend()
	ctr := kv.NewMemCounter(kv.Count{})
	s := open(t, b, "s", kv.Options{Create: true, Counter: ctr})
	put(t, s, "a", "old")
	old, _ := b.Raw(s.RecordKeyForTest("a"))
	put(t, s, "a", "new")
	b.SetRaw(s.RecordKeyForTest("a"), old)
	if _, err := s.Get(context.Background(), "a"); !errors.Is(err, kv.ErrReplay) {
		t.Fatalf("Get after replay = %v, want ErrReplay", err)
	}
	// Reopened, the state still lists the newer version.
	s2 := open(t, b, "s", kv.Options{Counter: ctr})
	if _, err := s2.Get(context.Background(), "a"); !errors.Is(err, kv.ErrReplay) {
		t.Fatalf("Get after reopen = %v, want ErrReplay", err)
	}
}

func TestAttackRollbackWholeStore(t *testing.T) {
	ctx := context.Background()
	b := kvtest.NewMemBackend()
	ctr := kv.NewMemCounter(kv.Count{}) // stands in for a persistent counter
	s := open(t, b, "s", kv.Options{Create: true, Counter: ctr})
	put(t, s, "a", "1")
	put(t, s, "b", "1")
	snap := b.Snapshot()
	put(t, s, "a", "2")
	put(t, s, "c", "2")
	ver := s.Version()
	b.Restore(snap)

	// During the run: the in-memory index is newer than the host.
	if _, err := s.Get(ctx, "a"); !errors.Is(err, kv.ErrReplay) {
		t.Errorf("Get(a) after rollback = %v, want ErrReplay", err)
	}
	if _, err := s.Get(ctx, "c"); !errors.Is(err, kv.ErrMissingRecord) {
		t.Errorf("Get(c) after rollback = %v, want ErrMissingRecord", err)
	}
	// At reopen, with the trusted counter.
	if _, err := kv.Open(ctx, b, "s", kv.Options{Sealer: sealer(), Counter: ctr}); !errors.Is(err, kv.ErrRollback) {
		t.Errorf("Open with counter after rollback = %v, want ErrRollback", err)
	}
	// At reopen after a restart, with the operator's pin instead.
	if _, err := kv.Open(ctx, b, "s", kv.Options{Sealer: sealer(), MinVersion: ver}); !errors.Is(err, kv.ErrRollback) {
		t.Errorf("Open with MinVersion after rollback = %v, want ErrRollback", err)
	}
	// Honest limit: a fresh in-memory counter and no pin trusts the first
	// state it sees (documented on Counter).
	if _, err := kv.Open(ctx, b, "s", kv.Options{Sealer: sealer()}); err != nil {
		t.Errorf("Open with fresh MemCounter = %v; the documented limit changed", err)
	}
	// Rolling back only the state under newer records is caught too. The
	// old state alone names index pages the next commit deleted: Open
	// finds them missing.
	b2 := kvtest.NewMemBackend()
	s2 := open(t, b2, "s", kv.Options{Create: true})
	put(t, s2, "a", "1")
	oldState, _ := b2.Raw(kv.StateKeyForTest("s"))
	oldSnap := b2.Snapshot()
	put(t, s2, "a", "2")
	newRecord, _ := b2.Raw(s2.RecordKeyForTest("a"))
	b2.SetRaw(kv.StateKeyForTest("s"), oldState)
	if _, err := kv.Open(ctx, b2, "s", kv.Options{Sealer: sealer()}); !errors.Is(err, kv.ErrMissingRecord) {
		t.Errorf("Open of a rolled-back state whose pages are gone = %v, want ErrMissingRecord", err)
	}
	// A host that kept the old pages too, under the newer record.
	b2.Restore(oldSnap)
	b2.SetRaw(s2.RecordKeyForTest("a"), newRecord)
	s3 := open(t, b2, "s", kv.Options{}) // fresh counter: trusts the old state
	if _, err := s3.Get(ctx, "a"); !errors.Is(err, kv.ErrRollback) {
		t.Errorf("Get under a rolled-back state = %v, want ErrRollback", err)
	}
}

func TestAttackDeleteRecord(t *testing.T) {
	ctx := context.Background()
	b := kvtest.NewMemBackend()
	s := open(t, b, "s", kv.Options{Create: true})
	put(t, s, "a", "1")
	put(t, s, "b", "1")
	b.DeleteRaw(s.RecordKeyForTest("a"))
	if _, err := s.Get(ctx, "a"); !errors.Is(err, kv.ErrMissingRecord) {
		t.Errorf("Get after delete = %v, want ErrMissingRecord", err)
	}
	if _, err := kv.Open(ctx, b, "s", kv.Options{Sealer: sealer()}); !errors.Is(err, kv.ErrMissingRecord) {
		t.Errorf("Open after delete = %v, want ErrMissingRecord", err)
	}
	// Deleting the state while records remain is not "a new store".
	b.DeleteRaw(kv.StateKeyForTest("s"))
	before := b.Snapshot()
	if _, err := kv.Open(ctx, b, "s", kv.Options{Sealer: sealer(), Create: true}); !errors.Is(err, kv.ErrMissingRecord) {
		t.Errorf("Open(Create) with state deleted = %v, want ErrMissingRecord", err)
	}
	if !maps.EqualFunc(before, b.Snapshot(), func(x, y []byte) bool { return string(x) == string(y) }) {
		t.Error("a refused Open changed the host's records")
	}
}

func TestAttackDeleteStateWithCounter(t *testing.T) {
	b := kvtest.NewMemBackend()
	ctr := kv.NewMemCounter(kv.Count{})
	open(t, b, "s", kv.Options{Create: true, Counter: ctr})
	b.DeleteRaw(kv.StateKeyForTest("s"))
	if _, err := kv.Open(context.Background(), b, "s", kv.Options{Sealer: sealer(), Counter: ctr, Create: true}); !errors.Is(err, kv.ErrRollback) {
		t.Errorf("Open after the whole store vanished = %v, want ErrRollback", err)
	}
}

func TestAttackChangeAByte(t *testing.T) {
	ctx := context.Background()
	b := kvtest.NewMemBackend()
	s := open(t, b, "s", kv.Options{Create: true})
	put(t, s, "a", "some value")
	key := s.RecordKeyForTest("a")
	orig, _ := b.Raw(key)
	for i := range orig {
		bad := append([]byte(nil), orig...)
		bad[i] ^= 0x01
		b.SetRaw(key, bad)
		if _, err := s.Get(ctx, "a"); !errors.Is(err, kv.ErrTampered) {
			t.Fatalf("record byte %d flipped: Get = %v, want ErrTampered", i, err)
		}
	}
	for _, n := range []int{0, 1, len(orig) / 2, len(orig) - 1} { // truncation
		b.SetRaw(key, orig[:n])
		if _, err := s.Get(ctx, "a"); !errors.Is(err, kv.ErrTampered) {
			t.Fatalf("record truncated to %d: Get = %v, want ErrTampered", n, err)
		}
	}
	b.SetRaw(key, orig)
	mustGet(t, s, "a", "some value")

	sk := kv.StateKeyForTest("s")
	st, _ := b.Raw(sk)
	for i := range st {
		bad := append([]byte(nil), st...)
		bad[i] ^= 0x01
		b.SetRaw(sk, bad)
		_, err := kv.Open(ctx, b, "s", kv.Options{Sealer: sealer(), Create: true})
		// A flip inside the seal header's identity fields reads as a state
		// sealed for another identity; everything else as tampering.
		if !errors.Is(err, kv.ErrTampered) && !errors.Is(err, kv.ErrUnseal) {
			t.Fatalf("state byte %d flipped: Open = %v, want ErrTampered or ErrUnseal", i, err)
		}
		if got, _ := b.Raw(sk); string(got) != string(bad) {
			t.Fatalf("state byte %d flipped: Open rewrote the state", i)
		}
	}
}

func TestAttackForeignStore(t *testing.T) {
	ctx := context.Background()
	b := kvtest.NewMemBackend()
	x := open(t, b, "x", kv.Options{Create: true})
	y := open(t, b, "y", kv.Options{Create: true})
	put(t, x, "k", "x's")
	put(t, y, "k", "y's")
	yrec, _ := b.Raw(y.RecordKeyForTest("k"))
	b.SetRaw(x.RecordKeyForTest("k"), yrec)
	if _, err := x.Get(ctx, "k"); !errors.Is(err, kv.ErrForeignStore) {
		t.Errorf("Get of y's record in x = %v, want ErrForeignStore", err)
	}
	ystate, _ := b.Raw(kv.StateKeyForTest("y"))
	b.SetRaw(kv.StateKeyForTest("x"), ystate)
	if _, err := kv.Open(ctx, b, "x", kv.Options{Sealer: sealer()}); !errors.Is(err, kv.ErrForeignStore) {
		t.Errorf("Open of x with y's state = %v, want ErrForeignStore", err)
	}
}

func TestAttackOtherIdentity(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name   string
		policy seal.Policy
		opener seal.Sealer
		want   error // nil: opens
	}{
		{"enclave policy, other measurement", seal.PolicyEnclave, kvtest.Sealer(root, 0xB2, 0x51, 2), seal.ErrWrongIdentity},
		{"enclave policy, upgraded build", seal.PolicyEnclave, kvtest.Sealer(root, 0xB2, 0x51, 3), seal.ErrWrongIdentity},
		{"signer policy, other signer", seal.PolicySigner, kvtest.Sealer(root, 0xA1, 0x52, 2), seal.ErrWrongIdentity},
		{"signer policy, lower SVN", seal.PolicySigner, kvtest.Sealer(root, 0xB2, 0x51, 1), seal.ErrSVNTooHigh},
		{"signer policy, higher SVN", seal.PolicySigner, kvtest.Sealer(root, 0xB2, 0x51, 3), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := kvtest.NewMemBackend()
			s := open(t, b, "s", kv.Options{Create: true, Policy: tc.policy})
			put(t, s, "a", "1")
			before := b.Snapshot()
			s2, err := kv.Open(ctx, b, "s", kv.Options{Sealer: tc.opener, Policy: tc.policy, Create: true})
			if tc.want == nil {
				if err != nil {
					t.Fatalf("Open = %v, want success", err)
				}
				mustGet(t, s2, "a", "1")
				put(t, s2, "b", "2") // sealed at the new SVN from now on
				return
			}
			if !errors.Is(err, kv.ErrUnseal) || !errors.Is(err, tc.want) {
				t.Fatalf("Open = %v, want ErrUnseal wrapping %v", err, tc.want)
			}
			// Unseal failure never re-creates or truncates the store.
			if !maps.EqualFunc(before, b.Snapshot(), func(x, y []byte) bool { return string(x) == string(y) }) {
				t.Fatal("a refused Open changed the host's records")
			}
			mustGet(t, open(t, b, "s", kv.Options{Policy: tc.policy}), "a", "1")
		})
	}
}

// The host keeps the state of a commit whose outcome was unknown, serves
// the older state at reopen, and swaps the kept one in for the next commit
// of the same version. The digest the counter keeps with each value catches
// it; a bare version number would not.
func TestAttackSwapInUnacknowledgedState(t *testing.T) {
	ctx := context.Background()
	b := kvtest.NewMemBackend()
	ctr := kv.NewMemCounter(kv.Count{})
	s := open(t, b, "s", kv.Options{Create: true, Counter: ctr})
	put(t, s, "a", "1")
	before := b.Snapshot()
	b.FailNext(kvtest.FaultDropAfter) // applied by the host, answer lost
	if err := s.Put(ctx, "a", []byte("unacknowledged")); err == nil {
		t.Fatal("the dropped commit was acknowledged")
	}
	kept := b.Snapshot()
	b.Restore(before) // the host serves the older state
	s2 := open(t, b, "s", kv.Options{Counter: ctr})
	put(t, s2, "a", "acknowledged")
	b.Restore(kept) // and swaps the unacknowledged one in, same version
	if _, err := kv.Open(ctx, b, "s", kv.Options{Sealer: sealer(), Counter: ctr}); !errors.Is(err, kv.ErrRollback) {
		t.Fatalf("Open over the swapped-in unacknowledged state = %v, want ErrRollback", err)
	}
}
