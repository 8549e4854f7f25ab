package boundary

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
	"runtime/debug"
	"sync"
	"sync/atomic"

	"github.com/cloister-dev/cloister/boundary/internal/ring"
)

// Client is the enclave side: it sends requests on the request rings and
// reads responses from the response rings, treating everything the host
// writes as hostile. It is safe for concurrent use: each call takes one of
// the MaxPendingPerChannel slots of a channel (round-robin, first channel
// with a free slot), sends its request and waits for its reply by
// correlation id, so calls in flight on a channel (a network read the host
// holds until data comes, a slow storage write) do not hold the channel
// for one another.
//
// One call at a time reads a channel's response ring (the reader); it
// hands each reply to the call whose id it carries and the other calls
// wait selecting on their reply, their context, Close and a fault. When
// the reader's own reply comes it hands the role to another waiting call,
// if any. A call alone on its channel is its own reader from the start:
// it reads its reply directly, with no goroutine hand-off and no channel
// operation (the latency path stays what it was before replies by id).
//
// Hostile-host contract: capacities and offsets come from the Region
// (fixed at Attach from the expected Config); the host's indices are read
// once per step and checked before use; every frame header is copied out
// before it is validated, and the payload is copied into the caller's
// buffer before the caller looks at it; every length is checked against
// the call's declared bound. A violation fails the affected call with a
// named error (ErrBadIndex, ErrMalformedFrame, ErrUnknownID, ErrDuplicateID,
// ErrCallMismatch, ErrResponseTooLarge, ErrMalformedError), is counted in
// Counters, and later calls proceed normally. A reply is handed only to the
// call whose id it carries: a reply with an id no call waits for fails the
// reader's own call and is never delivered to another.
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

	// blockCap bounds the calls that may block (CallSpec.MayBlock) in
	// flight on one channel: the rest of its slots, and of its response
	// ring's space for replies held by the host, stay for prompt calls.
	blockCap int

	active    atomic.Int64  // calls between begin and end
	idle      chan struct{} // one token: the last call left after Close began
	done      chan struct{} // closed by Close: waiting callers stop
	closeOnce sync.Once
}

// clientChan is one channel's enclave-side state. Everything here is
// private memory except the words the pointers refer to.
//
// Locking: mu guards the request side (tail, seenHead, nextID), the slots
// and their bookkeeping (used, reader, excl, resync, abandoned). The
// response side (head, seenTail, errBuf) belongs to the reader, or to a
// Batch that has the channel exclusively; the role passes under mu. mu is
// held only for non-blocking work, never across a sleep.
type clientChan struct {
	mu       sync.Mutex
	slots    [MaxPendingPerChannel]waiter
	used     uint64  // bitmap of slots in use
	reader   *waiter // the call reading the response ring; nil: none
	excl     bool    // a Batch has the channel to itself
	blocking int     // slots held by calls that may block
	slotWait int     // callers waiting for freed
	freed    chan struct{}

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

	// resync: the host published an index we rejected; once no call is in
	// flight the channel is resynchronised at the host's indices (see
	// Client.resync), so one bad or retracted index fails the calls in
	// flight and does not wedge the channel.
	resync bool
	// resuming: the pending resync is Resume's, not a recovery.
	resuming bool

	abandoned [maxAbandoned]uint64 // ids whose responses will be dropped
	nAb       int

	errBuf [maxErrorPayload]byte
	_      [64]byte // keep channels' hot fields on separate cache lines
}

// waiter is one call's slot on a channel. Its fields are set by the call
// before it sends and read by whichever reader delivers its reply; a reader
// that takes the reply (pending false, under mu) owns n and err until it
// sends wakeAnswered.
type waiter struct {
	id      uint64
	spec    CallSpec
	resp    []byte
	n       int
	err     error
	pending bool       // sent and not yet answered or abandoned (under mu)
	idx     uint8      // its index in slots
	wake    chan uint8 // one message: wakeAnswered or wakeReader
}

