package boundary

import (
	"context"
	"encoding/binary"
	"fmt"
	"sync/atomic"

	"github.com/cloister-dev/cloister/boundary/internal/ring"
)

// Handler serves one request on the host side. req is a private copy of the
// request payload and resp a private buffer of the call's declared
// MaxResponse; the handler writes its response into resp and returns its
// length, or returns an error, which is sent to the enclave as an error
// response with the error's text truncated to MaxErrorMessage, and a typed
// code: CodeWouldBlock or CodeNotFound if the error wraps ErrWouldBlock or
// ErrNotFound, CodeHandler otherwise.
// Neither slice may be retained after the handler returns.
//
// Handlers run on the Serve goroutine, one at a time, so a handler that
// blocks delays every channel; host services with blocking operations
// (accept, read) must answer from their own state without blocking.
type Handler func(call uint32, req []byte, resp []byte) (n int, err error)

// Server is the host side: it reads requests from every channel, serves
// the calls its Table declares through its Handler, and writes responses.
// Calls outside the Table, and requests beyond their call's bound, get an
// error response and are counted. The server also validates what the
// enclave writes (indices, frame headers): a broken or malicious enclave
// must not crash the host either.
//
// A Server is driven by one goroutine at a time: Serve, or Poll in tests.
type Server struct {
	region *Region
	table  *Table
	h      Handler
	chans  []serverChan
	wait   waitLine

	reqBuf  []byte // private copy of one request payload
	respBuf []byte // handler output / error payload

	closed atomic.Bool
	ctr    counters
	spin   *spinner

	deferFn DeferFunc   // nil: every request is answered by the Handler
	done    completions // deferred replies waiting to be written
}

// serverChan is one channel's host-side state.
type serverChan struct {
	req, resp ring.Ring
	reqTailW  *uint64 // written by the enclave
	reqHeadW  *uint64 // published by us
	respTailW *uint64 // published by us
	respHeadW *uint64 // written by the enclave
	wait      waitLine

	head     uint64 // our request head
	tail     uint64 // our response tail
	seenTail uint64 // request tail last read from the enclave and accepted
	seenHead uint64 // response head last read from the enclave and accepted
	rawTail  uint64 // request tail as last read, accepted or not
	rawHead  uint64 // response head as last read, accepted or not
	bad      bool   // the raw pair was rejected (counted once, not per poll)

	pending  int                      // deferred requests not yet answered
	reserved uint64                   // response ring bytes held for them (see reservation)
	waiting  map[uint64]*pendingReply // the pending requests by id, for CallCancel
}

// NewServer returns the host side of r, serving the calls declared in t
// with h. Every call's largest frames must fit r's rings.
func NewServer(r *Region, t *Table, h Handler) (*Server, error) {
	if h == nil {
		return nil, fmt.Errorf("boundary: new server: %w: nil handler", ErrConfig)
	}
	if err := t.checkRings(r.cfg); err != nil {
		return nil, fmt.Errorf("boundary: new server: %w", err)
	}
	s := &Server{
		region:  r,
		table:   t,
		h:       h,
		chans:   make([]serverChan, len(r.lay.ch)),
		wait:    r.waitLine(offServerWait),
		reqBuf:  make([]byte, t.maxReq),
		respBuf: make([]byte, max(t.maxResp, maxErrorPayload)),
		spin:    newSpinner(),
	}
	for i, l := range r.lay.ch {
		ch := &s.chans[i]
		var err error
		if ch.req, err = ring.New(r.mem[l.reqData : l.reqData+r.lay.reqSize]); err != nil {
			return nil, fmt.Errorf("boundary: new server: %w", err)
		}
		if ch.resp, err = ring.New(r.mem[l.respData : l.respData+r.lay.respSize]); err != nil {
			return nil, fmt.Errorf("boundary: new server: %w", err)
		}
		ch.reqTailW = r.u64(l.base + chReqTail)
		ch.reqHeadW = r.u64(l.base + chReqHead)
		ch.respTailW = r.u64(l.base + chRespTail)
		ch.respHeadW = r.u64(l.base + chRespHead)
		ch.wait = r.waitLine(l.base + chWait)
	}
	return s, nil
}

