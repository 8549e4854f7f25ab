package replica

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"

	"go.etcd.io/raft/v3"
	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	"github.com/cloister-dev/cloister/kv"
)

// Host keys of the raft state. Every value is AES-256-GCM sealed with the
// node's storage key, the host key as additional data, so a value moved to
// another key (an entry replayed at another index) does not open.
const (
	hardStateKey = "replica/hs"
	snapshotKey  = "replica/snap"
	entryPrefix  = "replica/e/"
	chunkPrefix  = "replica/snapd/" // ‖ snapshot index u64 ‖ chunk u32
)

// Host records and commits are bounded (boundary.MaxStorageValue,
// boundary.MaxStorageCommit): a snapshot's data is stored in chunks, and
// one save is split into commits of at most maxCommitBytes.
const (
	chunkBytes     = 192 << 10
	maxCommitBytes = 512 << 10
)

func chunkKey(index uint64, n uint32) []byte {
	return binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint64([]byte(chunkPrefix), index), n)
}

// Storage errors.
var (
	// ErrStoreAuth: a stored raft record does not authenticate under its
	// host key (edited, or moved from another key).
	ErrStoreAuth = errors.New("replica: storage: record does not authenticate")
	// ErrStoreGap: the stored raft log has a hole, or does not start right
	// after the stored snapshot (entries dropped by the host).
	ErrStoreGap = errors.New("replica: storage: raft log has a gap")
	// ErrStoreFormat: an authenticated record does not decode, or an entry
	// holds another index than its key.
	ErrStoreFormat = errors.New("replica: storage: bad record")
)

func entryKey(i uint64) []byte { return binary.BigEndian.AppendUint64([]byte(entryPrefix), i) }

// store keeps a node's raft hard state, log and snapshot on the host,
// sealed: raft's own persistence contract (HardState and Entries durable
// before messages go out; a snapshot replaces the log before it) with
// each save one atomic Backend.Commit. Not safe for concurrent use.
type store struct {
	b    kv.Backend
	aead cipher.AEAD
	rnd  io.Reader
	// first and last are the stored entry indexes (last < first: none).
	first, last uint64
}

func newStore(b kv.Backend, key []byte, rnd io.Reader) (*store, error) {
	blk, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("replica: storage key: %w", err)
	}
	aead, err := cipher.NewGCM(blk)
	if err != nil {
		return nil, fmt.Errorf("replica: storage key: %w", err)
	}
	return &store{b: b, aead: aead, rnd: rnd, first: 1}, nil
}

func (s *store) seal(key []byte, m proto.Message) ([]byte, error) {
	pt, err := proto.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("replica: storage: encoding %q: %w", key, err)
	}
	nonce := make([]byte, s.aead.NonceSize(), s.aead.NonceSize()+len(pt)+s.aead.Overhead())
	if _, err := io.ReadFull(s.rnd, nonce); err != nil {
		return nil, fmt.Errorf("replica: storage: nonce: %w", err)
	}
	return s.aead.Seal(nonce, nonce, pt, key), nil
}

func (s *store) open(key, v []byte, m proto.Message) error {
	if len(v) < s.aead.NonceSize() {
		return fmt.Errorf("%w: %q is %d bytes", ErrStoreAuth, key, len(v))
	}
	pt, err := s.aead.Open(nil, v[:s.aead.NonceSize()], v[s.aead.NonceSize():], key)
	if err != nil {
		return fmt.Errorf("%w: %q", ErrStoreAuth, key)
	}
	if err := proto.Unmarshal(pt, m); err != nil {
		return fmt.Errorf("%w: %q: %w", ErrStoreFormat, key, err)
	}
	return nil
}

// save persists what a Ready asks to persist, in one commit: a snapshot
// (dropping the entries it covers), new entries (dropping stored entries
// they replace: raft overwrites an uncommitted suffix after a leader
// change), and the hard state.
func (s *store) save(ctx context.Context, hs *pb.HardState, ents []*pb.Entry, snap *pb.Snapshot) error {
	var ops []kv.Op
	first, last := s.first, s.last
	if snap != nil && !raft.IsEmptySnap(snap) {
		sops, err := s.snapshotOps(ctx, snap)
		if err != nil {
			return err
		}
		ops = append(ops, sops...)
		idx := snap.GetMetadata().GetIndex()
		for i := first; i <= last && i <= idx; i++ {
			ops = append(ops, kv.Op{Key: entryKey(i), Delete: true})
		}
		if last < idx {
			last = idx
		}
		first = idx + 1
		if last < first {
			last = first - 1
		}
	}
	if len(ents) > 0 {
		lo, hi := ents[0].GetIndex(), ents[len(ents)-1].GetIndex()
		for i := max(hi+1, first); i <= last; i++ {
			ops = append(ops, kv.Op{Key: entryKey(i), Delete: true})
		}
		for _, e := range ents {
			k := entryKey(e.GetIndex())
			v, err := s.seal(k, e)
			if err != nil {
				return err
			}
			ops = append(ops, kv.Op{Key: k, Value: v})
		}
		if last+1 < lo || lo < first {
			return fmt.Errorf("%w: appending %d..%d to stored %d..%d", ErrStoreGap, lo, hi, first, last)
		}
		last = hi
	}
	if hs != nil && !raft.IsEmptyHardState(hs) {
		v, err := s.seal([]byte(hardStateKey), hs)
		if err != nil {
			return err
		}
		ops = append(ops, kv.Op{Key: []byte(hardStateKey), Value: v})
	}
	if err := s.commit(ctx, ops); err != nil {
		return err
	}
	s.first, s.last = first, last
	return nil
}