// Messages to a waiting call.
const (
	wakeAnswered uint8 = iota + 1 // its reply was delivered (n, err)
	wakeReader                    // it is now the channel's reader
)

// allSlots is the used bitmap of a full channel.
const allSlots = 1<<MaxPendingPerChannel - 1 // MaxPendingPerChannel is at most 64

// NewClient returns the enclave side of r, sending only calls declared in t.
// Every call's largest frames must fit r's rings.
func NewClient(r *Region, t *Table) (*Client, error) {
	if err := t.checkRings(r.cfg); err != nil {
		return nil, fmt.Errorf("boundary: new client: %w", err)
	}
	c := &Client{region: r, table: t, chans: make([]clientChan, len(r.lay.ch)), server: r.waitLine(offServerWait),
		done: make(chan struct{}), idle: make(chan struct{}, 1), faultCh: make(chan struct{}), spin: newSpinner(),
		blockCap: t.blockCap(r.cfg)}
	for i, l := range r.lay.ch {
		ch := &c.chans[i]
		ch.freed = make(chan struct{}, 1)
		for k := range ch.slots {
			ch.slots[k].wake = make(chan uint8, 1)
			ch.slots[k].idx = uint8(k)
		}
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

// Resume makes every channel start, at its first call, at the indices the
// region's previous client left (resync's treatment: alignment checked,
// the client's writes bounded by its own ring), instead of at zero. For a
// client that takes over a region another client used and closed with no
// call in flight: a loader that exec'd the app it decrypted
// (enclave.RunHandoff). Call it before the first call. The first sync is
// not counted in Counters.Resyncs.
func (c *Client) Resume() {
	for i := range c.chans {
		c.chans[i].resync = true
		c.chans[i].resuming = true
	}
}

// Counters returns a snapshot of the client's counters.
func (c *Client) Counters() Counters { return c.ctr.snapshot() }

// Close stops the client: calls in progress return ErrClosed at their next
// check (they are woken if they sleep or wait), new calls fail with
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
		for c.active.Load() != 0 {
			<-c.idle
		}
	})
	return nil
}

// begin is the common entry of Call and Batch: it checks the client and
// ctx and enters the region. On success the caller must call c.leave.
func (c *Client) begin(ctx context.Context) error {
	c.active.Add(1)
	switch {
	case c.closed.Load():
		c.leave()
		return ErrClosed
	case c.faulted.Load():
		c.leave()
		return ErrRegionFault
	}
	if err := ctx.Err(); err != nil {
		c.leave()
		return err
	}
	if err := c.region.enter(); err != nil {
		c.leave()
		return err
	}
	return nil
}

// leave ends what begin started (without the region, which the caller
// leaves first if it entered it).
func (c *Client) leave() {
	if c.active.Add(-1) == 0 && c.closed.Load() {
		select {
		case c.idle <- struct{}{}:
		default:
		}
	}
}

// take claims a slot of ch for a call (exclusive: the whole channel, for
// a Batch) if one is free, resynchronising the channel first if the host
// broke it and no call is in flight. It returns nil if the caller must
// wait. The caller holds ch.mu.
func (c *Client) take(ch *clientChan, exclusive, mayBlock bool) (*waiter, bool, error) {
	if ch.excl || (exclusive && ch.used != 0) || ch.used == allSlots || (mayBlock && ch.blocking >= c.blockCap) {
		return nil, false, nil
	}
	if ch.resync {
		if ch.used != 0 {
			return nil, false, nil // the calls in flight are being failed
		}
		if err := c.resync(ch); err != nil {
			return nil, false, err
		}
	}
	if exclusive {
		ch.excl = true
		return nil, true, nil
	}
	k := bits.TrailingZeros64(^ch.used)
	ch.used |= 1 << k
	if mayBlock {
		ch.blocking++
	}
	return &ch.slots[k], true, nil
}

