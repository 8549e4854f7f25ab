package replica

import (
	"crypto"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"

	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	"github.com/cloister-dev/cloister/ledger"
)

// MembershipCollection is the ledger collection that records membership
// changes (one entry per applied raft conf change). Clients cannot write
// to it.
const MembershipCollection = "cloister-membership"

// Raft entry payloads (EntryNormal data). An empty payload is the entry a
// new leader appends; it is applied like a sign marker.
const (
	tagRecord byte = 1 // tagRecord | proposal id [16] | ledger.AppendRecord (seqno 0)
	tagSign   byte = 2 // ask every node to sign the tree as it is
)

// Membership is the decoded contents of a MembershipCollection entry, and
// the context of the raft conf change it records.
type Membership struct {
	Change  string `json:"change"` // "add" or "remove"
	Node    string `json:"node"`   // raft id, decimal
	Address string `json:"address,omitempty"`
	// CertSHA256 is the hex SHA-256 of the node's RA-TLS certificate at
	// join: the evidence that satisfied the node policy.
	CertSHA256 string `json:"certSha256,omitempty"`
}

// applied is what applying one raft entry gave the proposer waiting on it.
type applied struct {
	tx  ledger.TxID
	rec ledger.Record
	err error
}

// machine is the replicated state machine: the ledger Core fed from the
// committed raft log, in log order, identically on every node. Signature
// transactions are made while applying, with the shared node key and
// deterministic ECDSA (RFC 6979), so every node derives the same
// signature record at the same seqno and the nodes' ledgers are equal
// byte for byte. Pure: no I/O, no goroutine, no clock.
type machine struct {
	sh        *shared
	core      *ledger.Core
	signEvery int
	unsigned  int
	peers     map[uint64]string // raft id -> node-to-node address
	conf      *pb.ConfState
	index     uint64 // last raft index applied
}

func newMachine(sh *shared, signEvery int) *machine {
	return &machine{
		sh: sh, core: ledger.NewCore(sh.view, sh.secret[:], &sh.id.NodeKey.PublicKey),
		signEvery: signEvery, peers: map[uint64]string{}, conf: &pb.ConfState{},
	}
}

// sign appends a signature transaction over the whole tree, if anything
// is unsigned.
func (m *machine) sign() error {
	if m.unsigned == 0 {
		return nil
	}
	_, err := m.core.AppendSignature(func(root [32]byte) ([]byte, error) {
		// nil randomness: RFC 6979, the same signature on every node.
		return m.sh.id.NodeKey.Sign(nil, root[:], crypto.SHA256)
	})
	if err != nil {
		return err
	}
	m.unsigned = 0
	return nil
}

// applyNormal applies an EntryNormal payload. It returns the proposal id
// (zero when none) and the result for its proposer; err is a failure of
// the machine itself (the node must stop: its state no longer follows
// the log), never a refused request.
func (m *machine) applyNormal(index uint64, data []byte) (id [16]byte, res applied, err error) {
	m.index = index
	if len(data) == 0 || data[0] == tagSign {
		return id, res, m.sign()
	}
	if data[0] != tagRecord || len(data) < 17 {
		// Only nodes that passed the node policy propose; a payload that
		// does not decode is skipped the same way on every node.
		return id, applied{err: fmt.Errorf("%w: raft entry %d: unknown payload", ledger.ErrInvalid, index)}, nil
	}
	copy(id[:], data[1:17])
	rec, n, derr := ledger.DecodeRecord(data[17:])
	if derr == nil && n != len(data)-17 {
		derr = fmt.Errorf("%w: raft entry %d: %d trailing bytes", ledger.ErrInvalid, index, len(data)-17-n)
	}
	if derr == nil && rec.Kind == ledger.KindSignature {
		derr = fmt.Errorf("%w: raft entry %d: signatures are made by the state machine, not proposed", ledger.ErrInvalid, index)
	}
	if derr == nil && rec.Kind == ledger.KindEntry && rec.Collection == MembershipCollection {
		derr = fmt.Errorf("%w: collection %q is written by membership changes only", ledger.ErrInvalid, MembershipCollection)
	}
	if derr != nil {
		return id, applied{err: derr}, nil
	}
	rec.Seqno = m.core.Next()
	if cerr := m.core.Check(&rec); cerr != nil {
		// A counter conflict (or any refusal) changes nothing, alike on
		// every node.
		return id, applied{err: cerr}, nil
	}
	if err := m.core.Apply(rec); err != nil {
		return id, res, err
	}
	m.unsigned++
	res = applied{tx: ledger.TxID{View: m.core.View(), Seqno: rec.Seqno}, rec: rec}
	if m.unsigned >= m.signEvery {
		err = m.sign()
	}
	return id, res, err
}