// commit writes ops in order, in commits of at most maxCommitBytes. A
// crash between two of them leaves a prefix written: for raft that is a
// log holding some of the new entries after the old hard state, which it
// recovers from (entries are written before the hard state that commits
// them, deletions before the entries that replace them); for a snapshot,
// chunks without the record naming them, which are ignored and removed by
// the next snapshot.
func (s *store) commit(ctx context.Context, ops []kv.Op) error {
	for len(ops) > 0 {
		n, size := 0, 0
		for n < len(ops) && (n == 0 || size+len(ops[n].Key)+len(ops[n].Value)+16 <= maxCommitBytes) {
			size += len(ops[n].Key) + len(ops[n].Value) + 16
			n++
		}
		if err := s.b.Commit(ctx, ops[:n]); err != nil {
			return fmt.Errorf("replica: storage: %w", err)
		}
		ops = ops[n:]
	}
	return nil
}

// snapshotOps are the writes storing snap: its data in sealed chunks, any
// older chunks deleted, then the sealed snapshot record holding the
// metadata, the chunk count and the SHA-256 of the data.
func (s *store) snapshotOps(ctx context.Context, snap *pb.Snapshot) ([]kv.Op, error) {
	idx := snap.GetMetadata().GetIndex()
	old, err := s.b.List(ctx, []byte(chunkPrefix))
	if err != nil {
		return nil, fmt.Errorf("replica: storage: %w", err)
	}
	var ops []kv.Op
	data := snap.GetData()
	var n uint32
	for off := 0; off < len(data) || n == 0; off += chunkBytes {
		k := chunkKey(idx, n)
		v, err := s.sealBytes(k, data[off:min(off+chunkBytes, len(data))])
		if err != nil {
			return nil, err
		}
		ops = append(ops, kv.Op{Key: k, Value: v})
		n++
	}
	sum := sha256.Sum256(data)
	head := binary.BigEndian.AppendUint32([]byte("CHK1"), n)
	meta := &pb.Snapshot{Metadata: snap.GetMetadata(), Data: append(head, sum[:]...)}
	v, err := s.seal([]byte(snapshotKey), meta)
	if err != nil {
		return nil, err
	}
	ops = append(ops, kv.Op{Key: []byte(snapshotKey), Value: v})
	// Older chunks go only after the record naming the new ones.
	for _, k := range old {
		if len(k) != len(chunkPrefix)+12 || binary.BigEndian.Uint64(k[len(chunkPrefix):]) != idx {
			ops = append(ops, kv.Op{Key: k, Delete: true})
		}
	}
	return ops, nil
}

func (s *store) sealBytes(key, pt []byte) ([]byte, error) {
	nonce := make([]byte, s.aead.NonceSize(), s.aead.NonceSize()+len(pt)+s.aead.Overhead())
	if _, err := io.ReadFull(s.rnd, nonce); err != nil {
		return nil, fmt.Errorf("replica: storage: nonce: %w", err)
	}
	return s.aead.Seal(nonce, nonce, pt, key), nil
}

// loadSnapshotData reassembles the data of the snapshot record meta.
func (s *store) loadSnapshotData(ctx context.Context, meta *pb.Snapshot) error {
	h := meta.GetData()
	if len(h) != 4+4+32 || string(h[:4]) != "CHK1" {
		return fmt.Errorf("%w: snapshot record", ErrStoreFormat)
	}
	n, sum, idx := binary.BigEndian.Uint32(h[4:]), h[8:], meta.GetMetadata().GetIndex()
	var data []byte
	for i := uint32(0); i < n; i++ {
		k := chunkKey(idx, i)
		v, ok, err := s.b.Get(ctx, k)
		if err != nil {
			return fmt.Errorf("replica: storage: %w", err)
		}
		if !ok {
			return fmt.Errorf("%w: snapshot %d chunk %d missing", ErrStoreGap, idx, i)
		}
		if len(v) < s.aead.NonceSize() {
			return fmt.Errorf("%w: snapshot %d chunk %d", ErrStoreAuth, idx, i)
		}
		pt, err := s.aead.Open(nil, v[:s.aead.NonceSize()], v[s.aead.NonceSize():], k)
		if err != nil {
			return fmt.Errorf("%w: snapshot %d chunk %d", ErrStoreAuth, idx, i)
		}
		data = append(data, pt...)
	}
	if got := sha256.Sum256(data); !bytes.Equal(got[:], sum) {
		return fmt.Errorf("%w: snapshot %d: chunks do not add up to the recorded digest", ErrStoreAuth, idx)
	}
	meta.Data = data
	return nil
}