// acquire returns a channel with a slot the caller now holds (exclusive:
// the whole channel); give it back with c.release. It takes the first
// channel with room starting round-robin, or waits for the starting one.
// It gives up when ctx ends or the client closes.
func (c *Client) acquire(ctx context.Context, exclusive, mayBlock bool) (*clientChan, *waiter, error) {
	n := uint32(len(c.chans))
	start := c.rr.Add(1) % n
	for i := range n {
		ch := &c.chans[(start+i)%n]
		ch.mu.Lock()
		w, ok, err := c.take(ch, exclusive, mayBlock)
		ch.mu.Unlock()
		if ok || err != nil {
			return ch, w, err
		}
	}
	ch := &c.chans[start]
	for {
		ch.mu.Lock()
		w, ok, err := c.take(ch, exclusive, mayBlock)
		if !ok && err == nil {
			ch.slotWait++
		}
		ch.mu.Unlock()
		if ok || err != nil {
			return ch, w, err
		}
		var stop error
		select {
		case <-ch.freed:
		case <-ctx.Done():
			stop = ctx.Err()
		case <-c.done:
			stop = ErrClosed
		}
		ch.mu.Lock()
		ch.slotWait--
		if stop != nil {
			ch.signalFreed() // pass on a token this caller may have consumed
		}
		ch.mu.Unlock()
		if stop != nil {
			return nil, nil, stop
		}
	}
}

// signalFreed tells one caller waiting in acquire to look again. The
// caller holds ch.mu.
func (ch *clientChan) signalFreed() {
	if ch.slotWait > 0 {
		select {
		case ch.freed <- struct{}{}:
		default:
		}
	}
}

// release gives back what acquire took: w's slot, or (w nil) the channel
// a Batch had to itself.
func (c *Client) release(ch *clientChan, w *waiter) {
	ch.mu.Lock()
	if w == nil {
		ch.excl = false
	} else {
		ch.used &^= 1 << w.idx
		if w.spec.MayBlock {
			ch.blocking--
		}
		w.spec, w.resp, w.n, w.err = CallSpec{}, nil, 0, nil
	}
	ch.signalFreed()
	ch.mu.Unlock()
}

// resync re-establishes a channel after the host published an index the
// client rejected: both rings are taken as empty at the host's current
// indices (the request ring at the host's request head, the response ring
// at its response tail), and the client publishes matching indices. Only
// requests and responses of calls that already failed are dropped: a
// channel is resynchronised only when no call is in flight on it (the
// caller holds ch.mu and no slot is used). The host's values must be
// aligned; whatever else they are, the client's own writes stay within its
// ring and the next call's checks apply as usual.
func (c *Client) resync(ch *clientChan) error {
	// Republish our own indices first: if the host's are unusable too (a
	// scribbled word), the host resynchronises at ours and republishes its
	// own, so a later attempt succeeds.
	ch.restoreReq()
	ch.restoreResp()
	c.server.wake(waitIdle, &c.ctr)
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
	if !ch.resuming {
		c.ctr.resyncs.Add(1)
	}
	ch.resync, ch.resuming = false, false
	return nil
}

// restoreReq and restoreResp republish the channel's own indices if the
// shared words no longer hold them (a hostile host may overwrite them).
// Called before sleeping, so a host that stopped scribbling sees consistent
// indices again. restoreReq needs ch.mu (or the channel exclusively),
// restoreResp the reader's role.
func (ch *clientChan) restoreReq() {
	if atomic.LoadUint64(ch.reqTailW) != ch.tail {
		atomic.StoreUint64(ch.reqTailW, ch.tail)
	}
}

// restoreResp: see restoreReq.
func (ch *clientChan) restoreResp() {
	if atomic.LoadUint64(ch.respHeadW) != ch.head {
		atomic.StoreUint64(ch.respHeadW, ch.head)
	}
}

