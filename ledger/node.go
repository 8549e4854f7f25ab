package ledger

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/cloister-dev/cloister/kv"
	"github.com/cloister-dev/cloister/seal"
)

// Options configure a Node. Backend, Sealer and Now are required.
type Options struct {
	// Backend is the host storage (kv.EnclaveBackend(env.Store()) in an
	// enclave).
	Backend kv.Backend
	// Sealer seals the key record to the running enclave.
	Sealer seal.Sealer
	// Rand is the source of keys, nonces and signatures; nil means crypto/rand.
	Rand io.Reader
	// Now is the clock for certificates and the signature interval.
	Now func() time.Time
	// Identity names the endpoint in a new ledger's certificates and adds
	// the service certificate's evidence. Its Now and Rand are filled in.
	Identity IdentityOptions
	// SignEvery is how many transactions at most go unsigned; 0 means 2000.
	SignEvery int
	// SignInterval is how long at most a transaction waits for its
	// signature; 0 means 10ms.
	SignInterval time.Duration
	// Admins are user ids made Administrator when the ledger has no user
	// (its first start); ignored once it has one.
	Admins []string
}

func (o *Options) validate() error {
	if o.Backend == nil || o.Sealer.Keys == nil || o.Now == nil {
		return errors.New("ledger: node: Backend, Sealer and Now are required")
	}
	if o.Rand == nil {
		o.Rand = rand.Reader
	}
	if o.SignEvery <= 0 {
		o.SignEvery = 2000
	}
	if o.SignInterval <= 0 {
		o.SignInterval = 10 * time.Millisecond
	}
	for _, a := range o.Admins {
		if err := checkName("admin user id", a, MaxUserID); err != nil {
			return err
		}
	}
	return nil
}

// Node is a single ledger node: the Core driven by one goroutine that
// group-commits every request waiting (one segment, one host write, one
// fsync), adding a signature transaction when SignEvery transactions or
// SignInterval have gone unsigned. A request returns once its transaction
// is durable; its receipt is ready once a durable signature covers it.
//
// Ordering contract: a transaction is visible to readers only after the
// segment holding it is durable; if a write fails the node fails closed
// (ErrStopped) and must be reopened from storage, since the write may or
// may not have landed.
type Node struct {
	opts Options
	id   *Identity
	st   *Storage

	mu      sync.Mutex
	core    *Core
	durable uint64        // last seqno durably stored
	changed chan struct{} // closed and replaced when durable moves
	failed  error         // set when the node stops

	reqs   chan *request
	stop   chan struct{}
	done   chan struct{}
	closed sync.Once
}

type request struct {
	rec    Record
	expect uint64 // KindCounter: the version the caller read
	resp   chan result
}

type result struct {
	rec Record
	err error
}

// Open opens the ledger on o.Backend (creating it when empty), replays
// and checks every stored transaction, and starts the node.
func Open(ctx context.Context, o Options) (*Node, error) {
	if err := o.validate(); err != nil {
		return nil, err
	}
	idOpts := o.Identity
	idOpts.Rand, idOpts.Now = o.Rand, o.Now()
	st, op, err := OpenStorage(ctx, StorageOptions{
		Backend: o.Backend, Sealer: o.Sealer, Rand: o.Rand,
		NewIdentity: func() (*Identity, error) { return NewIdentity(idOpts) },
	})
	if err != nil {
		return nil, err
	}
	core := NewCore(op.View, op.Secret, &op.Identity.NodeKey.PublicKey)
	for _, r := range op.Records {
		if err := core.Apply(r); err != nil {
			return nil, fmt.Errorf("%w: replaying seqno %d: %w", ErrSegmentFormat, r.Seqno, err)
		}
	}
	n := &Node{
		opts: o, id: op.Identity, st: st, core: core, durable: core.Next() - 1,
		changed: make(chan struct{}), reqs: make(chan *request, 1024),
		stop: make(chan struct{}), done: make(chan struct{}),
	}
	// Transactions after the last signature were acknowledged (durable)
	// before the node stopped but never signed: sign them now rather than
	// at the next write, which may never come, so their receipts appear.
	go n.run(core.Next() - 1 - core.LastSignature())
	// Admins come from the host (the app's command line): they bootstrap a
	// ledger that has no user yet and are ignored afterwards, or a host
	// restarting the ledger could name itself administrator. (No user:
	// not only a new ledger, also one whose first start stopped before
	// its administrators were stored.)
	admins := o.Admins
	if core.Users() != 0 {
		admins = nil
	}
	for _, a := range admins {
		if core.User(a) == RoleNone {
			if _, err := n.SetUser(ctx, a, RoleAdministrator); err != nil {
				n.Close()
				return nil, err
			}
		}
	}
	return n, nil
}