// Counters returns a snapshot of the server's counters.
func (s *Server) Counters() Counters { return s.ctr.snapshot() }

// Close makes Serve return (waking it if it sleeps). It does not wait.
func (s *Server) Close() error {
	s.closed.Store(true)
	atomic.AddUint32(s.wait.seq, 1)
	futexWakeAll(s.wait.seq)
	return nil
}

// Serve serves requests until ctx ends or Close is called, and returns
// ctx's error or ErrClosed. Each wake-up drains every ready request of
// every channel (a batch), then publishes once per channel.
func (s *Server) Serve(ctx context.Context) error {
	if err := s.region.enter(); err != nil {
		return fmt.Errorf("boundary: serve: %w", err)
	}
	defer s.region.leave()
	sw := s.spin.begin(false)
	defer sw.stop()
	for {
		if s.closed.Load() || s.region.closing.Load() {
			return fmt.Errorf("boundary: serve: %w", ErrClosed)
		}
		n, stalled, _ := s.poll()
		if n > 0 {
			// Spin for the next request even if the client had to be
			// woken for its answer: were both sides to sleep at once
			// whenever the other slept, one descheduling would latch the
			// pair into a futex wake per message for good. The server's
			// spin is bounded (spinMax, and cut short when descheduled).
			sw.done()
			sw = s.spin.begin(false)
			continue
		}
		if sw.spin() {
			continue
		}
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("boundary: serve: %w", err)
		}
		flag := uint32(waitIdle)
		if stalled {
			flag = waitSpace
		}
		s.restore()
		seq := s.wait.prepare(flag)
		if s.ready() || s.closed.Load() || s.region.closing.Load() {
			s.wait.cancel()
			sw = s.spin.begin(false)
			continue
		}
		s.wait.sleep(seq, &s.ctr)
		// Spin again only if the sleep ended with work to do: an idle
		// server that wakes at the end of each time slice goes straight
		// back to sleep instead of spinning (which cost ~12% of a core
		// while idle). Found work starts a new spin above.
		sw = spinWait{over: true}
	}
}

// ready reports whether any channel has a new request or freed response
// space since the last poll. It is the sleeper's re-check.
func (s *Server) ready() bool {
	for i := range s.chans {
		ch := &s.chans[i]
		// Compare with the raw values of the last poll, not with our head:
		// a request the last poll could not take (no response space, bad
		// indices) must not keep the server awake; only a change by the
		// enclave can make it servable.
		if atomic.LoadUint64(ch.reqTailW) != ch.rawTail || atomic.LoadUint64(ch.respHeadW) != ch.rawHead {
			return true
		}
	}
	return s.done.n.Load() != 0
}

// Poll makes one pass over all channels, serving every ready request (up
// to a per-channel batch bound), and returns how many it served. It never
// blocks (other than in the Handler). For tests and custom loops; do not
// call it concurrently with Serve.
func (s *Server) Poll() int {
	if s.region.enter() != nil {
		return 0
	}
	defer s.region.leave()
	n, _, _ := s.poll()
	return n
}

// restore republishes the server's own indices where the shared words no
// longer hold them (a hostile enclave, or anything else with the mapping,
// may overwrite them). Called before sleeping, so that an enclave waiting
// on a scribbled index sees the real one again.
func (s *Server) restore() {
	for i := range s.chans {
		ch := &s.chans[i]
		moved := false
		if atomic.LoadUint64(ch.reqHeadW) != ch.head {
			atomic.StoreUint64(ch.reqHeadW, ch.head)
			moved = true
		}
		if atomic.LoadUint64(ch.respTailW) != ch.tail {
			atomic.StoreUint64(ch.respTailW, ch.tail)
			moved = true
		}
		if moved {
			ch.wait.wake(1, &s.ctr)
		}
	}
}

