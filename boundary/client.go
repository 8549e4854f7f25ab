package boundary

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"runtime/debug"
	"sync"
	"sync/atomic"

	"github.com/cloister-dev/cloister/boundary/internal/ring"
)

// Client is the enclave side: it sends requests on the request rings and
// reads responses from the response rings, treating everything the host
// writes as hostile. It is safe for concurrent use: each call takes one of
// the MaxPendingPerChannel slots of a channel (round-robin, first with a
// free slot), sends its request and waits for its reply by correlation id,
// so calls in flight on a channel do not hold it for one another: one
// goroutine at a time reads the channel's response ring (the reader) and
// hands each reply to the caller whose id it carries, while the others
// wait selecting on their reply, their context and the reader's token.
//
// Hostile-host contract: capacities and offsets come from the Region
// (fixed at Attach from the expected Config); the host's indices are read
// once per step and checked before use; every frame header is copied out
// before it is validated, and the payload is copied into the caller's
// buffer before the caller looks at it; every length is checked against
// the call's declared bound. A violation fails the affected call with a
// named error (ErrBadIndex, ErrMalformedFrame, ErrUnknownID, ErrDuplicateID,
// ErrCallMismatch, ErrResponseTooLarge, ErrMalformedError), is counted in
// Counters, and later calls proceed normally.
//
// A Region must be used by one Client for its lifetime: the client's ring
// indices start at zero, the state of a fresh region.
type Client struct {
	region  *Region
	table   *Table
	chans   []clientChan
	server  waitLine
	rr      atomic.Uint32
	closed  atomic.Bool
	faulted atomic.Bool // the mapping faulted (unsealed region truncated)
	// faultCh is closed at the first fault: a call waiting for a reader
	// that faulted while handing over its reply stops waiting.
	faultCh   chan struct{}
	faultOnce sync.Once
	ctr       counters
	spin      *spinner // one spinner among all the client's waiters

	done      chan struct{} // closed by Close: queued callers stop waiting
	closeOnce sync.Once
}

// clientChan is one channel's enclave-side state. Everything here is
// private memory except the words the pointers refer to.
type clientChan struct {
	// slots holds MaxPendingPerChannel tokens: a Call takes one for its
	// whole life, a Batch (and Close) all of them, so a Batch has the
	// channel to itself. sendTok guards the request side (tail, seenHead,
	// nextID), rd the response side (head, seenTail): its holder is the
	// channel's reader. Channels, not mutexes, so that a queued caller can
	// give up when its context ends or the client closes. mu guards
	// waiters, the abandoned list and nextID's writes.
	slots   chan struct{}
	excl    chan struct{} // one token: exclusive takers queue here first, so two never split the slots
	sendTok chan struct{}
	rd      chan struct{}
	mu      sync.Mutex
	waiters map[uint64]*waiter

	req, resp ring.Ring
	reqTailW  *uint64 // published by us
	reqHeadW  *uint64 // hostile
	respTailW *uint64 // hostile
	respHeadW *uint64 // published by us
	wait      waitLine

	tail     uint64 // our request tail, the only copy we trust
	head     uint64 // our response head, the only copy we trust
	seenHead uint64 // request head last read from the host
	seenTail uint64 // response tail last read from the host
	nextID   uint64 // next correlation id; ids start at 1

	// resync: the host published an index we rejected; before the next
	// call the channel is resynchronised at the host's indices (see
	// Client.resync), so one bad or retracted index fails one call and
	// does not wedge the channel.
	resync bool

	abandoned [maxAbandoned]uint64 // ids whose responses will be dropped
	nAb       int

	errBuf [maxErrorPayload]byte
	_      [64]byte // keep channels' hot fields on separate cache lines
}

