package replica

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"sync"
	"time"

	"go.etcd.io/raft/v3"
	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	"github.com/cloister-dev/cloister/kv"
	"github.com/cloister-dev/cloister/ledger"
	"github.com/cloister-dev/cloister/ratls"
	"github.com/cloister-dev/cloister/seal"
	"github.com/cloister-dev/cloister/tee"
)

// Errors callers branch on.
var (
	// ErrNoLeader: the node knows no leader (an election is running, or it
	// is cut off from a quorum); nothing was written. Retry, on any node.
	ErrNoLeader = errors.New("replica: no leader")
	// ErrStopped: the node was closed, or failed closed.
	ErrStopped = errors.New("replica: node stopped")
	// ErrJoin: joining the service failed (refused, unreachable, or the
	// answer did not decode).
	ErrJoin = errors.New("replica: join")
)

// Options configure a node. Exactly one of Bootstrap, Join or a key
// record already in Backend says how the node starts.
type Options struct {
	// ID is the node's raft id, unique in the service and never reused;
	// required (non-zero).
	ID uint64
	// Listen is the node-to-node address to listen on (host:port; port 0
	// picks one). Advertise is the address peers dial; empty means the
	// listener's address.
	Listen, Advertise string
	// Listener, when set, is used instead of listening on Listen (an
	// enclave listens through its host: enclave.Env.ListenContext). The
	// node closes it.
	Listener net.Listener
	// Backend is the host storage (raft log, snapshot, hard state, sealed
	// key record); Sealer seals the key record to the running enclave.
	Backend kv.Backend
	Sealer  seal.Sealer
	// Platform makes the evidence of the node's RA-TLS certificate.
	Platform tee.Platform
	// NodePolicy is what a peer's evidence must satisfy for this node to
	// talk raft with it or admit it (the same measurement, or a signer
	// policy for upgrades). Required, with a policy naming an identity.
	NodePolicy ratls.VerifyOptions
	// Now is the clock for certificates; Rand the source of keys and
	// proposal ids (nil: crypto/rand).
	Now  func() time.Time
	Rand io.Reader
	// Bootstrap starts a new service with this node as its only member,
	// generating the service identity (named by Identity).
	Bootstrap bool
	Identity  ledger.IdentityOptions
	// Join is the node-to-node address of a member to join through.
	Join string
	// Tick is raft's tick (default 20ms); ElectionTicks the election
	// timeout in ticks (default 10); a heartbeat is one tick.
	Tick          time.Duration
	ElectionTicks int
	// SignEvery and SignInterval bound how long a transaction goes
	// unsigned, as in ledger.Options (defaults 2000 and 10ms).
	SignEvery    int
	SignInterval time.Duration
	// SnapshotEvery is how many applied raft entries trigger a snapshot
	// (default 10000); CatchUpEntries how many entries are kept behind it
	// for slow followers (default 1000).
	SnapshotEvery  uint64
	CatchUpEntries uint64
	// Logger receives raft's log; nil discards it.
	Logger raft.Logger
	// DialContext dials peers (nil: net.Dialer). Tests cut links with it.
	DialContext func(ctx context.Context, network, addr string) (net.Conn, error)
}

func (o *Options) validate() error {
	if o.ID == 0 || o.Backend == nil || o.Sealer.Keys == nil || o.Platform == nil || o.Now == nil {
		return errors.New("replica: options: ID, Backend, Sealer, Platform and Now are required")
	}
	if o.Bootstrap && o.Join != "" {
		return errors.New("replica: options: Bootstrap and Join exclude each other")
	}
	if o.Rand == nil {
		o.Rand = rand.Reader
	}
	if o.Tick <= 0 {
		o.Tick = 20 * time.Millisecond
	}
	if o.ElectionTicks <= 1 {
		o.ElectionTicks = 10
	}
	if o.SignEvery <= 0 {
		o.SignEvery = 2000
	}
	if o.SignInterval <= 0 {
		o.SignInterval = 10 * time.Millisecond
	}
	if o.SnapshotEvery == 0 {
		o.SnapshotEvery = 10000
	}
	if o.CatchUpEntries == 0 {
		o.CatchUpEntries = 1000
	}
	if o.Logger == nil {
		o.Logger = quietLogger{}
	}
	return nil
}

