package replica

import (
	"bytes"
	"crypto/rand"
	"testing"
	"time"

	pb "go.etcd.io/raft/v3/raftpb"

	"github.com/cloister-dev/cloister/ledger"
)

// fuzzShared is a real service identity for the fuzz seeds.
func fuzzShared(f *testing.F) *shared {
	id, err := ledger.NewIdentity(ledger.IdentityOptions{Now: time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)})
	if err != nil {
		f.Fatal(err)
	}
	sh := &shared{view: 2, id: id}
	rand.Read(sh.secret[:])
	return sh
}

// FuzzDecode feeds the decoders of what crosses a trust line (raft
// message batches and join answers from peers, snapshots and key records
// from the host, raft entry payloads) arbitrary bytes, seeded with real
// encodings: each either decodes or returns an error, never panics, and
// a machine fed a payload stays consistent.
func FuzzDecode(f *testing.F) {
	sh := fuzzShared(f)
	m := newMachine(sh, 3)
	var seeds [][]byte
	for i, c := range []string{"a", "b", "c", "d"} {
		rec := ledger.Record{Kind: ledger.KindEntry, Collection: "c", Contents: c}
		p := ledger.AppendRecord(append([]byte{tagRecord}, bytes.Repeat([]byte{byte(i)}, 16)...), &rec)
		seeds = append(seeds, p)
		if _, _, err := m.applyNormal(uint64(i+1), p); err != nil {
			f.Fatal(err)
		}
	}
	snap := m.snapshot()
	msgs, _ := encodeMessages([]*pb.Message{{Type: pb.MessageType_MsgApp.Enum(), To: u64(2), From: u64(1), Entries: []*pb.Entry{{Index: u64(5), Term: u64(1), Data: seeds[0]}}}})
	keysRec, _ := encodeNodeKeys(&nodeKeys{raftID: 3, shared: *sh})
	for _, s := range append(seeds, snap, msgs, keysRec, []byte{tagSign}) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		decodeMessages(b)
		decodeShared(b)
		decodeNodeKeys(b)
		fm := newMachine(sh, 2)
		if err := fm.restore(b, &pb.SnapshotMetadata{Index: u64(9)}); err == nil {
			// A snapshot that restores re-encodes to itself.
			if !bytes.Equal(fm.snapshot(), b) {
				t.Fatalf("snapshot does not round-trip")
			}
		}
		before := fm.core.Next()
		_, res, err := fm.applyNormal(10, b)
		if err != nil {
			t.Fatalf("payload broke the machine: %v", err)
		}
		if res.err != nil && fm.core.Next() != before {
			t.Fatalf("a refused payload changed the ledger")
		}
	})
}