// NewClient returns the enclave side of r, sending only calls declared in t.
// Every call's largest frames must fit r's rings.
func NewClient(r *Region, t *Table) (*Client, error) {
	if err := t.checkRings(r.cfg); err != nil {
		return nil, fmt.Errorf("boundary: new client: %w", err)
	}
	c := &Client{region: r, table: t, chans: make([]clientChan, len(r.lay.ch)), server: r.waitLine(offServerWait), done: make(chan struct{}), faultCh: make(chan struct{}), spin: newSpinner()}
	for i, l := range r.lay.ch {
		ch := &c.chans[i]
		ch.slots = make(chan struct{}, MaxPendingPerChannel)
		for range MaxPendingPerChannel {
			ch.slots <- struct{}{}
		}
		ch.sendTok = make(chan struct{}, 1)
		ch.sendTok <- struct{}{}
		ch.excl = make(chan struct{}, 1)
		ch.excl <- struct{}{}
		ch.rd = make(chan struct{}, 1)
		ch.rd <- struct{}{}
		ch.waiters = make(map[uint64]*waiter)
		var err error
		if ch.req, err = ring.New(r.mem[l.reqData : l.reqData+r.lay.reqSize]); err != nil {
			return nil, fmt.Errorf("boundary: new client: %w", err)
		}
		if ch.resp, err = ring.New(r.mem[l.respData : l.respData+r.lay.respSize]); err != nil {
			return nil, fmt.Errorf("boundary: new client: %w", err)
		}
		ch.reqTailW = r.u64(l.base + chReqTail)
		ch.reqHeadW = r.u64(l.base + chReqHead)
		ch.respTailW = r.u64(l.base + chRespTail)
		ch.respHeadW = r.u64(l.base + chRespHead)
		ch.wait = r.waitLine(l.base + chWait)
		ch.nextID = 1
	}
	return c, nil
}

// Counters returns a snapshot of the client's counters.
func (c *Client) Counters() Counters { return c.ctr.snapshot() }

// Close stops the client: calls in progress return ErrClosed at their next
// check (they are woken if they sleep), queued and new calls fail with
// ErrClosed, and Close returns once no call uses the region. Close never
// waits for the host.
func (c *Client) Close() error {
	c.closeOnce.Do(func() {
		c.closed.Store(true)
		close(c.done)
		if err := c.region.enter(); err == nil {
			for _, l := range c.region.lay.ch {
				c.region.wakeLocal(l.base + chWait)
			}
			c.region.leave()
		}
		// Take every slot of every channel and never give them back.
		for i := range c.chans {
			for range MaxPendingPerChannel {
				<-c.chans[i].slots
			}
		}
	})
	return nil
}

// acquire returns a channel on which the caller now holds one slot, or
// (exclusive, for Batch) every slot; release them with ch.release. It takes
// the first channel with a free slot starting round-robin, or, if none has
// one (or exclusive), waits on the starting one. It gives up when ctx ends
// or the client closes. It resynchronises the channel first if the host
// broke it.
func (c *Client) acquire(ctx context.Context, exclusive bool) (*clientChan, error) {
	n := uint32(len(c.chans))
	start := c.rr.Add(1) % n
	var ch *clientChan
	taken := 0
	if !exclusive {
		for i := range n {
			cand := &c.chans[(start+i)%n]
			select {
			case <-cand.slots:
				ch, taken = cand, 1
			default:
				continue
			}
			break
		}
	}
	if ch == nil {
		ch = &c.chans[start]
	}
	want := 1
	if exclusive {
		want = MaxPendingPerChannel
		select {
		case <-ch.excl:
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-c.done:
			return nil, ErrClosed
		}
		defer func() { ch.excl <- struct{}{} }()
	}
	for ; taken < want; taken++ {
		select {
		case <-ch.slots:
		case <-ctx.Done():
			ch.release(taken)
			return nil, ctx.Err()
		case <-c.done:
			ch.release(taken)
			return nil, ErrClosed
		}
	}
	// Re-check under the channel: Close may have run while we queued.
	if c.closed.Load() {
		ch.release(want)
		return nil, ErrClosed
	}
	if err := c.resyncIfBroken(ctx, ch, exclusive); err != nil {
		ch.release(want)
		return nil, err
	}
	return ch, nil
}