// Replica is one node of a replicated ledger: a raft node
// (go.etcd.io/raft/v3) whose committed log drives the ledger Core, with
// its raft state sealed on its host and raft messages over mutually
// attested TLS. Every node serves reads from its own committed state and
// accepts writes: a follower's proposal is forwarded to the leader by
// raft itself (as CCF forwards), and the write returns once a quorum has
// committed it and this node applied it.
type Replica struct {
	o        Options
	keys     *nodeKeys
	st       *store
	ms       *raft.MemoryStorage
	node     raft.Node
	ready    chan struct{} // closed once node is set
	tr       *transport
	ln       net.Listener
	srv      *http.Server
	client   *http.Client
	ratlsSrv *ratls.Server
	prevHS   *pb.HardState // last hard state stored (run goroutine only)

	mu        sync.Mutex
	m         *machine
	lead      uint64
	snapIndex uint64
	snapsIn   int // snapshots received from a leader
	// confDirty: a conf change was applied since the last snapshot. The
	// next snapshot is taken at once, since a snapshot sent to a new node
	// must name it in its ConfState or the node refuses it.
	confDirty bool
	waiters   map[[16]byte]chan applied
	confWait  map[uint64]chan applied
	changed   chan struct{}
	// leadChanged is closed and replaced when the known leader changes:
	// a proposal forwarded to a leader that is gone is dropped by raft
	// without a word, so its waiter stops waiting then.
	leadChanged chan struct{}
	failed      error

	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}
	once   sync.Once
	wg     sync.WaitGroup
}

// Start starts a node: it listens, then restarts from its sealed state,
// bootstraps a new service, or joins one.
func Start(ctx context.Context, o Options) (*Replica, error) {
	if err := o.validate(); err != nil {
		return nil, err
	}
	srv, err := ratls.NewServer(ctx, ratls.ServerOptions{Platform: o.Platform, Now: o.Now, Rand: o.Rand, CommonName: fmt.Sprintf("cloister-ledger-node-%d", o.ID)})
	if err != nil {
		return nil, fmt.Errorf("replica: node certificate: %w", err)
	}
	ver, err := ratls.NewVerifier(o.NodePolicy)
	if err != nil {
		return nil, fmt.Errorf("replica: node policy: %w", err)
	}
	ln := o.Listener
	if ln == nil {
		if ln, err = net.Listen("tcp", o.Listen); err != nil {
			return nil, fmt.Errorf("replica: listen: %w", err)
		}
	}
	if o.Advertise == "" {
		o.Advertise = ln.Addr().String()
	}
	r := &Replica{
		o: o, ms: raft.NewMemoryStorage(), ready: make(chan struct{}), ln: ln, ratlsSrv: srv,
		client:  &http.Client{Transport: &http.Transport{TLSClientConfig: ver.ClientConfig(srv), DialContext: o.DialContext, MaxIdleConnsPerHost: 4, IdleConnTimeout: time.Minute}},
		waiters: map[[16]byte]chan applied{}, confWait: map[uint64]chan applied{}, changed: make(chan struct{}), leadChanged: make(chan struct{}),
		done: make(chan struct{}),
	}
	r.ctx, r.cancel = context.WithCancel(context.Background())
	r.tr = newTransport(r.client, r.report)
	mux := http.NewServeMux()
	mux.HandleFunc("POST /raft/msgs", r.handleMsgs)
	mux.HandleFunc("POST /raft/join", r.handleJoin)
	r.srv = &http.Server{Handler: mux, TLSConfig: ver.ServerConfig(srv), ReadHeaderTimeout: 10 * time.Second, ErrorLog: nil}
	r.srv.ErrorLog = discardLog()
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		r.srv.ServeTLS(ln, "", "")
	}()
	if err := r.boot(ctx); err != nil {
		r.shutdown()
		return nil, err
	}
	r.wg.Add(1)
	go r.run()
	return r, nil
}