// applyConf records an applied conf change as a ledger entry and updates
// the peer addresses; conf is the ConfState raft returned for it.
func (m *machine) applyConf(index uint64, cc *pb.ConfChange, conf *pb.ConfState) (applied, error) {
	m.index = index
	m.conf = proto.Clone(conf).(*pb.ConfState)
	var mem Membership
	if len(cc.Context) > 0 {
		if err := json.Unmarshal(cc.Context, &mem); err != nil {
			mem = Membership{}
		}
	}
	mem.Node = strconv.FormatUint(cc.GetNodeId(), 10)
	switch cc.GetType() {
	case pb.ConfChangeType_ConfChangeAddNode, pb.ConfChangeType_ConfChangeAddLearnerNode:
		mem.Change = "add"
		if mem.Address != "" {
			m.peers[cc.GetNodeId()] = mem.Address
		}
	case pb.ConfChangeType_ConfChangeRemoveNode:
		mem.Change = "remove"
		delete(m.peers, cc.GetNodeId())
	default:
		mem.Change = cc.GetType().String()
	}
	body, _ := json.Marshal(mem)
	rec := ledger.Record{Kind: ledger.KindEntry, Collection: MembershipCollection, Contents: string(body), Seqno: m.core.Next()}
	if err := m.core.Apply(rec); err != nil {
		return applied{}, err
	}
	m.unsigned++
	return applied{tx: ledger.TxID{View: m.core.View(), Seqno: rec.Seqno}, rec: rec}, m.sign()
}

// snapshot encodes the machine: peers, the unsigned count and every
// transaction. The shared secrets are not in it (a node has them before
// it can receive a snapshot).
func (m *machine) snapshot() []byte {
	b := []byte("CRP1")
	b = binary.BigEndian.AppendUint32(b, uint32(m.unsigned))
	ids := make([]uint64, 0, len(m.peers))
	for id := range m.peers {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	b = binary.BigEndian.AppendUint32(b, uint32(len(ids)))
	for _, id := range ids {
		b = binary.BigEndian.AppendUint64(b, id)
		b = binary.BigEndian.AppendUint16(b, uint16(len(m.peers[id])))
		b = append(b, m.peers[id]...)
	}
	last := m.core.Next() - 1
	b = binary.BigEndian.AppendUint64(b, last)
	for s := uint64(1); s <= last; s++ {
		r, _ := m.core.Record(s, last)
		b = ledger.AppendRecord(b, &r)
	}
	return b
}

// restore replaces the machine's state with a snapshot's; every
// transaction is re-applied (signatures checked again).
func (m *machine) restore(data []byte, meta *pb.SnapshotMetadata) error {
	bad := func(what string) error {
		return fmt.Errorf("%w: snapshot at %d: %s", ErrStoreFormat, meta.GetIndex(), what)
	}
	if len(data) < 12 || string(data[:4]) != "CRP1" {
		return bad("not a ledger snapshot")
	}
	unsigned := binary.BigEndian.Uint32(data[4:])
	np := binary.BigEndian.Uint32(data[8:])
	data = data[12:]
	peers := map[uint64]string{}
	var prev uint64
	for range np {
		if len(data) < 10 {
			return bad("peers truncated")
		}
		id, n := binary.BigEndian.Uint64(data), int(binary.BigEndian.Uint16(data[8:]))
		if len(data) < 10+n {
			return bad("peers truncated")
		}
		if _, dup := peers[id]; dup || id <= prev {
			return bad("peers not in ascending order")
		}
		prev = id
		peers[id] = string(data[10 : 10+n])
		data = data[10+n:]
	}
	if len(data) < 8 {
		return bad("transactions truncated")
	}
	count := binary.BigEndian.Uint64(data)
	data = data[8:]
	core := ledger.NewCore(m.sh.view, m.sh.secret[:], &m.sh.id.NodeKey.PublicKey)
	for i := uint64(0); i < count; i++ {
		r, n, err := ledger.DecodeRecord(data)
		if err != nil {
			return fmt.Errorf("%w: snapshot transaction %d: %w", ErrStoreFormat, i+1, err)
		}
		if err := core.Apply(r); err != nil {
			return fmt.Errorf("%w: snapshot transaction %d: %w", ErrStoreFormat, i+1, err)
		}
		data = data[n:]
	}
	if len(data) != 0 {
		return bad("trailing bytes")
	}
	m.core, m.unsigned, m.peers, m.index = core, int(unsigned), peers, meta.GetIndex()
	if cs := meta.GetConfState(); cs != nil {
		m.conf = proto.Clone(cs).(*pb.ConfState)
	}
	return nil
}