// Call sends one request for call and waits for its response, which is
// copied into resp; it returns the response length. req and resp belong to
// the caller and are not retained (resp is written only while Call runs).
// The call must be declared in the client's Table and req must be within
// its bound. An error response from the host is returned as *RemoteError.
// Call does not allocate unless it fails.
//
// If ctx ends (or the client closes) before the response comes, Call
// returns at once with ctx's error (ErrClosed), tells the host with a
// cancel frame (best effort), and the late response is dropped when it
// arrives.
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
	if err := c.begin(ctx); err != nil {
		return 0, fmt.Errorf("boundary: call %s: %w", spec.Name, err)
	}
	defer c.leave()
	defer c.region.leave()
	ch, w, err := c.acquire(ctx, false, spec.MayBlock)
	if err != nil {
		return 0, fmt.Errorf("boundary: call %s: %w", spec.Name, err)
	}
	defer c.release(ch, w)
	w.spec, w.resp = spec, resp
	reader, woke, err := c.send(ctx, ch, w, req)
	if err != nil {
		return 0, err
	}
	return c.await(ctx, ch, w, reader, woke)
}

// send appends w's request frame and publishes it, registering w as
// pending under the request's id before the tail is published (so its
// reply always finds it). The request tail is published only after the
// frame bytes are written (ring.Write returns). It reports whether w
// became the channel's reader (no other call was reading) and whether the
// server slept and had to be woken.
func (c *Client) send(ctx context.Context, ch *clientChan, w *waiter, req []byte) (reader, woke bool, err error) {
	var sw spinWait
	defer sw.stop()
	for first := true; ; first = false {
		head, sent, reader, err := c.trySend(ch, w, req)
		if err != nil {
			return false, false, err
		}
		if sent {
			return reader, c.server.wake(waitIdle, &c.ctr), nil
		}
		// The ring is full: wait for the server to consume.
		if first {
			sw = c.spin.begin(false)
		}
		if sw.spin() {
			continue
		}
		if err := c.stopped(ctx); err != nil {
			return false, false, fmt.Errorf("boundary: call %s: send: %w", w.spec.Name, err)
		}
		s := ch.wait.prepareShared()
		if atomic.LoadUint64(ch.reqHeadW) != head {
			ch.wait.cancelShared()
		} else {
			ch.wait.sleepShared(s, &c.ctr)
		}
		sw.restart()
	}
}

// trySend is one attempt of send, under ch.mu (released even if touching
// the region faults). sent false and no error: the ring is full at head.
func (c *Client) trySend(ch *clientChan, w *waiter, req []byte) (head uint64, sent, reader bool, err error) {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	if ch.resync {
		return 0, false, false, fmt.Errorf("boundary: call %s: send: %w: channel being resynchronised", w.spec.Name, ErrBadIndex)
	}
	head, ok := ch.loadReqHead() // read once per step
	if !ok {
		c.ctr.badIndex.Add(1)
		ch.resync = true
		return 0, false, false, fmt.Errorf("boundary: call %s: send: %w: request head %d, tail %d", w.spec.Name, ErrBadIndex, head, ch.tail)
	}
	tail, err := ch.req.Write(head, ch.tail, ring.Header{Call: w.spec.ID, ID: ch.nextID}, req)
	switch err {
	case nil:
		w.id = ch.nextID
		ch.nextID++
		w.pending = true
		if ch.reader == nil {
			ch.reader, reader = w, true
		}
		ch.tail = tail
		atomic.StoreUint64(ch.reqTailW, tail)
		return head, true, reader, nil
	case ring.ErrFull:
		// Publish any padding Write added so the server can consume it.
		if tail != ch.tail {
			ch.tail = tail
			atomic.StoreUint64(ch.reqTailW, tail)
			c.server.wake(waitIdle, &c.ctr)
		}
		ch.restoreReq()
		return head, false, false, nil
	case ring.ErrIndex:
		c.ctr.badIndex.Add(1)
		ch.resync = true
		return 0, false, false, fmt.Errorf("boundary: call %s: send: %w: request head %d, tail %d", w.spec.Name, ErrBadIndex, head, ch.tail)
	}
	return 0, false, false, fmt.Errorf("boundary: call %s: send: %w", w.spec.Name, err)
}