// boot finds how to start and starts the raft node.
func (r *Replica) boot(ctx context.Context) error {
	o := &r.o
	blob, ok, err := o.Backend.Get(ctx, []byte(keysKey))
	if err != nil {
		return fmt.Errorf("replica: reading key record: %w", err)
	}
	cfg := &raft.Config{
		ID: o.ID, ElectionTick: o.ElectionTicks, HeartbeatTick: 1, Storage: r.ms,
		MaxSizePerMsg: 1 << 20, MaxInflightMsgs: 256, MaxUncommittedEntriesSize: 1 << 30,
		CheckQuorum: true, PreVote: true, StepDownOnRemoval: true, Logger: o.Logger,
	}
	switch {
	case ok:
		pt, err := o.Sealer.Open(ctx, seal.PolicyEnclave, []byte(keysKey), blob)
		if err != nil {
			return fmt.Errorf("%w: %w", ErrKeys, err)
		}
		if r.keys, err = decodeNodeKeys(pt); err != nil {
			return err
		}
		if r.keys.raftID != o.ID {
			return fmt.Errorf("%w: the stored state is node %d's, not node %d's", ErrKeys, r.keys.raftID, o.ID)
		}
		if r.st, err = newStore(o.Backend, r.keys.storage[:], o.Rand); err != nil {
			return err
		}
		hs, snap, ents, err := r.st.load(ctx)
		if err != nil {
			return err
		}
		r.m = newMachine(&r.keys.shared, o.SignEvery)
		if !raft.IsEmptySnap(snap) {
			if err := r.ms.ApplySnapshot(snap); err != nil {
				return fmt.Errorf("%w: %w", ErrStoreFormat, err)
			}
			if err := r.m.restore(snap.GetData(), snap.GetMetadata()); err != nil {
				return err
			}
			r.snapIndex = snap.GetMetadata().GetIndex()
			cfg.Applied = r.snapIndex
		}
		if err := r.ms.SetHardState(hs); err != nil {
			return fmt.Errorf("%w: %w", ErrStoreFormat, err)
		}
		r.prevHS = hs
		if err := r.ms.Append(ents); err != nil {
			return fmt.Errorf("%w: %w", ErrStoreFormat, err)
		}
		r.tr.setPeers(r.others(r.m.peers))
		r.node = raft.RestartNode(cfg)
	case o.Bootstrap:
		id, err := ledger.NewIdentity(ledger.IdentityOptions{
			Rand: o.Rand, Now: o.Now(), DNSNames: o.Identity.DNSNames, IPAddresses: o.Identity.IPAddresses,
			ServiceExtensions: o.Identity.ServiceExtensions,
		})
		if err != nil {
			return err
		}
		sh := shared{view: 2, id: id}
		if _, err := io.ReadFull(o.Rand, sh.secret[:]); err != nil {
			return fmt.Errorf("replica: ledger secret: %w", err)
		}
		if err := r.saveKeys(ctx, sh); err != nil {
			return err
		}
		self, _ := json.Marshal(Membership{Address: o.Advertise, CertSHA256: certHash(r.ratlsSrv)})
		r.node = raft.StartNode(cfg, []raft.Peer{{ID: o.ID, Context: self}})
	case o.Join != "":
		sh, peers, err := r.join(ctx)
		if err != nil {
			return err
		}
		if err := r.saveKeys(ctx, *sh); err != nil {
			return err
		}
		r.m.peers = peers
		r.tr.setPeers(r.others(peers))
		r.node = raft.RestartNode(cfg)
	default:
		return errors.New("replica: no stored state: start with Bootstrap or Join")
	}
	close(r.ready)
	return nil
}

func certHash(s *ratls.Server) string {
	h := sha256.Sum256(s.Certificate().Raw)
	return hex.EncodeToString(h[:])
}

// saveKeys seals and stores the key record with a new storage key, and
// sets up the store and the machine.
func (r *Replica) saveKeys(ctx context.Context, sh shared) error {
	k := &nodeKeys{raftID: r.o.ID, shared: sh}
	if _, err := io.ReadFull(r.o.Rand, k.storage[:]); err != nil {
		return fmt.Errorf("replica: storage key: %w", err)
	}
	pt, err := encodeNodeKeys(k)
	if err != nil {
		return err
	}
	blob, err := r.o.Sealer.Seal(ctx, seal.PolicyEnclave, []byte(keysKey), pt)
	clear(pt)
	if err != nil {
		return fmt.Errorf("replica: sealing key record: %w", err)
	}
	if err := r.o.Backend.Commit(ctx, []kv.Op{{Key: []byte(keysKey), Value: blob}}); err != nil {
		return fmt.Errorf("replica: writing key record: %w", err)
	}
	r.keys = k
	if r.st, err = newStore(r.o.Backend, k.storage[:], r.o.Rand); err != nil {
		return err
	}
	r.m = newMachine(&k.shared, r.o.SignEvery)
	return nil
}

func (r *Replica) others(peers map[uint64]string) map[uint64]string {
	out := make(map[uint64]string, len(peers))
	for id, a := range peers {
		if id != r.o.ID {
			out[id] = a
		}
	}
	return out
}

// report tells raft that a peer was unreachable or how a snapshot went.
func (r *Replica) report(to uint64, snap, ok bool) {
	select {
	case <-r.ready:
	default:
		return
	}
	if snap {
		st := raft.SnapshotFinish
		if !ok {
			st = raft.SnapshotFailure
		}
		r.node.ReportSnapshot(to, st)
	}
	if !ok {
		r.node.ReportUnreachable(to)
	}
}

