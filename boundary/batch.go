package boundary

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"sync/atomic"

	"github.com/cloister-dev/cloister/boundary/internal/ring"
)

// BatchCall is one call of a Batch: the caller fills Call, Req and Resp;
// Batch sets N (the response length) and Err.
type BatchCall struct {
	Call uint32
	Req  []byte
	Resp []byte
	N    int
	Err  error

	state uint8 // batchUnsent, batchPending or batchDone
}

const (
	batchUnsent uint8 = iota
	batchPending
	batchDone
)

// Batch sends many calls on one channel without waiting for each response:
// requests are written as ring space allows and published together, and
// responses, matched by correlation id, may come back in any order. It is
// the throughput path (many calls in flight, one wake-up for many frames);
// Call is the latency path. Batch does not allocate unless a call fails.
//
// Each call's outcome is in its N and Err. Batch itself returns an error
// only when it stopped early (ctx ended, the client closed, or the host
// broke the ring's indices or framing); then every call not yet answered
// has Err set to that error. A response with an id already answered in
// this batch is dropped and counted as a duplicate; one with an id never
// issued is dropped and counted as unknown.
func (c *Client) Batch(ctx context.Context, calls []BatchCall) (err error) {
	if len(calls) == 0 {
		return nil
	}
	if !c.region.sealed {
		var n int
		defer func() {
			if err != nil && errors.Is(err, ErrRegionFault) {
				for i := range calls {
					if calls[i].state != batchDone {
						calls[i].Err, calls[i].state = err, batchDone
					}
				}
			}
		}()
		defer c.catchFault(debug.SetPanicOnFault(true), &n, &err)
	}
	fail := func(err error) error {
		err = fmt.Errorf("boundary: batch: %w", err)
		for i := range calls {
			calls[i].N, calls[i].Err, calls[i].state = 0, err, batchDone
		}
		return err
	}
	if err := c.begin(ctx); err != nil {
		return fail(err)
	}
	defer c.leave()
	defer c.region.leave()
	// The batch has a channel to itself (no call in flight on it), so it
	// uses the request and response sides without ch.mu.
	ch, _, err := c.acquire(ctx, true, false)
	if err != nil {
		return fail(err)
	}
	defer c.release(ch, nil)

	// Ids base .. base+len-1 are reserved for this batch, one per index, so
	// a response's id maps to its call without a table.
	base := ch.nextID
	ch.nextID += uint64(len(calls))
	left := 0
	for i := range calls {
		bc := &calls[i]
		bc.N, bc.Err, bc.state = 0, nil, batchUnsent
		spec, ok := c.table.byID[bc.Call]
		switch {
		case !ok:
			bc.Err, bc.state = fmt.Errorf("boundary: batch call %#x: %w", bc.Call, ErrUnknownCall), batchDone
		case len(bc.Req) > spec.MaxRequest:
			bc.Err, bc.state = fmt.Errorf("boundary: batch call %s: %w: %d bytes, bound %d", spec.Name, ErrRequestTooLarge, len(bc.Req), spec.MaxRequest), batchDone
		default:
			left++
		}
	}

	next := 0            // next index to send
	var delivered uint64 // answers taken in the current drain, for the counter
	sw := c.spin.begin(false)
	defer sw.stop()
	peerAsleep := false
	for left > 0 {
		progress := false

		// Send as many requests as fit, then publish the tail once.
		head, ok := ch.loadReqHead() // once per step
		if !ok {
			c.ctr.badIndex.Add(1)
			ch.resync = true
			return c.failBatch(ch, calls, base, fmt.Errorf("boundary: batch: send: %w: request head %d, tail %d", ErrBadIndex, head, ch.tail))
		}
		sent := false
		for ; next < len(calls); next++ {
			bc := &calls[next]
			if bc.state != batchUnsent {
				continue
			}
			tail, err := ch.req.Write(head, ch.tail, ring.Header{Call: bc.Call, ID: base + uint64(next)}, bc.Req)
			if err == ring.ErrFull {
				if tail != ch.tail { // padding written: publish it below
					ch.tail = tail
					sent = true
				}
				break
			}
			if err != nil {
				if err == ring.ErrIndex {
					c.ctr.badIndex.Add(1)
					ch.resync = true
					err = ErrBadIndex
				}
				return c.failBatch(ch, calls, base, fmt.Errorf("boundary: batch: send: %w", err))
			}
			ch.tail = tail
			bc.state = batchPending
			sent = true
		}
		if sent {
			atomic.StoreUint64(ch.reqTailW, ch.tail) // after the frames are written
			peerAsleep = c.server.wake(waitIdle, &c.ctr)
			progress = true
		}

		// Receive every ready response, then publish the head once.
		tail, ok := ch.loadRespTail() // once per step
		oldHead := ch.head
		for left > 0 {
			f, err := ring.Frame{}, ring.ErrIndex
			if ok {
				f, err = ch.resp.Next(ch.head, tail, MaxFramePayload)
			}
			if err == ring.ErrEmpty {
				ch.head = f.Next
				break
			}
			if err == ring.ErrIndex {
				c.ctr.badIndex.Add(1)
				ch.resync = true
				c.ctr.calls.Add(delivered)
				return c.failBatch(ch, calls, base, fmt.Errorf("boundary: batch: %w: response head %d, tail %d", ErrBadIndex, ch.head, tail))
			}
			if err != nil {
				c.ctr.malformed.Add(1)
				c.ctr.calls.Add(delivered)
				ch.head = tail
				c.publishHead(ch)
				return c.failBatch(ch, calls, base, fmt.Errorf("boundary: batch: %w", ErrMalformedFrame))
			}
			ch.head = f.Next
			idx := f.ID - base // wraps to a huge value for ids below base
			switch {
			case idx < uint64(len(calls)) && calls[idx].state == batchPending:
				bc := &calls[idx]
				spec := c.table.byID[bc.Call]
				bc.N, bc.Err = c.deliver(ch, &spec, f, bc.Resp)
				bc.state = batchDone
				delivered++
				left--
			case idx < uint64(len(calls)):
				c.ctr.duplicateIDs.Add(1)
			case ch.forget(f.ID):
				c.ctr.stale.Add(1)
			case f.ID != 0 && f.ID < base:
				c.ctr.duplicateIDs.Add(1)
			default:
				c.ctr.unknownIDs.Add(1)
			}
		}
		if ch.head != oldHead {
			c.publishHead(ch) // after every payload above was copied out
		}
		if delivered > 0 {
			c.ctr.calls.Add(delivered) // once per drain, not per call
			delivered = 0
			progress = true
		}

		if progress {
			sw.done()
			sw = c.spin.begin(peerAsleep)
			continue
		}
		// Frames dropped (junk, stale) are not progress: a host that
		// streams them must not keep the batch from noticing its
		// deadline or Close.
		if ch.head != oldHead {
			if err := c.stopped(ctx); err != nil {
				return c.failBatch(ch, calls, base, fmt.Errorf("boundary: batch: %w", err))
			}
		}
		if sw.spin() {
			continue
		}
		if err := c.stopped(ctx); err != nil {
			return c.failBatch(ch, calls, base, fmt.Errorf("boundary: batch: %w", err))
		}
		ch.restoreReq()
		ch.restoreResp()
		s := ch.wait.prepareShared()
		if atomic.LoadUint64(ch.respTailW) != tail || atomic.LoadUint64(ch.reqHeadW) != head {
			ch.wait.cancelShared()
		} else {
			ch.wait.sleepShared(s, &c.ctr)
		}
		sw.restart()
	}
	return nil
}

// failBatch ends a batch early: pending calls are abandoned (their late
// responses will be dropped) and every unanswered call gets err.
func (c *Client) failBatch(ch *clientChan, calls []BatchCall, base uint64, err error) error {
	for i := range calls {
		bc := &calls[i]
		if bc.state == batchPending {
			ch.abandon(base + uint64(i))
		}
		if bc.state != batchDone {
			bc.Err, bc.state = err, batchDone
		}
	}
	return err
}