// sendCancel tells the host that the caller of request id gave up (a
// CallCancel frame), so the host drops the reply if it is still pending
// and frees what it holds for it. It is best effort and never waits: with
// the request ring full or its head rejected, nothing is sent, and the
// late reply, if any, is dropped here as stale (id is abandoned). The
// caller holds ch.mu (or the channel exclusively).
func (c *Client) sendCancel(ch *clientChan, id uint64) {
	if ch.resync {
		return
	}
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

// await waits for w's reply. As the channel's reader it reads the response
// ring itself; otherwise it selects on its message (its reply, or the
// reader's role handed to it), its context, the client's close and a
// fault. If it stops waiting first, the call is abandoned: the late reply
// is dropped, and a cancel frame tells the host. peerAsleep: the request
// had to wake the server, so spinning for the answer is futile.
func (c *Client) await(ctx context.Context, ch *clientChan, w *waiter, reader, peerAsleep bool) (int, error) {
	for {
		if reader {
			if err := c.read(ctx, ch, w, peerAsleep); err != nil {
				return c.giveUp(ch, w, err)
			}
			return w.n, w.err
		}
		select {
		case m := <-w.wake:
			if m == wakeAnswered {
				return w.n, w.err
			}
			reader, peerAsleep = true, false
		case <-ctx.Done():
			return c.giveUp(ch, w, ctx.Err())
		case <-c.done:
			return c.giveUp(ch, w, ErrClosed)
		case <-c.faultCh:
			return c.giveUp(ch, w, ErrRegionFault)
		}
	}
}

// giveUp abandons w's call with cause, unless a reader already took its
// reply: then the reply is being delivered (no host involved) and is
// returned instead. If w held the reader's role, it passes to another
// waiting call.
func (c *Client) giveUp(ch *clientChan, w *waiter, cause error) (int, error) {
	ch.mu.Lock()
	if w.pending {
		w.pending = false
		ch.abandon(w.id)
		if ch.reader == w {
			select { // a role handed over but not yet taken up
			case <-w.wake:
			default:
			}
			ch.handOff()
		}
		if errors.Is(cause, context.Canceled) || errors.Is(cause, context.DeadlineExceeded) || errors.Is(cause, ErrClosed) {
			c.sendCancel(ch, w.id)
		}
		ch.mu.Unlock()
		return 0, fmt.Errorf("boundary: call %s: await response: %w", w.spec.Name, cause)
	}
	ch.mu.Unlock()
	select {
	case <-w.wake: // wakeAnswered: the reader that took it finished
		return w.n, w.err
	case <-c.faultCh: // the reader faulted while handing it over
		return 0, fmt.Errorf("boundary: call %s: await response: %w", w.spec.Name, ErrRegionFault)
	}
}

// handOff gives the reader's role to a waiting call, or to nobody (the
// next call to send takes it). The caller holds ch.mu and was the reader.
func (ch *clientChan) handOff() {
	ch.reader = nil
	for u := ch.used; u != 0; u &= u - 1 {
		o := &ch.slots[bits.TrailingZeros64(u)]
		if o.pending {
			ch.reader = o
			o.wake <- wakeReader // never blocks: a pending call has no message
			return
		}
	}
}

// read is the reader's loop: it hands every reply it finds to its waiter
// until w's own reply has been delivered into w (nil), or w should stop
// waiting (its context or the client's close: the error). A frame that
// breaks the ring fails every waiting call of the channel with the named
// error and marks the channel for resynchronisation; a reply with an id no
// call waits for (unknown, duplicate) fails only the reader's own call;
// neither is ever handed to another caller.
func (c *Client) read(ctx context.Context, ch *clientChan, w *waiter, peerAsleep bool) error {
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
				return err
			}
			ch.restoreResp()
			s := ch.wait.prepareShared()
			if atomic.LoadUint64(ch.respTailW) != tail {
				ch.wait.cancelShared()
			} else {
				ch.wait.sleepShared(s, &c.ctr)
			}
			sw.restart()
			continue
		case ring.ErrIndex:
			c.ctr.badIndex.Add(1)
			c.failAll(ch, w, fmt.Errorf("%w: response head %d, tail %d", ErrBadIndex, ch.head, tail))
			return nil
		default: // ring.ErrFrame
			// The ring cannot be parsed past this frame: drop everything
			// up to the tail (validated by Next) and fail the calls.
			c.ctr.malformed.Add(1)
			ch.head = tail
			c.publishHead(ch)
			c.failAll(ch, w, fmt.Errorf("%w at %d", ErrMalformedFrame, ch.head))
			return nil
		}
		ch.head = f.Next
		if f.ID == w.id { // the fast path: our own reply, no lookup
			sw.done()
			w.n, w.err = c.deliver(ch, &w.spec, f, w.resp)
			c.publishHead(ch) // after deliver copied the payload out
			c.ctr.calls.Add(1)
			ch.mu.Lock()
			w.pending = false
			ch.handOff()
			ch.mu.Unlock()
			return nil
		}
		ch.mu.Lock()
		to := ch.pendingByID(f.ID)
		if to != nil {
			to.pending = false // ours to deliver now
		}
		stale := to == nil && ch.forget(f.ID)
		next := ch.nextID
		ch.mu.Unlock()
		if to != nil {
			to.n, to.err = c.deliver(ch, &to.spec, f, to.resp)
			c.publishHead(ch) // after deliver copied the payload out
			c.ctr.calls.Add(1)
			to.wake <- wakeAnswered
			continue
		}
		c.publishHead(ch) // nothing copied: the frame is dropped
		if stale {
			c.ctr.stale.Add(1)
			continue
		}
		if f.ID != 0 && f.ID < next {
			c.ctr.duplicateIDs.Add(1)
			return fmt.Errorf("%w: %d (waiting for %d)", ErrDuplicateID, f.ID, w.id)
		}
		c.ctr.unknownIDs.Add(1)
		return fmt.Errorf("%w: %d (waiting for %d)", ErrUnknownID, f.ID, w.id)
	}
}

// pendingByID returns the pending call with id, or nil. The caller holds
// ch.mu.
func (ch *clientChan) pendingByID(id uint64) *waiter {
	for u := ch.used; u != 0; u &= u - 1 {
		o := &ch.slots[bits.TrailingZeros64(u)]
		if o.pending && o.id == id {
			return o
		}
	}
	return nil
}

// failAll fails every call waiting on ch, the reader's own included, with
// err (the response ring can no longer be trusted), and marks the channel
// for resynchronisation once they have all left. The caller is the reader
// r (nil: a Batch, which has no waiters).
func (c *Client) failAll(ch *clientChan, r *waiter, err error) {
	ch.mu.Lock()
	ch.resync = true
	ch.reader = nil
	var failed []*waiter
	for u := ch.used; u != 0; u &= u - 1 {
		o := &ch.slots[bits.TrailingZeros64(u)]
		if o.pending {
			o.pending = false
			ch.abandon(o.id)
			failed = append(failed, o)
		}
	}
	ch.mu.Unlock()
	for _, o := range failed {
		o.n, o.err = 0, fmt.Errorf("boundary: call %s: await response: %w", o.spec.Name, err)
		if o != r { // the reader reads its own result without a message
			o.wake <- wakeAnswered
		}
	}
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