// compact records a snapshot taken locally and drops the entries up to
// upto (at most the snapshot's index).
func (s *store) compact(ctx context.Context, snap *pb.Snapshot, upto uint64) error {
	ops, err := s.snapshotOps(ctx, snap)
	if err != nil {
		return err
	}
	for i := s.first; i <= s.last && i <= upto; i++ {
		ops = append(ops, kv.Op{Key: entryKey(i), Delete: true})
	}
	if err := s.commit(ctx, ops); err != nil {
		return err
	}
	if upto >= s.first {
		s.first = upto + 1
	}
	return nil
}

// load reads back the hard state, snapshot and log, checking that every
// record authenticates at its key and the log is contiguous from right
// after the snapshot (or from any start when log compaction outran it).
func (s *store) load(ctx context.Context) (*pb.HardState, *pb.Snapshot, []*pb.Entry, error) {
	hs, snap := &pb.HardState{}, &pb.Snapshot{}
	if v, ok, err := s.b.Get(ctx, []byte(hardStateKey)); err != nil {
		return nil, nil, nil, fmt.Errorf("replica: storage: %w", err)
	} else if ok {
		if err := s.open([]byte(hardStateKey), v, hs); err != nil {
			return nil, nil, nil, err
		}
	}
	if v, ok, err := s.b.Get(ctx, []byte(snapshotKey)); err != nil {
		return nil, nil, nil, fmt.Errorf("replica: storage: %w", err)
	} else if ok {
		if err := s.open([]byte(snapshotKey), v, snap); err != nil {
			return nil, nil, nil, err
		}
		if err := s.loadSnapshotData(ctx, snap); err != nil {
			return nil, nil, nil, err
		}
	}
	keys, err := s.b.List(ctx, []byte(entryPrefix))
	if err != nil {
		return nil, nil, nil, fmt.Errorf("replica: storage: %w", err)
	}
	idx := make([]uint64, 0, len(keys))
	for _, k := range keys {
		if len(k) != len(entryPrefix)+8 {
			return nil, nil, nil, fmt.Errorf("%w: host key %q", ErrStoreFormat, k)
		}
		idx = append(idx, binary.BigEndian.Uint64(k[len(entryPrefix):]))
	}
	slices.Sort(idx)
	snapIdx := snap.GetMetadata().GetIndex()
	ents := make([]*pb.Entry, 0, len(idx))
	for n, i := range idx {
		// The log may overlap the snapshot (entries kept behind it for
		// slow followers), never leave a hole after it.
		if n == 0 && snapIdx > 0 && i > snapIdx+1 {
			return nil, nil, nil, fmt.Errorf("%w: log starts at %d, snapshot ends at %d", ErrStoreGap, i, snapIdx)
		}
		if n > 0 && i != idx[n-1]+1 {
			return nil, nil, nil, fmt.Errorf("%w: entry %d missing", ErrStoreGap, idx[n-1]+1)
		}
		k := entryKey(i)
		v, ok, err := s.b.Get(ctx, k)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("replica: storage: %w", err)
		}
		if !ok {
			return nil, nil, nil, fmt.Errorf("%w: entry %d listed but not readable", ErrStoreGap, i)
		}
		e := &pb.Entry{}
		if err := s.open(k, v, e); err != nil {
			return nil, nil, nil, err
		}
		if e.GetIndex() != i {
			return nil, nil, nil, fmt.Errorf("%w: entry under %d holds index %d", ErrStoreFormat, i, e.GetIndex())
		}
		ents = append(ents, e)
	}
	if len(idx) > 0 {
		s.first, s.last = idx[0], idx[len(idx)-1]
	} else {
		s.first, s.last = snapIdx+1, snapIdx
	}
	// Commit-only hard states are not written (raft.MustSync), so the
	// stored commit index may be older than a snapshot taken since, which
	// is committed state by definition: raft refuses (panics on) a commit
	// index below its snapshot.
	if hs.GetCommit() < snapIdx {
		hs.Commit = &snapIdx
	}
	if c := hs.GetCommit(); c > 0 && c > s.last && c > snapIdx {
		return nil, nil, nil, fmt.Errorf("%w: hard state commits %d, log ends at %d", ErrStoreGap, c, max(s.last, snapIdx))
	}
	return hs, snap, ents, nil
}