// Identity returns the node's identity (keys stay inside the enclave).
func (n *Node) Identity() *Identity { return n.id }

// Close stops the node; requests in flight fail with ErrStopped.
func (n *Node) Close() error {
	n.closed.Do(func() { close(n.stop) })
	<-n.done
	return nil
}

// submit queues a request and waits for its durable result.
func (n *Node) submit(ctx context.Context, r *request) (Record, error) {
	r.resp = make(chan result, 1)
	select {
	case n.reqs <- r:
	case <-n.stop:
		return Record{}, n.stoppedErr()
	case <-ctx.Done():
		return Record{}, ctx.Err()
	}
	select {
	case res := <-r.resp:
		return res.rec, res.err
	case <-n.done:
		// The loop is gone: it answered r before leaving, or never saw it.
		select {
		case res := <-r.resp:
			return res.rec, res.err
		default:
			return Record{}, n.stoppedErr()
		}
	case <-ctx.Done():
		// The transaction may still land; the caller learns its id only
		// by reading the ledger.
		return Record{}, ctx.Err()
	}
}

// Append appends an entry to a collection and returns its transaction id
// once it is durable.
func (n *Node) Append(ctx context.Context, collection, contents string) (TxID, error) {
	r := Record{Kind: KindEntry, Collection: collection, Contents: contents}
	if err := r.validate(); err != nil {
		return TxID{}, err
	}
	rec, err := n.submit(ctx, &request{rec: r})
	if err != nil {
		return TxID{}, err
	}
	return n.core.tx(rec.Seqno), nil
}

// SetUser gives a user a role (RoleNone removes the user).
func (n *Node) SetUser(ctx context.Context, userID string, role Role) (TxID, error) {
	r := Record{Kind: KindUser, UserID: userID, Role: role}
	if err := r.validate(); err != nil {
		return TxID{}, err
	}
	rec, err := n.submit(ctx, &request{rec: r})
	if err != nil {
		return TxID{}, err
	}
	return n.core.tx(rec.Seqno), nil
}

// CompareAndIncrement moves counter name from version expect to
// expect+1 holding value, as one ledger transaction, durably; if the
// counter is not at expect it changes nothing and returns an error
// wrapping ErrCounterConflict.
func (n *Node) CompareAndIncrement(ctx context.Context, name string, expect uint64, value []byte) (Record, error) {
	r := Record{Kind: KindCounter, Name: name, Version: expect + 1, Value: append([]byte(nil), value...)}
	if expect == ^uint64(0) {
		return Record{}, fmt.Errorf("%w: counter %q is at its last version", ErrInvalid, name)
	}
	if err := r.validate(); err != nil {
		return Record{}, err
	}
	return n.submit(ctx, &request{rec: r, expect: expect})
}