// resyncIfBroken resynchronises ch if the host broke it, once no call is in
// flight on it. A call that finds calls of others still in flight (they are
// being failed by the reader) fails with ErrBadIndex instead of waiting.
func (c *Client) resyncIfBroken(ctx context.Context, ch *clientChan, exclusive bool) error {
	ch.mu.Lock()
	broken := ch.resync
	ch.mu.Unlock()
	if !broken {
		return nil
	}
	if !exclusive {
		if !ch.takeTokens(ctx, c.done) {
			return fmt.Errorf("%w: channel being resynchronised", ErrBadIndex)
		}
		defer ch.giveTokens()
	}
	ch.mu.Lock()
	defer ch.mu.Unlock()
	if !ch.resync {
		return nil
	}
	if len(ch.waiters) != 0 {
		return fmt.Errorf("%w: channel being resynchronised", ErrBadIndex)
	}
	return c.resync(ch)
}

// takeTokens takes the send token and the reader token (in that order,
// always), giving up when ctx ends or done closes.
func (ch *clientChan) takeTokens(ctx context.Context, done <-chan struct{}) bool {
	select {
	case <-ch.sendTok:
	case <-ctx.Done():
		return false
	case <-done:
		return false
	}
	select {
	case <-ch.rd:
		return true
	case <-ctx.Done():
	case <-done:
	}
	ch.sendTok <- struct{}{}
	return false
}

// giveTokens gives back what takeTokens took.
func (ch *clientChan) giveTokens() {
	ch.rd <- struct{}{}
	ch.sendTok <- struct{}{}
}

// release gives n slots back.
func (ch *clientChan) release(n int) {
	for range n {
		ch.slots <- struct{}{}
	}
}

// resync re-establishes a channel after the host published an index the
// client rejected: both rings are taken as empty at the host's current
// indices (the request ring at the host's request head, the response ring
// at its response tail), and the client publishes matching indices. Only
// requests and responses of calls that already failed are dropped: a
// channel is resynchronised only between calls. The host's values must be
// aligned; whatever else they are, the client's own writes stay within its
// ring and the next call's checks apply as usual.
func (c *Client) resync(ch *clientChan) error {
	head := atomic.LoadUint64(ch.reqHeadW)
	tail := atomic.LoadUint64(ch.respTailW)
	if (head|tail)&(ring.Align-1) != 0 {
		c.ctr.badIndex.Add(1)
		return fmt.Errorf("%w: resynchronising at request head %d, response tail %d", ErrBadIndex, head, tail)
	}
	ch.tail, ch.seenHead = head, head
	ch.head, ch.seenTail = tail, tail
	atomic.StoreUint64(ch.reqTailW, head)
	atomic.StoreUint64(ch.respHeadW, tail)
	ch.resync = false
	c.ctr.resyncs.Add(1)
	return nil
}

// restore republishes the channel's own indices if the shared words no
// longer hold them (a hostile host may overwrite them). Called before
// sleeping, so a host that stopped scribbling sees consistent indices again.
func (ch *clientChan) restore() {
	ch.restoreReq()
	ch.restoreResp()
}

// restoreReq is restore's request side (the send token's holder's part).
func (ch *clientChan) restoreReq() {
	if atomic.LoadUint64(ch.reqTailW) != ch.tail {
		atomic.StoreUint64(ch.reqTailW, ch.tail)
	}
}

// restoreResp is restore's response side (the reader's part).
func (ch *clientChan) restoreResp() {
	if atomic.LoadUint64(ch.respHeadW) != ch.head {
		atomic.StoreUint64(ch.respHeadW, ch.head)
	}
}

