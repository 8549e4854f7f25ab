package ledgercounter

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"github.com/cloister-dev/cloister/kv"
	"github.com/cloister-dev/cloister/kv/kvtest"
	"github.com/cloister-dev/cloister/ledger/ledgertest"
)

type fixture struct{ l *ledgertest.Ledger }

func startLedger(t *testing.T) *fixture { return &fixture{ledgertest.Start(t)} }

func (f *fixture) counter(t *testing.T, name string) *Counter {
	t.Helper()
	c, err := New(Options{Name: name, Options: f.l.Client})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

var sealer = kvtest.Sealer(bytes.Repeat([]byte{5}, 32), 9, 9, 1)

// TestRollbackAcrossRestart: a store kept fresh by the ledger counter;
// the enclave restarts (a new Counter, nothing in memory) and the host
// serves the state of an older commit: kv.ErrRollback. With the current
// state it opens.
func TestRollbackAcrossRestart(t *testing.T) {
	ctx := context.Background()
	f := startLedger(t)
	b := kvtest.NewMemBackend()
	s, err := kv.Open(ctx, b, "app", kv.Options{Sealer: sealer, Counter: f.counter(t, "app-store"), Create: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Put(ctx, "k", []byte("v1")); err != nil {
		t.Fatal(err)
	}
	old := b.Snapshot()
	if err := s.Put(ctx, "k", []byte("v2")); err != nil {
		t.Fatal(err)
	}
	s.Close()

	// Restart with the current state: opens, reads v2.
	s, err = kv.Open(ctx, b, "app", kv.Options{Sealer: sealer, Counter: f.counter(t, "app-store")})
	if err != nil {
		t.Fatal(err)
	}
	if v, err := s.Get(ctx, "k"); err != nil || string(v) != "v2" {
		t.Fatalf("%q %v", v, err)
	}
	s.Close()

	// Restart, and the host serves the older state.
	cur := b.Snapshot()
	b.Restore(old)
	if _, err := kv.Open(ctx, b, "app", kv.Options{Sealer: sealer, Counter: f.counter(t, "app-store")}); !errors.Is(err, kv.ErrRollback) {
		t.Fatalf("old state after a restart: %v, want kv.ErrRollback", err)
	}
	b.Restore(cur)
}

// TestCounterContract: Read of a new counter is the zero Count; CAS from
// the wrong old is ErrCounterConflict; CAS backwards is refused.
func TestCounterContract(t *testing.T) {
	ctx := context.Background()
	f := startLedger(t)
	c := f.counter(t, "c")
	if got, err := c.Read(ctx); err != nil || got != (kv.Count{}) {
		t.Fatalf("%v %v", got, err)
	}
	one := kv.Count{Version: 1, Digest: [32]byte{1}}
	if err := c.CompareAndSwap(ctx, kv.Count{}, one); err != nil {
		t.Fatal(err)
	}
	if err := c.CompareAndSwap(ctx, kv.Count{}, one); !errors.Is(err, kv.ErrCounterConflict) {
		t.Fatalf("stale old: %v", err)
	}
	if err := c.CompareAndSwap(ctx, one, kv.Count{}); err == nil {
		t.Fatal("moved back")
	}
	// Another client instance sees the same counter.
	if got, err := f.counter(t, "c").Read(ctx); err != nil || got != one {
		t.Fatalf("%v %v", got, err)
	}
}

// TestAttestationRefused: a ledger whose service certificate's evidence
// does not match the policy (another MRENCLAVE) is refused at the
// handshake; so is a pinned service certificate the server does not chain to.
func TestAttestationRefused(t *testing.T) {
	ctx := context.Background()
	f := startLedger(t)
	wrong := f.l.Client
	wrong.Verify.Policy.MRENCLAVE = [][]byte{bytes.Repeat([]byte{0xEE}, 32)}
	c, err := New(Options{Name: "c", Options: wrong})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Read(ctx); err == nil {
		t.Fatal("a ledger with the wrong measurement was trusted")
	}
	other := startLedger(t)
	pinned := f.l.Client
	pinned.ServiceCert, pinned.Verify = other.l.Client.ServiceCert, other.l.Client.Verify
	if c, err = New(Options{Name: "c", Options: pinned}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Read(ctx); err == nil {
		t.Fatal("a ledger not chaining to the pinned service certificate was trusted")
	}
}