// run is the Ready loop.
func (r *Replica) run() {
	defer r.wg.Done()
	tick := time.NewTicker(r.o.Tick)
	defer tick.Stop()
	sign := time.NewTicker(r.o.SignInterval)
	defer sign.Stop()
	for {
		select {
		case <-tick.C:
			r.node.Tick()
		case <-sign.C:
			r.mu.Lock()
			due := r.lead == r.o.ID && r.m.unsigned > 0
			r.mu.Unlock()
			if due {
				// Propose blocks until raft takes it; raft's goroutine is
				// not this one, so this cannot deadlock, but keep the tick
				// going meanwhile.
				r.wg.Add(1)
				go func() {
					defer r.wg.Done()
					ctx, cancel := context.WithTimeout(r.ctx, r.o.SignInterval*10)
					defer cancel()
					r.node.Propose(ctx, []byte{tagSign})
				}()
			}
		case rd := <-r.node.Ready():
			if err := r.handle(rd); err != nil {
				r.fail(err)
				return
			}
			r.node.Advance()
		case <-r.ctx.Done():
			return
		}
	}
}

// handle persists, sends and applies one Ready, in raft's order.
func (r *Replica) handle(rd raft.Ready) error {
	r.mu.Lock()
	if rd.SoftState != nil && rd.SoftState.Lead != r.lead {
		r.lead = rd.SoftState.Lead
		close(r.leadChanged)
		r.leadChanged = make(chan struct{})
	}
	leader := r.lead == r.o.ID
	r.mu.Unlock()
	// A leader sends before it writes (its disk write runs beside the
	// replication, Raft thesis 10.2.1, as etcd's server does): it counts
	// itself in a quorum only once the entries are stored, since raft
	// learns that from Advance. A follower must store before it answers.
	// A follower's forwarded proposals (MsgProp) depend on nothing it
	// stores: they go out at once too, not after its disk write.
	var after []*pb.Message
	if leader {
		r.tr.send(rd.Messages)
	} else {
		var props []*pb.Message
		for _, m := range rd.Messages {
			if m.GetType() == pb.MessageType_MsgProp {
				props = append(props, m)
			} else {
				after = append(after, m)
			}
		}
		r.tr.send(props)
	}
	// A hard state whose only change is the commit index is not worth a
	// host write of its own (raft.MustSync, as etcd decides): a restart
	// learns the commit index again from the leader.
	hs := rd.HardState
	if hs != nil && len(rd.Entries) == 0 && !raft.MustSync(hs, r.prevHS, 0) {
		hs = nil
	}
	if err := r.st.save(r.ctx, hs, rd.Entries, rd.Snapshot); err != nil {
		return err
	}
	if hs != nil {
		r.prevHS = hs
	}
	if rd.Snapshot != nil && !raft.IsEmptySnap(rd.Snapshot) {
		if err := r.ms.ApplySnapshot(rd.Snapshot); err != nil {
			return fmt.Errorf("replica: applying snapshot: %w", err)
		}
		r.mu.Lock()
		err := r.m.restore(rd.Snapshot.GetData(), rd.Snapshot.GetMetadata())
		r.snapIndex = rd.Snapshot.GetMetadata().GetIndex()
		r.snapsIn++
		peers := r.others(r.m.peers)
		r.notifyLocked()
		r.mu.Unlock()
		if err != nil {
			return err
		}
		r.tr.setPeers(peers)
	}
	if rd.HardState != nil && !raft.IsEmptyHardState(rd.HardState) {
		if err := r.ms.SetHardState(rd.HardState); err != nil {
			return fmt.Errorf("replica: %w", err)
		}
	}
	if err := r.ms.Append(rd.Entries); err != nil {
		return fmt.Errorf("replica: %w", err)
	}
	r.tr.send(after)
	if err := r.apply(rd.CommittedEntries); err != nil {
		return err
	}
	return r.maybeSnapshot()
}

