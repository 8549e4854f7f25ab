package boundary

import (
	"sync"
	"sync/atomic"

	"github.com/cloister-dev/cloister/boundary/internal/ring"
)

// DeferFunc lets a host take a request to answer later instead of in the
// Handler, so that a slow operation (a storage fsync) runs off the Serve
// goroutine and does not stall the other channels. It runs on the Serve
// goroutine before the Handler: it returns true after keeping reply (and
// a copy of req, which is only valid during the call) to answer through
// it later, or false to have the Handler answer now. It must not block.
//
// The Serve goroutine stays the only writer of the response rings: a reply
// is queued and written by it. Response space for the largest deferred
// answer of the call (CallSpec.MaxDeferredResponse if set, else
// MaxResponse; a larger Send becomes CodeResponseTooLarge) is reserved
// when the request is taken, so a reply never waits for room; at most MaxPendingPerChannel requests per channel are pending
// at once (the channel's further requests wait in the ring until replies
// come). Replies after Close are dropped.
type DeferFunc func(call uint32, req []byte, reply Reply) bool

// Reply answers one deferred request. Exactly one of Send or Fail must be
// called, once, from any goroutine; later calls are ignored.
type Reply struct {
	s    *Server
	p    *pendingReply
	ch   int
	id   uint64
	call uint32
	max  int
}

// pendingReply marks a Reply answered, so a second answer is ignored, and
// carries its cancellation. cancelled and resv are touched only by the
// Serve goroutine; done is closed by it when the enclave cancels.
type pendingReply struct {
	answered  atomic.Bool
	done      chan struct{}
	cancelled bool   // the enclave cancelled it; its slot and space are free
	resv      uint64 // response space held for it
}

// Done is closed when the enclave cancels the request (a CallCancel frame:
// its caller gave up). The handler may then stop the work; a later Send or
// Fail is dropped. A zero Reply's Done is nil (never closed).
func (r Reply) Done() <-chan struct{} {
	if r.p == nil {
		return nil
	}
	return r.p.done
}

// completion is a reply waiting for the Serve goroutine to write it.
type completion struct {
	p       *pendingReply
	ch      int
	id      uint64
	call    uint32
	max     int
	payload []byte // owned copy
	err     error
}

// Send answers with payload (copied). A payload beyond the call's declared
// bound becomes an error response (CodeResponseTooLarge).
func (r Reply) Send(payload []byte) {
	if r.s == nil || r.p.answered.Swap(true) {
		return
	}
	r.s.complete(completion{p: r.p, ch: r.ch, id: r.id, call: r.call, max: r.max, payload: append([]byte(nil), payload...)})
}

// Fail answers with an error response: CodeWouldBlock or CodeNotFound if
// err wraps ErrWouldBlock or ErrNotFound, CodeHandler otherwise; err's
// text is the message.
func (r Reply) Fail(err error) {
	if r.s == nil || r.p.answered.Swap(true) {
		return
	}
	r.s.complete(completion{p: r.p, ch: r.ch, id: r.id, call: r.call, max: r.max, err: err})
}

// SetDefer installs f; call it before Serve.
func (s *Server) SetDefer(f DeferFunc) { s.deferFn = f }

// completions is the queue of replies posted by other goroutines.
type completions struct {
	mu    sync.Mutex
	queue []completion
	n     atomic.Int32 // len(queue), read without the lock by ready
}

// complete queues c and wakes the Serve goroutine.
func (s *Server) complete(c completion) {
	if s.closed.Load() {
		return
	}
	s.done.mu.Lock()
	s.done.queue = append(s.done.queue, c)
	s.done.n.Store(int32(len(s.done.queue)))
	s.done.mu.Unlock()
	if s.region.enter() == nil {
		s.region.wakeLocal(offServerWait)
		s.region.leave()
	}
}

// reservation is the response ring space held for one pending reply of a
// call whose largest response payload is max: its frame, and as much again
// for the padding that may precede it at the end of the ring.
func reservation(max int) uint64 { return 2 * ring.FrameSize(uint64(max)) }

// writeCompletions writes every queued reply into its channel's response
// ring (space was reserved when the request was taken) and publishes the
// tails. It runs on the Serve goroutine. It reports how many it wrote and
// whether it woke a client.
func (s *Server) writeCompletions() (written int, woke bool) {
	if s.done.n.Load() == 0 {
		return 0, false
	}
	s.done.mu.Lock()
	queue := s.done.queue
	s.done.queue = nil
	s.done.n.Store(0)
	s.done.mu.Unlock()
	moved := make(map[int]bool)
	for _, c := range queue {
		ch := &s.chans[c.ch]
		if c.p.cancelled { // slot and space were freed by the cancel
			s.ctr.cancelledReplies.Add(1)
			continue
		}
		if ch.waiting[c.id] == c.p {
			delete(ch.waiting, c.id)
		}
		ch.pending--
		ch.reserved -= reservation(c.max)
		call, payload := c.call, c.payload
		switch {
		case c.err != nil:
			call, payload = s.errorResponse(c.call, codeOf(c.err), c.err.Error())
		case len(payload) > c.max:
			call, payload = s.errorResponse(c.call, CodeResponseTooLarge, "handler response exceeds the call's bound")
		}
		tail, err := ch.resp.Write(ch.seenHead, ch.tail, ring.Header{Call: call, ID: c.id}, payload)
		if err != nil { // cannot happen with the reservation; never a partial frame
			s.ctr.badIndex.Add(1)
			continue
		}
		ch.tail = tail
		moved[c.ch] = true
		written++
	}
	s.ctr.calls.Add(uint64(written)) // before the answers are published
	for i := range moved {
		ch := &s.chans[i]
		atomic.StoreUint64(ch.respTailW, ch.tail)
		woke = ch.wait.wake(1, &s.ctr) || woke
	}
	return written, woke
}

// cancel handles a CallCancel frame for id on ch: a pending reply is
// dropped now (its slot and reserved space freed, its handler told through
// Done), and its completion, if one comes, is not written. An id that is
// not pending (already answered, never taken, or invented) is ignored: the
// enclave drops a reply already written as stale.
func (s *Server) cancel(ch *serverChan, id uint64) {
	s.ctr.cancels.Add(1)
	p, ok := ch.waiting[id]
	if !ok {
		return
	}
	delete(ch.waiting, id)
	p.cancelled = true
	close(p.done)
	ch.pending--
	ch.reserved -= p.resv
}
