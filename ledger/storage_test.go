package ledger

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/cloister-dev/cloister/kv/kvtest"
)

// fill opens a ledger on b, appends n entries one by one (one segment
// each, plus signature segments) and closes it.
func fill(t *testing.T, b *kvtest.MemBackend, n int) {
	t.Helper()
	ctx := context.Background()
	node, err := Open(ctx, testOptions(b))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < n; i++ {
		if _, err := node.Append(ctx, "c", fmt.Sprint(i)); err != nil {
			t.Fatal(err)
		}
	}
	node.Close()
}

func reopen(b *kvtest.MemBackend) error {
	n, err := Open(context.Background(), testOptions(b))
	if err == nil {
		n.Close()
	}
	return err
}

func segKey(n uint64) string { return string(SegmentKey(n)) }

// TestHostTampering: every way a host can change stored segments, except
// dropping the newest ones, is refused at startup with a named error.
func TestHostTampering(t *testing.T) {
	cases := []struct {
		name string
		do   func(b *kvtest.MemBackend)
		want error
	}{
		{"edit a byte", func(b *kvtest.MemBackend) {
			v, _ := b.Raw(segKey(2))
			v[len(v)/2] ^= 1
			b.SetRaw(segKey(2), v)
		}, ErrSegmentAuth},
		{"torn: cut short", func(b *kvtest.MemBackend) {
			v, _ := b.Raw(segKey(2))
			b.SetRaw(segKey(2), v[:len(v)-5])
		}, ErrSegmentAuth},
		{"torn: header only", func(b *kvtest.MemBackend) {
			v, _ := b.Raw(segKey(2))
			b.SetRaw(segKey(2), v[:10])
		}, ErrSegmentTorn},
		{"drop a middle segment", func(b *kvtest.MemBackend) { b.DeleteRaw(segKey(1)) }, ErrSegmentGap},
		{"swap two segments", func(b *kvtest.MemBackend) {
			v1, _ := b.Raw(segKey(1))
			v2, _ := b.Raw(segKey(2))
			b.SetRaw(segKey(1), v2)
			b.SetRaw(segKey(2), v1)
		}, ErrSegmentAuth},
		{"replay a segment at a new position", func(b *kvtest.MemBackend) {
			v, _ := b.Raw(segKey(1))
			last := len(b.Keys()) - 1 // keys record + segments 0..last-1
			b.SetRaw(segKey(uint64(last)), v)
		}, ErrSegmentAuth},
		{"drop the key record", func(b *kvtest.MemBackend) { b.DeleteRaw(keysKey) }, ErrKeys},
		{"edit the key record", func(b *kvtest.MemBackend) {
			v, _ := b.Raw(keysKey)
			v[len(v)-1] ^= 1
			b.SetRaw(keysKey, v)
		}, ErrKeys},
		{"foreign key under the prefix", func(b *kvtest.MemBackend) { b.SetRaw(segPrefix+"x", []byte("junk")) }, ErrSegmentTorn},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b := kvtest.NewMemBackend()
			fill(t, b, 6)
			if err := reopen(b); err != nil {
				t.Fatalf("untouched store: %v", err)
			}
			c.do(b)
			if err := reopen(b); !errors.Is(err, c.want) {
				t.Fatalf("got %v, want %v", err, c.want)
			}
		})
	}
}

// TestForkDetected: the host keeps two histories (it rolled back, the
// enclave wrote again) and serves a mix: the chain breaks.
func TestForkDetected(t *testing.T) {
	b := kvtest.NewMemBackend()
	fill(t, b, 3)
	snap := b.Snapshot()
	fill(t, b, 3) // history A: more segments
	a := b.Snapshot()
	b.Restore(snap)
	fill(t, b, 1) // history B overwrites segment numbers of A
	// Serve B's next segment, then A's segment after it.
	nB := uint64(len(b.Keys()) - 1)
	v, ok := a[segKey(nB)]
	if !ok {
		t.Fatal("history A is not longer")
	}
	b.SetRaw(segKey(nB), v)
	if err := reopen(b); !errors.Is(err, ErrSegmentChain) {
		t.Fatalf("got %v, want ErrSegmentChain", err)
	}
}

// TestTailDropIsARollback documents the limit stated on Storage: the
// host dropping the newest segment whole is not detectable by one node.
func TestTailDropIsARollback(t *testing.T) {
	b := kvtest.NewMemBackend()
	fill(t, b, 3)
	last := uint64(len(b.Keys()) - 2)
	b.DeleteRaw(segKey(last))
	if err := reopen(b); err != nil {
		t.Fatalf("a tail drop reads as an older, valid ledger; got %v", err)
	}
}

// TestEverySegmentByteFlip: flipping any byte of a stored segment is
// refused at startup with a named error.
func TestEverySegmentByteFlip(t *testing.T) {
	b := kvtest.NewMemBackend()
	fill(t, b, 1)
	orig, _ := b.Raw(segKey(0))
	for i := range orig {
		v := append([]byte(nil), orig...)
		v[i] ^= 0x01
		b.SetRaw(segKey(0), v)
		err := reopen(b)
		if !errors.Is(err, ErrSegmentAuth) && !errors.Is(err, ErrSegmentTorn) {
			t.Fatalf("byte %d flipped: %v", i, err)
		}
	}
	b.SetRaw(segKey(0), orig)
	if err := reopen(b); err != nil {
		t.Fatal(err)
	}
}

// TestSwapTwoLedgers: two ledgers run by the same enclave (so the same
// sealing key opens both key records) on one host. A segment of one
// served in the other at the same number, or one ledger's key record
// served with the other's segments, is refused: each ledger's segments
// are under its own storage key.
func TestSwapTwoLedgers(t *testing.T) {
	a, b := kvtest.NewMemBackend(), kvtest.NewMemBackend()
	fill(t, a, 3)
	fill(t, b, 3)
	sa, sb := a.Snapshot(), b.Snapshot()
	for name, swap := range map[string]func(x *kvtest.MemBackend){
		"segment 1 of the other": func(x *kvtest.MemBackend) { x.SetRaw(segKey(1), sb[segKey(1)]) },
		"last segment of the other": func(x *kvtest.MemBackend) {
			last := uint64(len(sb) - 2)
			x.SetRaw(segKey(last), sb[segKey(last)])
		},
		"key record of the other": func(x *kvtest.MemBackend) { x.SetRaw(keysKey, sb[keysKey]) },
	} {
		a.Restore(sa)
		swap(a)
		if err := reopen(a); !errors.Is(err, ErrSegmentAuth) {
			t.Errorf("%s: got %v, want ErrSegmentAuth", name, err)
		}
	}
	a.Restore(sa)
	if err := reopen(a); err != nil {
		t.Fatalf("the untouched ledger: %v", err)
	}
}