// poll is Poll, also reporting whether some channel stalled on a full
// response ring and whether a sleeping client had to be woken.
func (s *Server) poll() (served int, stalled, woke bool) {
	served, woke = s.writeCompletions()
	for i := range s.chans {
		n, st, w := s.pollChan(&s.chans[i])
		served += n
		stalled = stalled || st
		woke = woke || w
	}
	return served, stalled, woke
}

// pollChan serves the ready requests of one channel. Ordering: a request
// is consumed (our head moves past it) only once its response is written;
// the request head is published only after the request payloads were
// copied out, and the response tail only after the response frames were
// written; the enclave is woken after both.
func (s *Server) pollChan(ch *serverChan) (served int, stalled, woke bool) {
	// Each index is read once per step and must only move forward, within
	// the capacity; Next and Reserve check the pairs again.
	reqTail := atomic.LoadUint64(ch.reqTailW)
	respHead := atomic.LoadUint64(ch.respHeadW)
	if ch.bad && reqTail == ch.rawTail && respHead == ch.rawHead {
		return 0, false, false // the same bad pair: already counted
	}
	ch.rawTail, ch.rawHead = reqTail, respHead
	_, errReq := ch.req.Used(ch.head, reqTail)
	_, errResp := ch.resp.Used(respHead, ch.tail)
	ch.bad = errReq != nil || errResp != nil ||
		!ring.Advanced(ch.seenTail, reqTail, ch.head+ch.req.Cap()) || !ring.Advanced(ch.seenHead, respHead, ch.tail)
	if ch.bad {
		s.ctr.badIndex.Add(1)
		if (reqTail|respHead)&(ring.Align-1) == 0 {
			// Resynchronise at the enclave's indices: both rings are
			// taken as empty there (what was in them is dropped), as the
			// client does at the host's after a rejected index. Nothing
			// is read or written beyond our own view of the rings.
			ch.head, ch.seenTail = reqTail, reqTail
			ch.tail, ch.seenHead = respHead, respHead
			atomic.StoreUint64(ch.reqHeadW, ch.head)
			atomic.StoreUint64(ch.respTailW, ch.tail)
			ch.wait.wake(1, &s.ctr)
			s.ctr.resyncs.Add(1)
			ch.bad = false
		}
		return 0, false, false
	}
	ch.seenTail, ch.seenHead = reqTail, respHead
	oldHead, oldTail := ch.head, ch.tail
	for served < maxBatchPerChannel {
		f, err := ch.req.Next(ch.head, reqTail, MaxFramePayload)
		if err == ring.ErrEmpty {
			ch.head = f.Next // past any padding
			break
		}
		if err == ring.ErrIndex {
			s.ctr.badIndex.Add(1)
			ch.bad = true
			break
		}
		if err != nil { // ring.ErrFrame: resynchronise at the tail
			s.ctr.malformed.Add(1)
			ch.head = reqTail
			break
		}
		if f.Call == CallCancel {
			// A control frame: no response, so no space to reserve.
			if f.Len != 0 {
				s.ctr.malformed.Add(1)
			} else {
				s.cancel(ch, f.ID)
			}
			ch.head = f.Next
			continue
		}
		spec, known := s.table.byID[f.Call]
		need := maxErrorPayload
		if known {
			need = max(need, spec.MaxResponse)
		}
		if ch.pending >= MaxPendingPerChannel {
			stalled = true // a reply frees a slot and wakes us
			break
		}
		// Make room for the worst-case response before consuming the
		// request, so a response never has to wait, counting the space
		// held for pending replies as used (Reserve may write padding;
		// the moved tail is published below either way).
		if ch.tail-(respHead-ch.reserved) > ch.resp.Cap() {
			stalled = true
			break
		}
		tail, err := ch.resp.Reserve(respHead-ch.reserved, ch.tail, uint64(need))
		ch.tail = tail
		if err == ring.ErrFull {
			stalled = true
			break
		}
		if err != nil {
			s.ctr.badIndex.Add(1)
			ch.bad = true
			break
		}
		if resv := reservation(spec.deferredMax()); s.deferFn != nil && known && int64(f.Len) <= int64(spec.MaxRequest) && resv <= ch.resp.Cap() {
			// The handler may keep this request: hold its reply's space
			// now, or wait until pending replies free enough.
			if ch.tail-respHead+ch.reserved+resv > ch.resp.Cap() {
				stalled = true
				break
			}
			req := s.reqBuf[:ch.req.Payload(f, s.reqBuf[:f.Len])]
			p := &pendingReply{done: make(chan struct{}), resv: resv}
			reply := Reply{s: s, p: p, ch: s.chanIndex(ch), id: f.ID, call: f.Call, max: spec.deferredMax()}
			if s.deferFn(f.Call, req, reply) {
				if ch.waiting == nil {
					ch.waiting = make(map[uint64]*pendingReply)
				}
				if _, dup := ch.waiting[f.ID]; !dup { // a reused id is not cancellable by id
					ch.waiting[f.ID] = p
				}
				ch.pending++
				ch.reserved += resv
				ch.head = f.Next
				continue
			}
		}
		call, payload := s.dispatch(ch, f, spec, known)
		ch.head = f.Next
		// A payload no larger than need fits where Reserve left the tail.
		tail, err = ch.resp.Write(respHead, ch.tail, ring.Header{Call: call, ID: f.ID}, payload)
		if err != nil { // cannot happen after Reserve; never write a partial frame
			s.ctr.badIndex.Add(1)
			break
		}
		ch.tail = tail
		served++
	}
	if served > 0 {
		// Counted before the answers are published, so a client never
		// sees an answer the counter does not include yet.
		s.ctr.calls.Add(uint64(served)) // once per batch, not per call
	}
	if ch.head != oldHead {
		atomic.StoreUint64(ch.reqHeadW, ch.head)
	}
	if ch.tail != oldTail {
		atomic.StoreUint64(ch.respTailW, ch.tail)
	}
	if ch.head != oldHead || ch.tail != oldTail {
		woke = ch.wait.wake(1, &s.ctr)
	}
	return served, stalled, woke
}