// run is the group-commit loop; tail is how many durable transactions
// found at open no signature covers yet (they are signed at once).
func (n *Node) run(tail uint64) {
	defer close(n.done)
	var (
		unsigned      int
		firstUnsigned time.Time
		timer         *time.Timer
		timerC        <-chan time.Time
	)
	if tail > 0 {
		unsigned, firstUnsigned = int(tail), n.opts.Now()
		timer = time.NewTimer(0)
		timerC = timer.C
	}
	for {
		var batch []*request
		signNow := false
		select {
		case r := <-n.reqs:
			batch = append(batch, r)
		case <-timerC:
			timerC = nil
			signNow = true
		case <-n.stop:
			n.fail(ErrStopped)
			n.drain()
			return
		}
		budget := MaxSegmentPlaintext - segPlainHead - 512 // room for a signature
		if len(batch) == 1 {
			budget -= batch[0].rec.size()
		}
	drain:
		for budget > MaxContents+MaxCollectionID+16 {
			select {
			case r := <-n.reqs:
				batch = append(batch, r)
				budget -= r.rec.size()
			default:
				break drain
			}
		}
		n.mu.Lock()
		recs := make([]Record, 0, len(batch)+1)
		results := make([]result, len(batch))
		for i, r := range batch {
			rec := r.rec
			rec.Seqno = n.core.Next()
			if rec.Kind == KindCounter {
				if cur := n.core.Counter(rec.Name).Version; cur != r.expect {
					results[i].err = fmt.Errorf("%w: counter %q is at version %d, not %d", ErrCounterConflict, rec.Name, cur, r.expect)
					continue
				}
			}
			if err := n.core.Apply(rec); err != nil {
				results[i].err = err
				continue
			}
			results[i].rec = rec
			recs = append(recs, rec)
		}
		if len(recs) > 0 && unsigned == 0 {
			firstUnsigned = n.opts.Now()
		}
		unsigned += len(recs)
		if unsigned > 0 && (signNow || unsigned >= n.opts.SignEvery || n.opts.Now().Sub(firstUnsigned) >= n.opts.SignInterval) {
			sig, err := n.core.SignatureRecord(func(root [32]byte) ([]byte, error) { return n.id.sign(n.opts.Rand, root) })
			if err == nil {
				err = n.core.Apply(sig)
			}
			if err != nil {
				n.mu.Unlock()
				n.fail(err)
				n.reply(batch, results, err)
				n.drain()
				return
			}
			recs = append(recs, sig)
			unsigned = 0
		}
		n.mu.Unlock()
		if len(recs) > 0 {
			if err := n.st.Append(context.Background(), recs); err != nil {
				n.fail(err)
				n.reply(batch, results, err)
				n.drain()
				return
			}
			n.mu.Lock()
			n.durable = recs[len(recs)-1].Seqno
			close(n.changed)
			n.changed = make(chan struct{})
			n.mu.Unlock()
		}
		n.reply(batch, results, nil)
		if unsigned > 0 && timerC == nil {
			d := n.opts.SignInterval - n.opts.Now().Sub(firstUnsigned)
			if timer == nil {
				timer = time.NewTimer(d)
			} else {
				timer.Reset(d)
			}
			timerC = timer.C
		}
	}
}

func (n *Node) reply(batch []*request, results []result, err error) {
	for i, r := range batch {
		res := results[i]
		if err != nil && res.err == nil {
			res = result{err: fmt.Errorf("%w: %w", ErrStopped, err)}
		}
		r.resp <- res
	}
}

// fail stops the node with err (first error wins) and wakes waiters.
func (n *Node) fail(err error) {
	n.mu.Lock()
	if n.failed == nil {
		n.failed = err
		close(n.changed)
		n.changed = make(chan struct{})
	}
	n.mu.Unlock()
	n.closed.Do(func() { close(n.stop) })
}

// drain fails every queued request.
func (n *Node) drain() {
	for {
		select {
		case r := <-n.reqs:
			r.resp <- result{err: ErrStopped}
		default:
			return
		}
	}
}

// stoppedErr is ErrStopped with the cause.
func (n *Node) stoppedErr() error {
	if err := n.Err(); err != nil && !errors.Is(err, ErrStopped) {
		return fmt.Errorf("%w: %w", ErrStopped, err)
	}
	return ErrStopped
}

// Err is why the node stopped, nil while it runs.
func (n *Node) Err() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.failed
}

// Durable is the last durably stored seqno.
func (n *Node) Durable() uint64 {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.durable
}

// View is the ledger's view.
func (n *Node) View() uint64 { return n.core.View() }