func (r *Replica) apply(ents []*pb.Entry) error {
	if len(ents) == 0 {
		return nil
	}
	for _, e := range ents {
		r.mu.Lock()
		skip := e.GetIndex() <= r.m.index
		r.mu.Unlock()
		if skip {
			continue
		}
		switch e.GetType() {
		case pb.EntryType_EntryNormal:
			r.mu.Lock()
			id, res, err := r.m.applyNormal(e.GetIndex(), e.GetData())
			if err != nil {
				res = applied{err: fmt.Errorf("%w: %w", ErrStopped, err)}
			}
			if w, ok := r.waiters[id]; ok && id != ([16]byte{}) {
				w <- res
				delete(r.waiters, id)
			}
			r.mu.Unlock()
			if err != nil {
				return fmt.Errorf("replica: applying raft entry %d: %w", e.GetIndex(), err)
			}
		case pb.EntryType_EntryConfChange:
			cc := &pb.ConfChange{}
			if err := proto.Unmarshal(e.GetData(), cc); err != nil {
				return fmt.Errorf("replica: raft entry %d: conf change: %w", e.GetIndex(), err)
			}
			cs := r.node.ApplyConfChange(cc)
			r.mu.Lock()
			res, err := r.m.applyConf(e.GetIndex(), cc, cs)
			if err != nil {
				res = applied{err: fmt.Errorf("%w: %w", ErrStopped, err)}
			}
			if w, ok := r.confWait[cc.GetId()]; ok {
				w <- res
				delete(r.confWait, cc.GetId())
			}
			peers := r.others(r.m.peers)
			r.confDirty = r.snapIndex > 0
			r.mu.Unlock()
			if err != nil {
				return fmt.Errorf("replica: applying conf change %d: %w", e.GetIndex(), err)
			}
			r.tr.setPeers(peers)
		default:
			return fmt.Errorf("replica: raft entry %d: unsupported type %s", e.GetIndex(), e.GetType())
		}
	}
	r.mu.Lock()
	r.notifyLocked()
	r.mu.Unlock()
	return nil
}

func (r *Replica) notifyLocked() {
	close(r.changed)
	r.changed = make(chan struct{})
}

// maybeSnapshot snapshots the machine every SnapshotEvery applied entries
// and compacts the log behind it, keeping CatchUpEntries.
func (r *Replica) maybeSnapshot() error {
	r.mu.Lock()
	idx := r.m.index
	if idx-r.snapIndex < r.o.SnapshotEvery && !(r.confDirty && idx > r.snapIndex) {
		r.mu.Unlock()
		return nil
	}
	data := r.m.snapshot()
	cs := proto.Clone(r.m.conf).(*pb.ConfState)
	r.mu.Unlock()
	snap, err := r.ms.CreateSnapshot(idx, cs, data)
	if err != nil {
		return fmt.Errorf("replica: snapshot at %d: %w", idx, err)
	}
	upto := uint64(0)
	if idx > r.o.CatchUpEntries {
		upto = idx - r.o.CatchUpEntries
	}
	if upto > 0 {
		if err := r.ms.Compact(upto); err != nil && !errors.Is(err, raft.ErrCompacted) {
			return fmt.Errorf("replica: compacting to %d: %w", upto, err)
		}
	}
	if err := r.st.compact(r.ctx, snap, upto); err != nil {
		return err
	}
	r.mu.Lock()
	r.snapIndex, r.confDirty = idx, false
	r.mu.Unlock()
	return nil
}

// fail stops the node with err: its state may no longer follow the log,
// so it serves nothing more until restarted from storage.
func (r *Replica) fail(err error) {
	r.mu.Lock()
	if r.failed == nil {
		r.failed = err
		r.notifyLocked()
	}
	r.mu.Unlock()
	r.cancel()
}

func (r *Replica) shutdown() {
	r.once.Do(func() {
		r.cancel()
		r.srv.Close()
		select {
		case <-r.ready:
			r.node.Stop()
		default:
		}
		r.tr.close()
		r.wg.Wait()
		r.client.CloseIdleConnections()
		r.mu.Lock()
		if r.failed == nil {
			r.failed = ErrStopped
		}
		if r.changed != nil {
			r.notifyLocked()
		}
		r.mu.Unlock()
		close(r.done)
	})
}

// Close stops the node, its listener and its senders. What it stored
// stays: Start with the same Backend restarts it.
func (r *Replica) Close() error {
	r.shutdown()
	return nil
}

// Err is why the node stopped, nil while it runs.
func (r *Replica) Err() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.failed
}

func (r *Replica) stopped() error {
	if err := r.Err(); err != nil {
		if errors.Is(err, ErrStopped) {
			return err
		}
		return fmt.Errorf("%w: %w", ErrStopped, err)
	}
	return nil
}

// ID is the node's raft id.
func (r *Replica) ID() uint64 { return r.o.ID }

// Addr is the address peers dial.
func (r *Replica) Addr() string { return r.o.Advertise }

// ListenAddr is the address the node listens on.
func (r *Replica) ListenAddr() string { return r.ln.Addr().String() }

// Identity is the service identity shared by every node (its keys stay
// inside the enclaves).
func (r *Replica) Identity() *ledger.Identity { return r.keys.shared.id }

// Leader is the raft id of the leader this node knows, 0 if none.
func (r *Replica) Leader() uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.lead
}

// Members lists the voters, ascending.
func (r *Replica) Members() []uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Sorted(slices.Values(r.m.conf.Voters))
}

// SnapshotsReceived counts the snapshots this node installed from a
// leader (a node catching up after log compaction).
func (r *Replica) SnapshotsReceived() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.snapsIn
}