// begin is the common entry of Call and Batch: it checks the client and
// ctx, enters the region and takes a slot of a channel (every slot if
// exclusive). On success the caller must call c.end(ch, exclusive).
func (c *Client) begin(ctx context.Context, exclusive bool) (*clientChan, error) {
	if c.closed.Load() {
		return nil, ErrClosed
	}
	if c.faulted.Load() {
		return nil, ErrRegionFault
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := c.region.enter(); err != nil {
		return nil, err
	}
	ch, err := c.acquire(ctx, exclusive)
	if err != nil {
		c.region.leave()
		return nil, err
	}
	return ch, nil
}

// end releases what begin took.
func (c *Client) end(ch *clientChan, exclusive bool) {
	if exclusive {
		ch.release(MaxPendingPerChannel)
	} else {
		ch.release(1)
	}
	c.region.leave()
}

// Call sends one request for call and waits for its response, which is
// copied into resp; it returns the response length. req and resp belong to
// the caller and are not retained. The call must be declared in the
// client's Table and req must be within its bound. An error response from
// the host is returned as *RemoteError. Call does not allocate unless it
// fails.
//
// If ctx ends while the call is in flight, Call returns ctx's error and the
// late response is dropped when it arrives.
func (c *Client) Call(ctx context.Context, call uint32, req, resp []byte) (n int, err error) {
	if !c.region.sealed {
		defer c.catchFault(debug.SetPanicOnFault(true), &n, &err)
	}
	spec, ok := c.table.byID[call]
	if !ok {
		return 0, fmt.Errorf("boundary: call %#x: %w", call, ErrUnknownCall)
	}
	if len(req) > spec.MaxRequest {
		return 0, fmt.Errorf("boundary: call %s: %w: %d bytes, bound %d", spec.Name, ErrRequestTooLarge, len(req), spec.MaxRequest)
	}
	ch, err := c.begin(ctx, false)
	if err != nil {
		return 0, fmt.Errorf("boundary: call %s: %w", spec.Name, err)
	}
	defer c.end(ch, false)
	select {
	case <-ch.sendTok:
	case <-ctx.Done():
		return 0, fmt.Errorf("boundary: call %s: send: %w", spec.Name, ctx.Err())
	case <-c.done:
		return 0, fmt.Errorf("boundary: call %s: send: %w", spec.Name, ErrClosed)
	}
	w := waiters.Get().(*waiter)
	w.spec, w.resp = spec, resp
	id, woke, err := c.sendHolding(ctx, ch, &spec, req, w)
	if err != nil {
		w.put()
		return 0, err
	}
	n, err = c.await(ctx, ch, w, id, woke)
	w.put()
	return n, err
}

// sendHolding is send with ch.sendTok held, given back even if touching
// the region faults.
func (c *Client) sendHolding(ctx context.Context, ch *clientChan, spec *CallSpec, req []byte, w *waiter) (uint64, bool, error) {
	defer func() { ch.sendTok <- struct{}{} }()
	return c.send(ctx, ch, spec, req, w)
}

// waiter is one Call waiting for its reply on a channel, registered in
// ch.waiters under its id. The reader that takes its reply out of the map
// (under ch.mu) owns it until it sends on done; the waiter touches it only
// after receiving from done or after taking it out of the map itself.
type waiter struct {
	spec CallSpec
	resp []byte
	n    int
	err  error
	done chan struct{} // buffered 1: the reader's "answered"
	lost bool          // given up without its answer: not returned to the pool
}

// waiters recycles waiters, so a Call does not allocate.
var waiters = sync.Pool{New: func() any { return &waiter{done: make(chan struct{}, 1)} }}

// put returns w to the pool; its done is empty again (answered ones were
// received from).
func (w *waiter) put() {
	if w.lost {
		return
	}
	w.spec, w.resp, w.n, w.err = CallSpec{}, nil, 0, nil
	waiters.Put(w)
}

// send appends one request frame and publishes it. The request tail is
// published only after the frame bytes are written (ring.Write returns).
// It reports whether the server slept and had to be woken.
//
// The caller holds ch.sendTok. w is registered under the request's id
// before the request is published, so its reply always finds it.
func (c *Client) send(ctx context.Context, ch *clientChan, spec *CallSpec, req []byte, w *waiter) (uint64, bool, error) {
	id := ch.nextID
	var sw spinWait
	defer sw.stop()
	for first := true; ; first = false {
		head, ok := ch.loadReqHead() // read once per step
		if !ok {
			c.ctr.badIndex.Add(1)
			ch.markBroken()
			return 0, false, fmt.Errorf("boundary: call %s: send: %w: request head %d, tail %d", spec.Name, ErrBadIndex, head, ch.tail)
		}
		tail, err := ch.req.Write(head, ch.tail, ring.Header{Call: spec.ID, ID: id}, req)
		switch err {
		case nil:
			ch.mu.Lock()
			ch.waiters[id] = w
			ch.nextID++
			ch.mu.Unlock()
			ch.tail = tail
			atomic.StoreUint64(ch.reqTailW, tail)
			return id, c.server.wake(waitIdle, &c.ctr), nil
		case ring.ErrFull:
			// Wait below for the server to consume; publish any padding
			// Write added so the server can consume it.
			if tail != ch.tail {
				ch.tail = tail
				atomic.StoreUint64(ch.reqTailW, tail)
				c.server.wake(waitIdle, &c.ctr)
			}
		case ring.ErrIndex:
			c.ctr.badIndex.Add(1)
			ch.markBroken()
			return 0, false, fmt.Errorf("boundary: call %s: send: %w: request head %d, tail %d", spec.Name, ErrBadIndex, head, ch.tail)
		default:
			return 0, false, fmt.Errorf("boundary: call %s: send: %w", spec.Name, err)
		}
		if first {
			sw = c.spin.begin(false)
		}
		if sw.spin() {
			continue
		}
		if err := c.stopped(ctx); err != nil {
			return 0, false, fmt.Errorf("boundary: call %s: send: %w", spec.Name, err)
		}
		ch.restoreReq()
		s := ch.wait.prepare(1)
		if atomic.LoadUint64(ch.reqHeadW) != head {
			ch.wait.cancel()
		} else {
			ch.wait.sleep(s, &c.ctr)
		}
		sw.restart()
	}
}

// sendCancel tells the host that the caller of request id gave up (a
// CallCancel frame), so the host drops the reply if it is still pending
// and frees what it holds for it. It is best effort and never waits: with
// the request ring full or its head rejected, nothing is sent, and the
// late reply, if any, is dropped here as stale (id is abandoned).
func (c *Client) sendCancel(ch *clientChan, id uint64) {
	head, ok := ch.loadReqHead()
	if !ok {
		return
	}
	tail, err := ch.req.Write(head, ch.tail, ring.Header{Call: CallCancel, ID: id}, nil)
	if err != nil && err != ring.ErrFull {
		return
	}
	if tail != ch.tail { // the frame, or padding Write added before it
		ch.tail = tail
		atomic.StoreUint64(ch.reqTailW, tail)
		c.server.wake(waitIdle, &c.ctr)
	}
	if err == nil {
		c.ctr.cancels.Add(1)
	}
}

// catchFault turns a memory fault while touching an unsealed region into
// ErrRegionFault. A file region (Config.Path) cannot be sealed, so a host
// that truncates it makes the next access to the lost pages fault (SIGBUS);
// with debug.SetPanicOnFault set for the duration of the call, the runtime
// panics instead of crashing and this deferred function recovers. Other
// panics are not ours to hide and continue. After a fault the client stays
// failed: every later call returns ErrRegionFault without touching the
// region. Sealed memfd regions cannot shrink, so they skip this guard.
func (c *Client) catchFault(old bool, n *int, err *error) {
	debug.SetPanicOnFault(old)
	r := recover()
	if r == nil {
		return
	}
	fault, ok := r.(interface{ Addr() uintptr })
	if !ok {
		panic(r)
	}
	c.faulted.Store(true)
	c.faultOnce.Do(func() { close(c.faultCh) })
	*n = 0
	*err = fmt.Errorf("boundary: call: %w at %#x", ErrRegionFault, fault.Addr())
}

// stopped returns why the caller should stop waiting, if it should.
func (c *Client) stopped(ctx context.Context) error {
	if c.closed.Load() || c.region.closing.Load() {
		return ErrClosed
	}
	return ctx.Err()
}

// publishHead publishes our response head. It must be called only after
// the payload of every frame before head has been copied out: publishing
// lets the host overwrite those bytes.
func (c *Client) publishHead(ch *clientChan) {
	atomic.StoreUint64(ch.respHeadW, ch.head)
	c.server.wake(waitSpace, &c.ctr)
}

// markBroken asks for the channel to be resynchronised once no call is in
// flight on it.
func (ch *clientChan) markBroken() {
	ch.mu.Lock()
	ch.resync = true
	ch.mu.Unlock()
}

// await waits for w's reply (request id): it selects on the reply, its
// context, the client's close and the channel's reader token; with the
// token it is the reader until its own reply comes or it gives up. If ctx
// ends first the call is abandoned: its late reply is dropped, and a
// cancel frame tells the host. peerAsleep: the request had to wake the
// server, so spinning for the answer is futile.
func (c *Client) await(ctx context.Context, ch *clientChan, w *waiter, id uint64, peerAsleep bool) (int, error) {
	for {
		select {
		case <-w.done:
			return w.n, w.err
		case <-ch.rd:
			mine, err := c.readHolding(ctx, ch, w, id, peerAsleep)
			if mine {
				<-w.done
				return w.n, w.err
			}
			if err != nil {
				return 0, c.giveUp(ch, w, id, err)
			}
		case <-ctx.Done():
			return 0, c.giveUp(ch, w, id, ctx.Err())
		case <-c.done:
			return 0, c.giveUp(ch, w, id, ErrClosed)
		case <-c.faultCh:
			return 0, c.giveUp(ch, w, id, ErrRegionFault)
		}
	}
}

// readHolding is read with ch.rd held, given back even if touching the
// region faults.
func (c *Client) readHolding(ctx context.Context, ch *clientChan, w *waiter, id uint64, peerAsleep bool) (bool, error) {
	defer func() { ch.rd <- struct{}{} }()
	if len(w.done) != 0 { // an earlier reader answered it
		return true, nil
	}
	return c.read(ctx, ch, w, id, peerAsleep)
}

// giveUp abandons w's call with cause, unless a reader already took its
// reply out of the map: then the reply is being delivered (no host
// involved) and is returned instead.
func (c *Client) giveUp(ch *clientChan, w *waiter, id uint64, cause error) error {
	ch.mu.Lock()
	_, waiting := ch.waiters[id]
	if waiting {
		delete(ch.waiters, id)
		ch.abandon(id)
	}
	ch.mu.Unlock()
	if !waiting {
		select {
		case <-w.done:
			return w.err
		case <-c.faultCh: // the reader faulted while handing it over
			w.lost = true // never reused: a reader might still answer it
			return fmt.Errorf("boundary: call %s: await response: %w", w.spec.Name, ErrRegionFault)
		}
	}
	if errors.Is(cause, context.Canceled) || errors.Is(cause, context.DeadlineExceeded) || errors.Is(cause, ErrClosed) {
		select { // best effort: never wait for the send side
		case <-ch.sendTok:
			c.sendCancel(ch, id)
			ch.sendTok <- struct{}{}
		default:
		}
	}
	return fmt.Errorf("boundary: call %s: await response: %w", w.spec.Name, cause)
}

// read is the reader's loop (the caller holds ch.rd): it hands every reply
// it finds to its waiter, until w's own reply is handed over (mine) or w
// should stop waiting (err, its context or the client's close). A frame
// that breaks the ring fails every waiting call of the channel with the
// named error and marks the channel for resynchronisation; a reply with an
// id no call waits for (unknown, duplicate) fails only the reader's own
// call; neither is ever handed to another caller.
func (c *Client) read(ctx context.Context, ch *clientChan, w *waiter, id uint64, peerAsleep bool) (mine bool, err error) {
	sw := c.spin.begin(peerAsleep)
	defer sw.stop()
	for {
		tail, ok := ch.loadRespTail() // read once per step
		f, ferr := ring.Frame{}, ring.ErrIndex
		if ok {
			f, ferr = ch.resp.Next(ch.head, tail, MaxFramePayload)
		}
		switch ferr {
		case nil:
		case ring.ErrEmpty:
			if f.Next != ch.head { // consumed padding
				ch.head = f.Next
				c.publishHead(ch)
			}
			if sw.spin() {
				continue
			}
			if err := c.stopped(ctx); err != nil {
				return false, err
			}
			if len(w.done) != 0 { // answered by an earlier reader
				return true, nil
			}
			ch.restoreResp()
			s := ch.wait.prepare(1)
			if atomic.LoadUint64(ch.respTailW) != tail {
				ch.wait.cancel()
			} else {
				ch.wait.sleep(s, &c.ctr)
			}
			sw.restart()
			continue
		case ring.ErrIndex:
			c.ctr.badIndex.Add(1)
			return c.failAll(ch, w, fmt.Errorf("%w: response head %d, tail %d", ErrBadIndex, ch.head, tail))
		default: // ring.ErrFrame
			// The ring cannot be parsed past this frame: drop everything
			// up to the tail (validated by Next) and fail the calls.
			c.ctr.malformed.Add(1)
			ch.head = tail
			c.publishHead(ch)
			return c.failAll(ch, w, fmt.Errorf("%w at %d", ErrMalformedFrame, ch.head))
		}
		ch.head = f.Next
		ch.mu.Lock()
		to, waiting := ch.waiters[f.ID]
		if waiting {
			delete(ch.waiters, f.ID)
		}
		stale := !waiting && ch.forget(f.ID)
		next := ch.nextID
		ch.mu.Unlock()
		if waiting {
			if f.ID == id {
				sw.done()
			}
			to.n, to.err = c.deliver(ch, &to.spec, f, to.resp)
			c.publishHead(ch) // after deliver copied the payload out
			c.ctr.calls.Add(1)
			to.done <- struct{}{}
			if f.ID == id {
				return true, nil
			}
			continue
		}
		c.publishHead(ch) // nothing copied: the frame is dropped
		if stale {
			c.ctr.stale.Add(1)
			continue
		}
		if f.ID != 0 && f.ID < next {
			c.ctr.duplicateIDs.Add(1)
			return false, fmt.Errorf("%w: %d (waiting for %d)", ErrDuplicateID, f.ID, id)
		}
		c.ctr.unknownIDs.Add(1)
		return false, fmt.Errorf("%w: %d (waiting for %d)", ErrUnknownID, f.ID, id)
	}
}

// failAll fails every call waiting on ch with err (the response ring can no
// longer be trusted) and marks the channel for resynchronisation; w's own
// call is among them.
func (c *Client) failAll(ch *clientChan, w *waiter, err error) (bool, error) {
	ch.mu.Lock()
	ch.resync = true
	var others []*waiter
	for wid, o := range ch.waiters {
		delete(ch.waiters, wid)
		ch.abandon(wid)
		if o != w {
			others = append(others, o)
		}
	}
	ch.mu.Unlock()
	for _, o := range others {
		o.n, o.err = 0, fmt.Errorf("boundary: call %s: await response: %w", o.spec.Name, err)
		o.done <- struct{}{}
	}
	w.n, w.err = 0, fmt.Errorf("boundary: call %s: await response: %w", w.spec.Name, err)
	w.done <- struct{}{}
	return true, nil
}

// deliver checks a response frame for spec's call and copies its payload
// into resp (or decodes the error response). Lengths are checked against
// the declared bound before anything is copied; the error payload is copied
// out into private memory before it is parsed.
func (c *Client) deliver(ch *clientChan, spec *CallSpec, f ring.Frame, resp []byte) (int, error) {
	if f.Call&ErrorFlag != 0 {
		if f.Call&^ErrorFlag != spec.ID {
			c.ctr.callMismatches.Add(1)
			return 0, fmt.Errorf("boundary: call %s: %w: error response for %#x", spec.Name, ErrCallMismatch, f.Call&^ErrorFlag)
		}
		if f.Len > maxErrorPayload {
			c.ctr.oversize.Add(1)
			return 0, fmt.Errorf("boundary: call %s: %w: error payload %d bytes", spec.Name, ErrMalformedError, f.Len)
		}
		b := ch.errBuf[:ch.resp.Payload(f, ch.errBuf[:])]
		if len(b) < 8 || binary.LittleEndian.Uint32(b[4:8]) != uint32(len(b)-8) {
			c.ctr.malformed.Add(1)
			return 0, fmt.Errorf("boundary: call %s: %w: payload %x", spec.Name, ErrMalformedError, b)
		}
		c.ctr.remoteErrors.Add(1)
		return 0, &RemoteError{Call: spec.ID, Code: Code(binary.LittleEndian.Uint32(b[0:4])), Message: string(b[8:])}
	}
	if f.Call != spec.ID {
		c.ctr.callMismatches.Add(1)
		return 0, fmt.Errorf("boundary: call %s: %w: response for %#x", spec.Name, ErrCallMismatch, f.Call)
	}
	if int64(f.Len) > int64(spec.MaxResponse) {
		c.ctr.oversize.Add(1)
		return 0, fmt.Errorf("boundary: call %s: %w: %d bytes, bound %d", spec.Name, ErrResponseTooLarge, f.Len, spec.MaxResponse)
	}
	if int64(f.Len) > int64(len(resp)) {
		return 0, fmt.Errorf("boundary: call %s: %w: need %d bytes, have %d", spec.Name, ErrShortBuffer, f.Len, len(resp))
	}
	return ch.resp.Payload(f, resp), nil
}

// loadReqHead reads the host's request head once and checks it: aligned,
// moved forward since last time, and not past our tail. Only an accepted
// value is remembered, so a bad one fails this step and no later one.
func (ch *clientChan) loadReqHead() (uint64, bool) {
	head := atomic.LoadUint64(ch.reqHeadW)
	if _, err := ch.req.Used(head, ch.tail); err != nil || !ring.Advanced(ch.seenHead, head, ch.tail) {
		return head, false
	}
	ch.seenHead = head
	return head, true
}

// loadRespTail reads the host's response tail once and checks it: aligned,
// moved forward since last time, and at most a ring ahead of our head.
func (ch *clientChan) loadRespTail() (uint64, bool) {
	tail := atomic.LoadUint64(ch.respTailW)
	if _, err := ch.resp.Used(ch.head, tail); err != nil || !ring.Advanced(ch.seenTail, tail, ch.head+ch.resp.Cap()) {
		return tail, false
	}
	ch.seenTail = tail
	return tail, true
}

// abandon records id so its late response is dropped; the oldest record is
// overwritten when the list is full.
func (ch *clientChan) abandon(id uint64) {
	ch.abandoned[ch.nAb%maxAbandoned] = id
	ch.nAb++
}

// forget removes id from the abandoned list and reports whether it was there.
func (ch *clientChan) forget(id uint64) bool {
	if id == 0 {
		return false
	}
	for i, a := range ch.abandoned {
		if a == id {
			ch.abandoned[i] = 0
			return true
		}
	}
	return false
}
