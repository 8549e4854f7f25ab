package boundary

import (
	"context"
	"encoding/binary"
	"fmt"
	"runtime/debug"
	"sync"
	"sync/atomic"

	"github.com/cloister-dev/cloister/boundary/internal/ring"
)

// Client is the enclave side: it sends requests on the request rings and
// reads responses from the response rings, treating everything the host
// writes as hostile. It is safe for concurrent use: each call takes one
// channel (round-robin, first free), so up to Config.Channels calls proceed
// at once with no lock shared between channels.
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
	ctr     counters
	spin    *spinner // one spinner among all the client's waiters

	done      chan struct{} // closed by Close: queued callers stop waiting
	closeOnce sync.Once
}

// clientChan is one channel's enclave-side state. Everything here is
// private memory except the words the pointers refer to.
type clientChan struct {
	// sem holds one token while the channel is free; a call takes it for
	// its whole Call or Batch. A channel (not a mutex) so that a queued
	// caller can give up when its context ends or the client closes.
	sem chan struct{}

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
	// resuming: the pending resync is Resume's, not a recovery.
	resuming bool

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
	c := &Client{region: r, table: t, chans: make([]clientChan, len(r.lay.ch)), server: r.waitLine(offServerWait), done: make(chan struct{}), spin: newSpinner()}
	for i, l := range r.lay.ch {
		ch := &c.chans[i]
		ch.sem = make(chan struct{}, 1)
		ch.sem <- struct{}{}
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
		// Take every channel and never give it back.
		for i := range c.chans {
			<-c.chans[i].sem
		}
	})
	return nil
}

// acquire returns a channel the caller now holds (release it with
// ch.release): the first free one starting round-robin, or, if all are
// busy, the starting one once it is free. It gives up when ctx ends or the
// client closes. It resynchronises the channel first if the host broke it.
func (c *Client) acquire(ctx context.Context) (*clientChan, error) {
	n := uint32(len(c.chans))
	start := c.rr.Add(1) % n
	var ch *clientChan
	for i := range n {
		cand := &c.chans[(start+i)%n]
		select {
		case <-cand.sem:
			ch = cand
		default:
			continue
		}
		break
	}
	if ch == nil {
		ch = &c.chans[start]
		select {
		case <-ch.sem:
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-c.done:
			return nil, ErrClosed
		}
	}
	// Re-check under the channel: Close may have run while we queued.
	if c.closed.Load() {
		ch.release()
		return nil, ErrClosed
	}
	if ch.resync {
		if err := c.resync(ch); err != nil {
			ch.release()
			return nil, err
		}
	}
	return ch, nil
}

// release gives the channel back.
func (ch *clientChan) release() { ch.sem <- struct{}{} }

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
	if !ch.resuming {
		c.ctr.resyncs.Add(1)
	}
	ch.resync, ch.resuming = false, false
	return nil
}

// restore republishes the channel's own indices if the shared words no
// longer hold them (a hostile host may overwrite them). Called before
// sleeping, so a host that stopped scribbling sees consistent indices again.
func (ch *clientChan) restore() {
	if atomic.LoadUint64(ch.reqTailW) != ch.tail {
		atomic.StoreUint64(ch.reqTailW, ch.tail)
	}
	if atomic.LoadUint64(ch.respHeadW) != ch.head {
		atomic.StoreUint64(ch.respHeadW, ch.head)
	}
}

// begin is the common entry of Call and Batch: it checks the client and
// ctx, enters the region and takes a channel. On success the caller must
// call c.end(ch).
func (c *Client) begin(ctx context.Context) (*clientChan, error) {
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
	ch, err := c.acquire(ctx)
	if err != nil {
		c.region.leave()
		return nil, err
	}
	return ch, nil
}

// end releases what begin took.
func (c *Client) end(ch *clientChan) {
	ch.release()
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
	ch, err := c.begin(ctx)
	if err != nil {
		return 0, fmt.Errorf("boundary: call %s: %w", spec.Name, err)
	}
	defer c.end(ch)
	id, woke, err := c.send(ctx, ch, &spec, req)
	if err != nil {
		return 0, err
	}
	return c.await(ctx, ch, &spec, id, woke, resp)
}

// send appends one request frame and publishes it. The request tail is
// published only after the frame bytes are written (ring.Write returns).
// It reports whether the server slept and had to be woken.
func (c *Client) send(ctx context.Context, ch *clientChan, spec *CallSpec, req []byte) (uint64, bool, error) {
	id := ch.nextID
	var sw spinWait
	defer sw.stop()
	for first := true; ; first = false {
		head, ok := ch.loadReqHead() // read once per step
		if !ok {
			c.ctr.badIndex.Add(1)
			ch.resync = true
			return 0, false, fmt.Errorf("boundary: call %s: send: %w: request head %d, tail %d", spec.Name, ErrBadIndex, head, ch.tail)
		}
		tail, err := ch.req.Write(head, ch.tail, ring.Header{Call: spec.ID, ID: id}, req)
		switch err {
		case nil:
			ch.nextID++
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
			ch.resync = true
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
		ch.restore()
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

// await reads responses on ch until the one for id arrives or the call
// fails. Frames for abandoned ids are dropped on the way. peerAsleep: the
// request had to wake the server, so spinning for the answer is futile.
func (c *Client) await(ctx context.Context, ch *clientChan, spec *CallSpec, id uint64, peerAsleep bool, resp []byte) (int, error) {
	sw := c.spin.begin(peerAsleep)
	defer sw.stop()
	for {
		tail, ok := ch.loadRespTail() // read once per step
		f, err := ring.Frame{}, ring.ErrIndex
		if ok {
			f, err = ch.resp.Next(ch.head, tail, MaxFramePayload)
		}
		switch err {
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
				ch.abandon(id)
				c.sendCancel(ch, id)
				return 0, fmt.Errorf("boundary: call %s: await response: %w", spec.Name, err)
			}
			ch.restore()
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
			ch.abandon(id)
			ch.resync = true
			return 0, fmt.Errorf("boundary: call %s: await response: %w: response head %d, tail %d", spec.Name, ErrBadIndex, ch.head, tail)
		default: // ring.ErrFrame
			// The ring cannot be parsed past this frame: drop everything
			// up to the tail (validated by Next) and fail this call.
			c.ctr.malformed.Add(1)
			ch.head = tail
			c.publishHead(ch)
			ch.abandon(id)
			return 0, fmt.Errorf("boundary: call %s: await response: %w at %d", spec.Name, ErrMalformedFrame, ch.head)
		}
		ch.head = f.Next
		if f.ID == id {
			sw.done()
			n, err := c.deliver(ch, spec, f, resp)
			c.publishHead(ch) // after deliver copied the payload out
			c.ctr.calls.Add(1)
			return n, err
		}
		c.publishHead(ch) // nothing copied: the frame is dropped
		if ch.forget(f.ID) {
			c.ctr.stale.Add(1)
			continue
		}
		ch.abandon(id)
		if f.ID != 0 && f.ID < ch.nextID {
			c.ctr.duplicateIDs.Add(1)
			return 0, fmt.Errorf("boundary: call %s: await response: %w: %d (waiting for %d)", spec.Name, ErrDuplicateID, f.ID, id)
		}
		c.ctr.unknownIDs.Add(1)
		return 0, fmt.Errorf("boundary: call %s: await response: %w: %d (waiting for %d)", spec.Name, ErrUnknownID, f.ID, id)
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