// Served says which node served a read and at which transaction: the last
// transaction committed and applied on that node when it read.
type Served struct {
	Node uint64
	At   ledger.TxID
}

func (r *Replica) servedLocked() Served {
	return Served{Node: r.o.ID, At: ledger.TxID{View: r.m.core.View(), Seqno: r.m.core.Next() - 1}}
}

// Last is the last transaction this node applied.
func (r *Replica) Last() ledger.TxID {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.servedLocked().At
}

// propose proposes rec and waits until it is committed and applied here.
func (r *Replica) propose(ctx context.Context, rec *ledger.Record) (applied, error) {
	if err := r.stopped(); err != nil {
		return applied{}, err
	}
	var id [16]byte
	if _, err := io.ReadFull(r.o.Rand, id[:]); err != nil {
		return applied{}, fmt.Errorf("replica: proposal id: %w", err)
	}
	data := ledger.AppendRecord(append([]byte{tagRecord}, id[:]...), rec)
	ch := make(chan applied, 1)
	r.mu.Lock()
	r.waiters[id] = ch
	lead, leadChanged := r.lead, r.leadChanged
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		delete(r.waiters, id)
		r.mu.Unlock()
	}()
	if lead == 0 {
		return applied{}, fmt.Errorf("%w: node %d knows no leader", ErrNoLeader, r.o.ID)
	}
	if err := r.node.Propose(ctx, data); err != nil {
		if errors.Is(err, raft.ErrProposalDropped) {
			return applied{}, fmt.Errorf("%w: proposal dropped by node %d", ErrNoLeader, r.o.ID)
		}
		if errors.Is(err, raft.ErrStopped) {
			return applied{}, ErrStopped
		}
		return applied{}, err
	}
	select {
	case res := <-ch:
		return res, res.err
	case <-leadChanged:
		// Raft may have dropped it with the old leader, or may still
		// commit it: not acknowledged either way.
		select {
		case res := <-ch:
			return res, res.err
		default:
		}
		return applied{}, fmt.Errorf("%w: the leader changed from node %d while node %d waited; the write may or may not commit", ErrNoLeader, lead, r.o.ID)
	case <-ctx.Done():
		// It may still commit: the caller did not get an acknowledgement.
		return applied{}, ctx.Err()
	case <-r.done:
		return applied{}, ErrStopped
	case <-r.ctx.Done():
		if err := r.stopped(); err != nil {
			return applied{}, err
		}
		return applied{}, ErrStopped
	}
}

// Append appends an entry and returns its transaction id once a quorum
// committed it (and this node applied it). On a follower the proposal is
// forwarded to the leader.
func (r *Replica) Append(ctx context.Context, collection, contents string) (ledger.TxID, error) {
	rec := ledger.Record{Kind: ledger.KindEntry, Collection: collection, Contents: contents}
	if err := rec.Validate(); err != nil {
		return ledger.TxID{}, err
	}
	if collection == MembershipCollection {
		return ledger.TxID{}, fmt.Errorf("%w: collection %q is written by membership changes only", ledger.ErrInvalid, collection)
	}
	res, err := r.propose(ctx, &rec)
	return res.tx, err
}

// SetUser gives a user a role (ledger.RoleNone removes the user).
func (r *Replica) SetUser(ctx context.Context, userID string, role ledger.Role) (ledger.TxID, error) {
	rec := ledger.Record{Kind: ledger.KindUser, UserID: userID, Role: role}
	if err := rec.Validate(); err != nil {
		return ledger.TxID{}, err
	}
	res, err := r.propose(ctx, &rec)
	return res.tx, err
}

// CompareAndIncrement moves counter name from version expect to expect+1
// holding value once committed; a conflict wraps ledger.ErrCounterConflict.
func (r *Replica) CompareAndIncrement(ctx context.Context, name string, expect uint64, value []byte) (ledger.Record, error) {
	if expect == ^uint64(0) {
		return ledger.Record{}, fmt.Errorf("%w: counter %q is at its last version", ledger.ErrInvalid, name)
	}
	rec := ledger.Record{Kind: ledger.KindCounter, Name: name, Version: expect + 1, Value: bytes.Clone(value)}
	if err := rec.Validate(); err != nil {
		return ledger.Record{}, err
	}
	res, err := r.propose(ctx, &rec)
	return res.rec, err
}

// Entry reads entry tx from this node's committed state.
func (r *Replica) Entry(tx ledger.TxID) (ledger.Record, Served, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	sv := r.servedLocked()
	rec, err := r.m.core.Lookup(tx, sv.At.Seqno)
	if err == nil && rec.Kind != ledger.KindEntry {
		err = fmt.Errorf("%w: transaction %s is a %s, not an entry", ledger.ErrNotFound, tx, rec.Kind)
	}
	return rec, sv, err
}

