package replica

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"testing"

	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	"github.com/cloister-dev/cloister/boundary"
	"github.com/cloister-dev/cloister/kv"
	"github.com/cloister-dev/cloister/kv/kvtest"
)

// boundedBackend refuses what the enclave boundary refuses: a value over
// boundary.MaxStorageValue, a commit over boundary.MaxStorageCommit.
type boundedBackend struct{ *kvtest.MemBackend }

func (b boundedBackend) Commit(ctx context.Context, ops []kv.Op) error {
	size := 4
	for _, op := range ops {
		if len(op.Value) > boundary.MaxStorageValue {
			return fmt.Errorf("value of %d bytes under %q", len(op.Value), op.Key)
		}
		size += 7 + len(op.Key) + len(op.Value)
	}
	if size > boundary.MaxStorageCommit {
		return fmt.Errorf("commit of %d bytes", size)
	}
	return b.MemBackend.Commit(ctx, ops)
}

func u64(v uint64) *uint64 { return &v }

func ents(lo, hi uint64, term uint64, size int) []*pb.Entry {
	var out []*pb.Entry
	for i := lo; i <= hi; i++ {
		out = append(out, &pb.Entry{Index: u64(i), Term: u64(term), Data: bytes.Repeat([]byte{byte(i)}, size)})
	}
	return out
}

// TestStoreWithinBoundaryLimits: a large snapshot and a large batch of
// entries are stored within the boundary's bounds and read back equal.
func TestStoreWithinBoundaryLimits(t *testing.T) {
	ctx := context.Background()
	b := boundedBackend{kvtest.NewMemBackend()}
	key := bytes.Repeat([]byte{7}, 32)
	s, _ := newStore(b, key, rand.Reader)
	data := make([]byte, 3<<20)
	rand.Read(data)
	snap := &pb.Snapshot{Data: data, Metadata: &pb.SnapshotMetadata{Index: u64(100), Term: u64(2), ConfState: &pb.ConfState{Voters: []uint64{1, 2, 3}}}}
	if err := s.save(ctx, &pb.HardState{Term: u64(2), Commit: u64(100)}, nil, snap); err != nil {
		t.Fatal(err)
	}
	if err := s.save(ctx, &pb.HardState{Term: u64(3), Commit: u64(400)}, ents(101, 400, 3, 8<<10), nil); err != nil {
		t.Fatal(err)
	}
	// An overwritten suffix (a new leader's log) replaces the old one.
	if err := s.save(ctx, &pb.HardState{Term: u64(4), Commit: u64(390)}, ents(391, 395, 4, 10), nil); err != nil {
		t.Fatal(err)
	}
	s2, _ := newStore(b, key, rand.Reader)
	hs, snap2, es, err := s2.load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(snap2, snap) || hs.GetCommit() != 390 || len(es) != 295 || es[len(es)-1].GetIndex() != 395 || es[len(es)-1].GetTerm() != 4 {
		t.Fatalf("read back: commit %d, %d entries", hs.GetCommit(), len(es))
	}
	// A second snapshot drops the first one's chunks.
	snap3 := &pb.Snapshot{Data: data[:1<<20], Metadata: &pb.SnapshotMetadata{Index: u64(300), Term: u64(3), ConfState: &pb.ConfState{Voters: []uint64{1}}}}
	if err := s2.compact(ctx, snap3, 300); err != nil {
		t.Fatal(err)
	}
	keys, _ := b.List(ctx, []byte(chunkPrefix))
	if len(keys) != (1<<20+chunkBytes-1)/chunkBytes {
		t.Fatalf("%d chunks stored after the second snapshot", len(keys))
	}
	s3, _ := newStore(b, key, rand.Reader)
	if _, snap4, es, err := s3.load(ctx); err != nil || !proto.Equal(snap4, snap3) || es[0].GetIndex() != 301 {
		t.Fatalf("after compaction: %v", err)
	}
}