// Committed returns the seqno of the last durable signature transaction
// (every transaction below it has its receipt ready) and a channel closed
// at the next change of what is durable, for callers that follow commits
// (benchmarks, replication) without polling.
func (n *Node) Committed() (uint64, <-chan struct{}) {
	n.mu.Lock()
	defer n.mu.Unlock()
	_, ch := n.failed, n.changed
	for i := len(n.core.sigs) - 1; i >= 0; i-- {
		if n.core.sigs[i] <= n.durable {
			return n.core.sigs[i], ch
		}
	}
	return 0, ch
}

// WaitCommitted waits until a durable signature covers tx (its receipt
// is ready), the node stops, or ctx ends.
func (n *Node) WaitCommitted(ctx context.Context, tx TxID) error {
	for {
		n.mu.Lock()
		_, ok := n.core.CoveringSignature(tx.Seqno, n.durable)
		failed, ch := n.failed, n.changed
		n.mu.Unlock()
		if ok {
			return nil
		}
		if failed != nil {
			return fmt.Errorf("%w: %w", ErrStopped, failed)
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Entry returns the entry with id tx.
func (n *Node) Entry(tx TxID) (Record, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	r, err := n.core.Lookup(tx, n.durable)
	if err != nil {
		return Record{}, err
	}
	if r.Kind != KindEntry {
		return Record{}, fmt.Errorf("%w: transaction %s is a %s, not an entry", ErrNotFound, tx, r.Kind)
	}
	return r, nil
}

// Status says whether tx is committed (a durable signature covers it).
func (n *Node) Status(tx TxID) (committed bool, err error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if _, err := n.core.Lookup(tx, n.durable); err != nil {
		return false, err
	}
	_, ok := n.core.CoveringSignature(tx.Seqno, n.durable)
	return ok, nil
}

// Receipt returns the receipt of entry tx, or ok=false while it is not
// yet committed.
func (n *Node) Receipt(tx TxID) (*TransactionReceipt, bool, error) {
	n.mu.Lock()
	r, err := n.core.Lookup(tx, n.durable)
	if err == nil && r.Kind != KindEntry && r.Kind != KindCounter {
		err = fmt.Errorf("%w: transaction %s is a %s: receipts are for entries and counters", ErrNotFound, tx, r.Kind)
	}
	var parts ReceiptParts
	var ok bool
	if err == nil {
		parts, ok, err = n.core.Receipt(tx.Seqno, n.durable)
	}
	n.mu.Unlock()
	if err != nil || !ok {
		return nil, false, err
	}
	return buildReceipt(n.id, parts), true, nil
}

// Current returns the latest entry of a collection.
func (n *Node) Current(collection string) (Record, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	r, ok := n.core.Latest(collection, n.durable)
	if !ok {
		return Record{}, fmt.Errorf("%w: collection %q has no entry", ErrNotFound, collection)
	}
	return r, nil
}

// List returns a collection's entries with seqnos in [from, to] (to 0:
// up to the latest), at most MaxPageEntries, and whether more follow.
func (n *Node) List(collection string, from, to uint64) ([]Record, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if to == 0 {
		to = n.durable
	}
	return n.core.Entries(collection, from, to, n.durable, MaxPageEntries)
}

// Collections lists the collection ids holding at least one entry.
func (n *Node) Collections() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.core.Collections(n.durable)
}

// User returns a user's role, RoleNone if unknown.
func (n *Node) User(id string) Role {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.core.User(id)
}

// Counter returns a counter's latest durable version and value (version
// 0, no value, if it never moved). A change in flight is waited for, so a
// value read here is never one a crash could take back.
func (n *Node) Counter(ctx context.Context, name string) (Record, error) {
	if err := checkName("counter name", name, MaxCounterName); err != nil {
		return Record{}, err
	}
	for {
		n.mu.Lock()
		r := n.core.Counter(name)
		failed, ch, ok := n.failed, n.changed, r.Seqno <= n.durable
		n.mu.Unlock()
		if failed != nil {
			return Record{}, fmt.Errorf("%w: %w", ErrStopped, failed)
		}
		if ok {
			return r, nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return Record{}, ctx.Err()
		}
	}
}