// Receipt returns entry tx's receipt from this node, ok=false while no
// signature covers it yet.
func (r *Replica) Receipt(tx ledger.TxID) (*ledger.TransactionReceipt, bool, Served, error) {
	r.mu.Lock()
	sv := r.servedLocked()
	rec, err := r.m.core.Lookup(tx, sv.At.Seqno)
	if err == nil && rec.Kind != ledger.KindEntry && rec.Kind != ledger.KindCounter {
		err = fmt.Errorf("%w: transaction %s is a %s: receipts are for entries and counters", ledger.ErrNotFound, tx, rec.Kind)
	}
	var parts ledger.ReceiptParts
	var ok bool
	if err == nil {
		parts, ok, err = r.m.core.Receipt(tx.Seqno, sv.At.Seqno)
	}
	id := r.keys.shared.id
	r.mu.Unlock()
	if err != nil || !ok {
		return nil, false, sv, err
	}
	return ledger.BuildReceipt(id, parts), true, sv, nil
}

// WaitReceipt waits until this node can give tx's receipt.
func (r *Replica) WaitReceipt(ctx context.Context, tx ledger.TxID) (*ledger.TransactionReceipt, Served, error) {
	for {
		r.mu.Lock()
		ch := r.changed
		r.mu.Unlock()
		tr, ok, sv, err := r.Receipt(tx)
		if ok {
			return tr, sv, nil
		}
		if err != nil && !errors.Is(err, ledger.ErrNotFound) {
			return nil, sv, err
		}
		if err := r.stopped(); err != nil {
			return nil, sv, err
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, sv, fmt.Errorf("replica: receipt of %s on node %d: %w", tx, r.o.ID, ctx.Err())
		}
	}
}

// WaitApplied waits until this node applied transaction seqno (or later).
func (r *Replica) WaitApplied(ctx context.Context, seqno uint64) error {
	for {
		r.mu.Lock()
		ch, at := r.changed, r.m.core.Next()-1
		r.mu.Unlock()
		if at >= seqno {
			return nil
		}
		if err := r.stopped(); err != nil {
			return err
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("replica: node %d at seqno %d waiting for %d: %w", r.o.ID, at, seqno, ctx.Err())
		}
	}
}

// Transactions returns this node's transactions 1..upto (for comparing
// histories across nodes); upto beyond what it applied is cut.
func (r *Replica) Transactions(upto uint64) []ledger.Record {
	r.mu.Lock()
	defer r.mu.Unlock()
	last := r.m.core.Next() - 1
	upto = min(upto, last)
	out := make([]ledger.Record, 0, upto)
	for s := uint64(1); s <= upto; s++ {
		rec, _ := r.m.core.Record(s, last)
		out = append(out, rec)
	}
	return out
}

// RemoveNode removes a member through a raft conf change (recorded in
// MembershipCollection) and waits until it is applied here.
func (r *Replica) RemoveNode(ctx context.Context, id uint64) error {
	mem, _ := json.Marshal(Membership{Change: "remove"})
	_, err := r.confChange(ctx, &pb.ConfChange{Type: pb.ConfChangeType_ConfChangeRemoveNode.Enum(), NodeId: &id, Context: mem})
	return err
}

func (r *Replica) confChange(ctx context.Context, cc *pb.ConfChange) (applied, error) {
	if err := r.stopped(); err != nil {
		return applied{}, err
	}
	var b [8]byte
	if _, err := io.ReadFull(r.o.Rand, b[:]); err != nil {
		return applied{}, err
	}
	ccid := binary.BigEndian.Uint64(b[:]) | 1
	cc.Id = &ccid
	ch := make(chan applied, 1)
	r.mu.Lock()
	r.confWait[ccid] = ch
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		delete(r.confWait, ccid)
		r.mu.Unlock()
	}()
	if err := r.node.ProposeConfChange(ctx, cc); err != nil {
		if errors.Is(err, raft.ErrProposalDropped) {
			return applied{}, fmt.Errorf("%w: conf change dropped by node %d", ErrNoLeader, r.o.ID)
		}
		return applied{}, err
	}
	select {
	case res := <-ch:
		return res, res.err
	case <-ctx.Done():
		return applied{}, ctx.Err()
	case <-r.done:
		return applied{}, ErrStopped
	}
}