// TestStoreHostTampering: an edited, moved or dropped record is a named
// error at load.
func TestStoreHostTampering(t *testing.T) {
	ctx := context.Background()
	key := bytes.Repeat([]byte{7}, 32)
	setup := func() *kvtest.MemBackend {
		b := kvtest.NewMemBackend()
		s, _ := newStore(b, key, rand.Reader)
		data := make([]byte, 500<<10)
		snap := &pb.Snapshot{Data: data, Metadata: &pb.SnapshotMetadata{Index: u64(10), Term: u64(1), ConfState: &pb.ConfState{Voters: []uint64{1}}}}
		if err := s.save(ctx, &pb.HardState{Term: u64(1), Commit: u64(20)}, nil, snap); err != nil {
			t.Fatal(err)
		}
		if err := s.save(ctx, &pb.HardState{Term: u64(1), Commit: u64(20)}, ents(11, 20, 1, 10), nil); err != nil {
			t.Fatal(err)
		}
		return b
	}
	for _, tc := range []struct {
		name string
		edit func(b *kvtest.MemBackend)
		want error
	}{
		{"entry edited", func(b *kvtest.MemBackend) { flip(b, entryKey(15)) }, ErrStoreAuth},
		{"entry moved", func(b *kvtest.MemBackend) { move(b, entryKey(15), entryKey(16)) }, ErrStoreAuth},
		{"middle entry dropped", func(b *kvtest.MemBackend) { del(b, entryKey(15)) }, ErrStoreGap},
		{"tail dropped under the commit index", func(b *kvtest.MemBackend) { del(b, entryKey(20)); del(b, entryKey(19)) }, ErrStoreGap},
		{"snapshot chunk edited", func(b *kvtest.MemBackend) { flip(b, chunkKey(10, 1)) }, ErrStoreAuth},
		{"snapshot chunk dropped", func(b *kvtest.MemBackend) { del(b, chunkKey(10, 2)) }, ErrStoreGap},
		{"snapshot chunks swapped", func(b *kvtest.MemBackend) { swap(b, chunkKey(10, 0), chunkKey(10, 1)) }, ErrStoreAuth},
		{"hard state edited", func(b *kvtest.MemBackend) { flip(b, []byte(hardStateKey)) }, ErrStoreAuth},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := setup()
			tc.edit(b)
			s, _ := newStore(b, key, rand.Reader)
			if _, _, _, err := s.load(ctx); !errors.Is(err, tc.want) {
				t.Fatalf("load: %v, want %v", err, tc.want)
			}
		})
	}
}

func flip(b *kvtest.MemBackend, k []byte) {
	v, _, _ := b.Get(context.Background(), k)
	v = bytes.Clone(v)
	v[len(v)/2] ^= 1
	b.Commit(context.Background(), []kv.Op{{Key: k, Value: v}})
}

func del(b *kvtest.MemBackend, k []byte) {
	b.Commit(context.Background(), []kv.Op{{Key: k, Delete: true}})
}

func move(b *kvtest.MemBackend, from, to []byte) {
	v, _, _ := b.Get(context.Background(), from)
	b.Commit(context.Background(), []kv.Op{{Key: to, Value: bytes.Clone(v)}})
}

func swap(b *kvtest.MemBackend, x, y []byte) {
	vx, _, _ := b.Get(context.Background(), x)
	vy, _, _ := b.Get(context.Background(), y)
	b.Commit(context.Background(), []kv.Op{{Key: x, Value: bytes.Clone(vy)}, {Key: y, Value: bytes.Clone(vx)}})
}

// TestStoreSnapshotOverlapAndOldCommit: a log kept behind the snapshot
// (catch-up entries) loads, and a stored commit index older than the
// snapshot (commit-only hard states are not written) is raised to it, as
// raft requires on restart.
func TestStoreSnapshotOverlapAndOldCommit(t *testing.T) {
	ctx := context.Background()
	b := kvtest.NewMemBackend()
	key := bytes.Repeat([]byte{7}, 32)
	s, _ := newStore(b, key, rand.Reader)
	if err := s.save(ctx, &pb.HardState{Term: u64(1), Commit: u64(50)}, ents(1, 110, 1, 10), nil); err != nil {
		t.Fatal(err)
	}
	snap := &pb.Snapshot{Data: []byte("x"), Metadata: &pb.SnapshotMetadata{Index: u64(100), Term: u64(1), ConfState: &pb.ConfState{Voters: []uint64{1}}}}
	if err := s.compact(ctx, snap, 94); err != nil {
		t.Fatal(err)
	}
	s2, _ := newStore(b, key, rand.Reader)
	hs, _, es, err := s2.load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if hs.GetCommit() != 100 || es[0].GetIndex() != 95 || len(es) != 16 {
		t.Fatalf("commit %d, entries from %d (%d)", hs.GetCommit(), es[0].GetIndex(), len(es))
	}
}