// chanIndex is ch's index in s.chans.
func (s *Server) chanIndex(ch *serverChan) int {
	for i := range s.chans {
		if &s.chans[i] == ch {
			return i
		}
	}
	return -1
}

// dispatch serves one request frame and returns the response's call field
// and payload (in s.respBuf). The request payload is copied into s.reqBuf
// before the handler sees it.
func (s *Server) dispatch(ch *serverChan, f ring.Frame, spec CallSpec, known bool) (uint32, []byte) {
	if !known {
		s.ctr.unknownCalls.Add(1)
		return s.errorResponse(f.Call, CodeUnknownCall, "call not declared in the server's table")
	}
	if int64(f.Len) > int64(spec.MaxRequest) {
		s.ctr.oversize.Add(1)
		return s.errorResponse(f.Call, CodeBadRequest, "request exceeds the call's bound")
	}
	req := s.reqBuf[:ch.req.Payload(f, s.reqBuf[:f.Len])]
	resp := s.respBuf[:spec.MaxResponse]
	n, err := s.h(f.Call, req, resp)
	if err != nil {
		return s.errorResponse(f.Call, codeOf(err), err.Error())
	}
	if n < 0 || n > spec.MaxResponse {
		return s.errorResponse(f.Call, CodeResponseTooLarge, "handler response exceeds the call's bound")
	}
	return f.Call, resp[:n]
}

// errorResponse encodes an error payload into s.respBuf.
func (s *Server) errorResponse(call uint32, code Code, msg string) (uint32, []byte) {
	s.ctr.remoteErrors.Add(1)
	if len(msg) > MaxErrorMessage {
		msg = msg[:MaxErrorMessage]
	}
	b := s.respBuf[:8+len(msg)]
	binary.LittleEndian.PutUint32(b[0:4], uint32(code))
	binary.LittleEndian.PutUint32(b[4:8], uint32(len(msg)))
	copy(b[8:], msg)
	return call&^ErrorFlag | ErrorFlag, b
}