// handleMsgs steps raft messages from an attested peer.
func (r *Replica) handleMsgs(w http.ResponseWriter, req *http.Request) {
	select {
	case <-r.ready:
	default:
		http.Error(w, "node not started", http.StatusServiceUnavailable)
		return
	}
	body, err := io.ReadAll(io.LimitReader(req.Body, maxMessagesBody+1))
	if err != nil || len(body) > maxMessagesBody {
		http.Error(w, "messages unreadable or too large", http.StatusBadRequest)
		return
	}
	msgs, err := decodeMessages(body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	for _, m := range msgs {
		if m.GetTo() != r.o.ID {
			http.Error(w, fmt.Sprintf("message for node %d reached node %d", m.GetTo(), r.o.ID), http.StatusBadRequest)
			return
		}
		if err := r.node.Step(req.Context(), m); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
	}
	w.WriteHeader(http.StatusNoContent)
}

// joinRequest is what a joining node posts.
type joinRequest struct {
	ID      uint64 `json:"id"`
	Address string `json:"address"`
}

// handleJoin admits a node whose RA-TLS client certificate satisfied the
// node policy (the TLS handshake already checked it): it proposes the
// raft conf change adding it, waits until it is applied, and answers with
// the shared secrets and the peer addresses, over this attested channel.
func (r *Replica) handleJoin(w http.ResponseWriter, req *http.Request) {
	select {
	case <-r.ready:
	default:
		http.Error(w, "node not started", http.StatusServiceUnavailable)
		return
	}
	if req.TLS == nil || len(req.TLS.PeerCertificates) == 0 {
		http.Error(w, "no attested client certificate", http.StatusForbidden)
		return
	}
	var jr joinRequest
	if err := json.NewDecoder(io.LimitReader(req.Body, 4096)).Decode(&jr); err != nil || jr.ID == 0 || jr.Address == "" {
		http.Error(w, "join request: want {\"id\": non-zero, \"address\": host:port}", http.StatusBadRequest)
		return
	}
	h := sha256.Sum256(req.TLS.PeerCertificates[0].Raw)
	mem, _ := json.Marshal(Membership{Address: jr.Address, CertSHA256: hex.EncodeToString(h[:])})
	ctx, cancel := context.WithTimeout(req.Context(), 30*time.Second)
	defer cancel()
	if _, err := r.confChange(ctx, &pb.ConfChange{Type: pb.ConfChangeType_ConfChangeAddNode.Enum(), NodeId: &jr.ID, Context: mem}); err != nil {
		http.Error(w, "adding node: "+err.Error(), http.StatusServiceUnavailable)
		return
	}
	out, err := encodeShared(nil, &r.keys.shared)
	if err != nil {
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	r.mu.Lock()
	peers := maps(r.m.peers)
	r.mu.Unlock()
	out = binary.BigEndian.AppendUint32(out, uint32(len(peers)))
	for id, a := range peers {
		out = binary.BigEndian.AppendUint64(out, id)
		out = binary.BigEndian.AppendUint16(out, uint16(len(a)))
		out = append(out, a...)
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Write(out)
	clear(out)
}

func maps(m map[uint64]string) map[uint64]string {
	out := make(map[uint64]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// join asks a member to admit this node, over mutually attested TLS.
func (r *Replica) join(ctx context.Context) (*shared, map[uint64]string, error) {
	body, _ := json.Marshal(joinRequest{ID: r.o.ID, Address: r.o.Advertise})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "https://"+r.o.Join+"/raft/join", bytes.NewReader(body))
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %w", ErrJoin, err)
	}
	resp, err := r.client.Do(req)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: through %s: %w", ErrJoin, r.o.Join, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, nil, fmt.Errorf("%w: through %s: %w", ErrJoin, r.o.Join, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, nil, fmt.Errorf("%w: %s answered %s: %s", ErrJoin, r.o.Join, resp.Status, bytes.TrimSpace(b))
	}
	sh, rest, err := decodeShared(b)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %w", ErrJoin, err)
	}
	clear(b[:len(b)-len(rest)])
	if len(rest) < 4 {
		return nil, nil, fmt.Errorf("%w: peer list truncated", ErrJoin)
	}
	n := binary.BigEndian.Uint32(rest)
	rest = rest[4:]
	peers := map[uint64]string{}
	for range n {
		if len(rest) < 10 {
			return nil, nil, fmt.Errorf("%w: peer list truncated", ErrJoin)
		}
		id, l := binary.BigEndian.Uint64(rest), int(binary.BigEndian.Uint16(rest[8:]))
		if len(rest) < 10+l {
			return nil, nil, fmt.Errorf("%w: peer list truncated", ErrJoin)
		}
		peers[id] = string(rest[10 : 10+l])
		rest = rest[10+l:]
	}
	return sh, peers, nil
}
