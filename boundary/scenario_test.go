package boundary

import (
	"context"
	"errors"
	"math/rand/v2"
	"runtime"
	"sync/atomic"
	"testing"

	"github.com/cloister-dev/cloister/boundary/internal/ring"
)

// Adversarial scenarios in the raft style: a scripted hostile host answers
// one call with something malformed; the call must fail with the named
// error, the matching counter must move, and the next, well-formed call on
// the same channel must succeed. Nothing here depends on timing: the host
// acts only after it has received the request.
func TestHostileHost(t *testing.T) {
	type scenario struct {
		name    string
		call    uint32                                        // default callEcho
		attack  func(h *evilHost, hd ring.Header, req []byte) // answer the request badly
		repair  func(h *evilHost, hd ring.Header)             // default: republish the host's real tail
		want    error
		notWant error // if set, the error must not match it
		counter func(Counters) uint64
	}
	// frameAt writes a raw header at the host's tail and publishes a tail
	// span bytes further, which the client must resynchronise to.
	frameAt := func(h *evilHost, hdr ring.Header, span uint64) {
		var b [ring.HeaderSize]byte
		ring.PutHeader(b[:], hdr)
		h.raw(int(h.tail%uint64(h.r.lay.respSize)), b[:])
		h.tail += span
		h.publish(h.tail)
	}
	badIndex := func(c Counters) uint64 { return c.BadIndex }
	malformed := func(c Counters) uint64 { return c.MalformedFrames }
	scenarios := []scenario{
		{name: "misaligned response tail", want: ErrBadIndex, counter: badIndex,
			attack: func(h *evilHost, hd ring.Header, _ []byte) { h.publish(h.tail + 3) }},
		{name: "response tail beyond capacity", want: ErrBadIndex, counter: badIndex,
			attack: func(h *evilHost, hd ring.Header, _ []byte) { h.publish(h.tail + MinRingSize + 8) }},
		{name: "response tail behind head", want: ErrBadIndex, counter: badIndex,
			attack: func(h *evilHost, hd ring.Header, _ []byte) { h.publish(h.tail - 8) }},
		{name: "response tail at 2^64-8", want: ErrBadIndex, counter: badIndex,
			attack: func(h *evilHost, hd ring.Header, _ []byte) { h.publish(1<<64 - 8) }},
		{name: "length larger than the ring", want: ErrMalformedFrame, counter: malformed,
			attack: func(h *evilHost, hd ring.Header, _ []byte) {
				frameAt(h, ring.Header{Len: 2 * MinRingSize, Call: hd.Call, ID: hd.ID}, 64)
			}},
		{name: "length larger than the limit", want: ErrMalformedFrame, counter: malformed,
			attack: func(h *evilHost, hd ring.Header, _ []byte) {
				frameAt(h, ring.Header{Len: MaxFramePayload + 8, Call: hd.Call, ID: hd.ID}, 64)
			}},
		{name: "length 0xFFFFFFF0", want: ErrMalformedFrame, counter: malformed,
			attack: func(h *evilHost, hd ring.Header, _ []byte) {
				frameAt(h, ring.Header{Len: 0xFFFF_FFF0, Call: hd.Call, ID: hd.ID}, 64)
			}},
		{name: "length beyond the published tail", want: ErrMalformedFrame, counter: malformed,
			attack: func(h *evilHost, hd ring.Header, _ []byte) {
				frameAt(h, ring.Header{Len: 100, Call: hd.Call, ID: hd.ID}, 24)
			}},
		{name: "header cut by the tail", want: ErrMalformedFrame, counter: malformed,
			attack: func(h *evilHost, hd ring.Header, _ []byte) {
				frameAt(h, ring.Header{Len: 0, Call: hd.Call, ID: hd.ID}, 8)
			}},
		{name: "skip marker with an id", want: ErrMalformedFrame, counter: malformed,
			attack: func(h *evilHost, hd ring.Header, _ []byte) {
				frameAt(h, ring.Header{Len: ring.SkipLen, ID: hd.ID}, 64)
			}},
		{name: "response over the call's bound", call: callSmall, want: ErrResponseTooLarge,
			counter: func(c Counters) uint64 { return c.Oversize },
			attack:  func(h *evilHost, hd ring.Header, _ []byte) { h.reply(hd.Call, hd.ID, make([]byte, 17)) }},
		{name: "unknown correlation id", want: ErrUnknownID,
			counter: func(c Counters) uint64 { return c.UnknownIDs },
			attack:  func(h *evilHost, hd ring.Header, req []byte) { h.reply(hd.Call, 1<<40, req) },
			// The real answer comes late: dropped as stale by the next call.
			repair: func(h *evilHost, hd ring.Header) { h.reply(hd.Call, hd.ID, nil) }},
		{name: "zero correlation id", want: ErrUnknownID,
			counter: func(c Counters) uint64 { return c.UnknownIDs },
			attack:  func(h *evilHost, hd ring.Header, req []byte) { h.reply(hd.Call, 0, req) },
			repair:  func(*evilHost, ring.Header) {}},
		{name: "duplicate correlation id", want: ErrDuplicateID,
			counter: func(c Counters) uint64 { return c.DuplicateIDs },
			attack:  func(h *evilHost, hd ring.Header, req []byte) { h.reply(hd.Call, hd.ID-1, req) },
			repair:  func(*evilHost, ring.Header) {}},
		{name: "response for another call", want: ErrCallMismatch,
			counter: func(c Counters) uint64 { return c.CallMismatches },
			attack:  func(h *evilHost, hd ring.Header, req []byte) { h.reply(callSmall, hd.ID, nil) }},
		{name: "error response for another call", want: ErrCallMismatch,
			counter: func(c Counters) uint64 { return c.CallMismatches },
			attack: func(h *evilHost, hd ring.Header, req []byte) {
				h.reply(callSmall|ErrorFlag, hd.ID, []byte{3, 0, 0, 0, 0, 0, 0, 0})
			}},
		{name: "error response with a bad message length", want: ErrMalformedError, counter: malformed,
			attack: func(h *evilHost, hd ring.Header, req []byte) {
				h.reply(hd.Call|ErrorFlag, hd.ID, []byte{3, 0, 0, 0, 200, 0, 0, 0, 'x'})
			}},
		{name: "error response too short", want: ErrMalformedError, counter: malformed,
			attack: func(h *evilHost, hd ring.Header, req []byte) { h.reply(hd.Call|ErrorFlag, hd.ID, []byte{3}) }},
		{name: "error response beyond its bound", want: ErrMalformedError,
			counter: func(c Counters) uint64 { return c.Oversize },
			attack: func(h *evilHost, hd ring.Header, req []byte) {
				h.reply(hd.Call|ErrorFlag, hd.ID, make([]byte, maxErrorPayload+8))
			}},
		{name: "well-formed error response", want: ErrRemote,
			counter: func(c Counters) uint64 { return c.RemoteErrors },
			attack: func(h *evilHost, hd ring.Header, req []byte) {
				h.reply(hd.Call|ErrorFlag, hd.ID, []byte{9, 0, 0, 0, 2, 0, 0, 0, 'n', 'o'})
			}},
		// Typed statuses: the code decides, whatever the host's message.
		{name: "would-block status with a misleading message", want: ErrWouldBlock, notWant: ErrNotFound,
			counter: func(c Counters) uint64 { return c.RemoteErrors },
			attack: func(h *evilHost, hd ring.Header, req []byte) {
				h.reply(hd.Call|ErrorFlag, hd.ID, []byte{byte(CodeWouldBlock), 0, 0, 0, 9, 0, 0, 0, 'n', 'o', 't', ' ', 'f', 'o', 'u', 'n', 'd'})
			}},
		{name: "not-found status with an empty message", want: ErrNotFound, notWant: ErrWouldBlock,
			counter: func(c Counters) uint64 { return c.RemoteErrors },
			attack: func(h *evilHost, hd ring.Header, req []byte) {
				h.reply(hd.Call|ErrorFlag, hd.ID, []byte{byte(CodeNotFound), 0, 0, 0, 0, 0, 0, 0})
			}},
		{name: "handler error whose text is would block", want: ErrRemote, notWant: ErrWouldBlock,
			counter: func(c Counters) uint64 { return c.RemoteErrors },
			attack: func(h *evilHost, hd ring.Header, req []byte) {
				h.reply(hd.Call|ErrorFlag, hd.ID, append([]byte{byte(CodeHandler), 0, 0, 0, 11, 0, 0, 0}, "would block"...))
			}},
		{name: "status code with high bits set", want: ErrRemote, notWant: ErrWouldBlock,
			counter: func(c Counters) uint64 { return c.RemoteErrors },
			attack: func(h *evilHost, hd ring.Header, req []byte) {
				h.reply(hd.Call|ErrorFlag, hd.ID, []byte{byte(CodeWouldBlock), 0, 0, 1, 0, 0, 0, 0})
			}},
	}

	r := newRegion(t, smallCfg)
	c := newClient(t, r, clientTable(t))
	h := newEvilHost(t, r)

	good := func(t *testing.T, i int) {
		t.Helper()
		res := goCall(c, callEcho, []byte{'g', byte(i)}, 64)
		hd, p := h.recv()
		h.reply(hd.Call, hd.ID, p)
		if got := <-res; got.err != nil || string(got.out) != string([]byte{'g', byte(i)}) {
			t.Fatalf("good call after the attack: %q, %v", got.out, got.err)
		}
	}
	good(t, 0)
	// Two rounds, so the scenarios also run with indices past a wrap.
	for round := range 2 {
		for i, sc := range scenarios {
			t.Run(sc.name, func(t *testing.T) {
				call := sc.call
				if call == 0 {
					call = callEcho
				}
				before := sc.counter(c.Counters())
				res := goCall(c, call, []byte("request"), 64)
				hd, p := h.recv()
				sc.attack(h, hd, p)
				got := <-res
				if !errors.Is(got.err, sc.want) {
					t.Fatalf("round %d: err = %v, want %v", round, got.err, sc.want)
				}
				if sc.notWant != nil && errors.Is(got.err, sc.notWant) {
					t.Fatalf("round %d: err = %v matches %v", round, got.err, sc.notWant)
				}
				if after := sc.counter(c.Counters()); after != before+1 {
					t.Errorf("counter %d → %d, want +1", before, after)
				}
				if sc.repair != nil {
					sc.repair(h, hd)
				} else {
					h.publish(h.tail)
				}
				good(t, i)
			})
		}
	}
	if cc := c.Counters(); cc.StaleResponses != 2 {
		t.Errorf("stale responses %d, want 2 (one per unknown-id round)", cc.StaleResponses)
	}
}

// TestHostileRequestHead: the host moves the request ring's head to garbage;
// sending fails, and works again once the head is sane.
func TestHostileRequestHead(t *testing.T) {
	r := newRegion(t, smallCfg)
	c := newClient(t, r, clientTable(t))
	h := newEvilHost(t, r)
	for _, bad := range []uint64{3, 1 << 20, 1<<64 - 8} {
		atomic.StoreUint64(h.word(chReqHead), bad)
		if _, err := c.Call(context.Background(), callEcho, []byte("x"), nil); !errors.Is(err, ErrBadIndex) {
			t.Fatalf("head %d: %v", bad, err)
		}
		atomic.StoreUint64(h.word(chReqHead), h.head)
		res := goCall(c, callEcho, []byte("y"), 8)
		hd, p := h.recv()
		h.reply(hd.Call, hd.ID, p)
		if got := <-res; got.err != nil || string(got.out) != "y" {
			t.Fatalf("after head %d: %q, %v", bad, got.out, got.err)
		}
	}
	if n := c.Counters().BadIndex; n != 3 {
		t.Fatalf("BadIndex = %d", n)
	}
}

// TestHostileGarbage: the host fills the response ring with random bytes
// and random valid-looking tails. Every call fails with one of the named
// errors or, rarely, a well-formed garbage answer; the client never panics
// and recovers each time.
func TestHostileGarbage(t *testing.T) {
	r := newRegion(t, smallCfg)
	c := newClient(t, r, clientTable(t))
	h := newEvilHost(t, r)
	rng := rand.New(rand.NewPCG(1, 2))
	named := []error{ErrBadIndex, ErrMalformedFrame, ErrUnknownID, ErrDuplicateID, ErrCallMismatch,
		ErrResponseTooLarge, ErrMalformedError, ErrRemote, ErrShortBuffer}
	for i := range 200 {
		res := goCall(c, callEcho, []byte("q"), 64)
		hd, _ := h.recv()
		junk := make([]byte, r.lay.respSize)
		for j := range junk {
			junk[j] = byte(rng.Uint32())
		}
		h.raw(0, junk)
		if rng.IntN(2) == 0 {
			// A plausible header for this call, with a random length.
			var b [ring.HeaderSize]byte
			ring.PutHeader(b[:], ring.Header{Len: rng.Uint32N(2 * MinRingSize), Call: hd.Call, ID: hd.ID})
			h.raw(int(h.tail%MinRingSize), b[:])
		}
		step := uint64(rng.IntN(2*MinRingSize)) &^ 7
		if rng.IntN(4) == 0 {
			step |= uint64(rng.IntN(8))
		}
		h.publish(h.tail + step)
		got := <-res
		if got.err == nil {
			// A garbage frame that happened to be well formed for this call.
			t.Logf("iteration %d: garbage accepted as a %d-byte answer", i, got.n)
		} else if !isOneOf(got.err, named) {
			t.Fatalf("iteration %d: unnamed error %v", i, got.err)
		}
		// A host cannot take back a tail the client accepted: keep it if it
		// was a valid one, else go back to the last good tail.
		if h.tail+step-atomic.LoadUint64(h.word(chRespHead)) <= MinRingSize && step%8 == 0 {
			h.tail += step
		}
		h.publish(h.tail)
		// The client must chew through the published garbage and recover:
		// each failed call consumes at least one frame or resynchronises,
		// so a bounded number of calls gets through.
		var ok bool
		for attempt := 0; attempt < MinRingSize/ring.HeaderSize+2 && !ok; attempt++ {
			res = goCall(c, callEcho, []byte("good"), 64)
			hd, p := h.recv()
			h.reply(hd.Call, hd.ID, p)
			got := <-res
			ok = got.err == nil && string(got.out) == "good"
			if got.err != nil && !isOneOf(got.err, named) {
				t.Fatalf("iteration %d: unnamed error %v", i, got.err)
			}
		}
		if !ok {
			t.Fatalf("iteration %d: the client did not recover", i)
		}
	}
	t.Logf("counters after garbage: %+v", c.Counters())
}

func isOneOf(err error, targets []error) bool {
	for _, t := range targets {
		if errors.Is(err, t) {
			return true
		}
	}
	return false
}

// TestHostileEnclave: the server validates what the enclave writes too. A
// garbage request tail, a malformed frame and a request for an undeclared
// call are counted; the server keeps serving.
func TestHostileEnclave(t *testing.T) {
	r := newRegion(t, smallCfg)
	s, err := NewServer(r, serverTable(t), echoHandler)
	if err != nil {
		t.Fatal(err)
	}
	l := r.lay.ch[0]
	reqTail := r.u64(l.base + chReqTail)
	req, _ := ring.New(r.mem[l.reqData : l.reqData+r.lay.reqSize])
	resp, _ := ring.New(r.mem[l.respData : l.respData+r.lay.respSize])

	atomic.StoreUint64(reqTail, 5)
	if n := s.Poll(); n != 0 || s.Counters().BadIndex != 1 {
		t.Fatalf("bad tail: served %d, %+v", n, s.Counters())
	}
	// A frame whose length runs past the tail: resync at the tail.
	var b [ring.HeaderSize]byte
	ring.PutHeader(b[:], ring.Header{Len: 1000, Call: callEcho, ID: 1})
	copy(r.mem[l.reqData:], b[:])
	atomic.StoreUint64(reqTail, 32)
	if n := s.Poll(); n != 0 || s.Counters().MalformedFrames != 1 {
		t.Fatalf("malformed: served %d, %+v", n, s.Counters())
	}
	// Now an undeclared call and a good one.
	tail, _ := req.Write(32, 32, ring.Header{Call: 0x7777, ID: 2}, nil)
	tail, _ = req.Write(32, tail, ring.Header{Call: callEcho, ID: 3}, []byte("hi"))
	atomic.StoreUint64(reqTail, tail)
	if n := s.Poll(); n != 2 {
		t.Fatalf("served %d", n)
	}
	respTail := atomic.LoadUint64(r.u64(l.base + chRespTail))
	f, err := resp.Next(0, respTail, MaxFramePayload)
	if err != nil || f.ID != 2 || f.Call != 0x7777|ErrorFlag {
		t.Fatalf("first response %+v, %v", f, err)
	}
	f, err = resp.Next(f.Next, respTail, MaxFramePayload)
	out := make([]byte, 8)
	if err != nil || f.ID != 3 || f.Call != callEcho || string(out[:resp.Payload(f, out)]) != "hi" {
		t.Fatalf("second response %+v, %v", f, err)
	}
	if s.Counters().UnknownCalls != 1 {
		t.Fatalf("%+v", s.Counters())
	}
	// Cancel frames the server cannot act on: with a payload (malformed),
	// for an id never sent, for an id already answered. None gets a
	// response or disturbs the next call.
	head := f.Next
	tail, _ = req.Write(tail, tail, ring.Header{Call: CallCancel, ID: 3}, []byte("junk"))
	tail, _ = req.Write(tail, tail, ring.Header{Call: CallCancel, ID: 1 << 50}, nil)
	tail, _ = req.Write(tail, tail, ring.Header{Call: CallCancel, ID: 3}, nil)
	tail, _ = req.Write(tail, tail, ring.Header{Call: callEcho, ID: 4}, []byte("yo"))
	atomic.StoreUint64(reqTail, tail)
	if n := s.Poll(); n != 1 {
		t.Fatalf("served %d after cancel frames", n)
	}
	respTail = atomic.LoadUint64(r.u64(l.base + chRespTail))
	f, err = resp.Next(head, respTail, MaxFramePayload)
	if err != nil || f.ID != 4 || f.Call != callEcho || string(out[:resp.Payload(f, out)]) != "yo" || f.Next != respTail {
		t.Fatalf("response after cancel frames %+v, %v (tail %d)", f, err, respTail)
	}
	if sc := s.Counters(); sc.MalformedFrames != 2 || sc.Cancels != 2 || sc.CancelledReplies != 0 {
		t.Fatalf("counters after cancel frames %+v", sc)
	}
}

// TestHostileHostBatch: inside a batch, duplicate and unknown ids are
// dropped and counted without disturbing the other calls; a bad tail ends
// the batch with ErrBadIndex on every unanswered call, and the next batch
// on the channel works.
func TestHostileHostBatch(t *testing.T) {
	r := newRegion(t, smallCfg)
	c := newClient(t, r, clientTable(t))
	h := newEvilHost(t, r)
	run := func(n int) ([]BatchCall, <-chan error) {
		calls := make([]BatchCall, n)
		for i := range calls {
			calls[i] = BatchCall{Call: callEcho, Req: []byte{byte(i)}, Resp: make([]byte, 8)}
		}
		done := make(chan error, 1)
		go func() { done <- c.Batch(context.Background(), calls) }()
		return calls, done
	}

	calls, done := run(3)
	var ids []uint64
	for range 3 {
		hd, _ := h.recv()
		ids = append(ids, hd.ID)
	}
	h.reply(callEcho, ids[1], []byte{1})
	h.reply(callEcho, ids[1], []byte{0xEE}) // duplicate
	h.reply(callEcho, 1<<50, []byte{0xEE})  // unknown
	h.reply(callEcho, ids[0], []byte{0})
	h.reply(callEcho, ids[2], []byte{2})
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	for i, bc := range calls {
		if bc.Err != nil || bc.N != 1 || bc.Resp[0] != byte(i) {
			t.Fatalf("call %d: %x, %v", i, bc.Resp[:bc.N], bc.Err)
		}
	}
	if cc := c.Counters(); cc.DuplicateIDs != 1 || cc.UnknownIDs != 1 {
		t.Fatalf("counters %+v", cc)
	}

	// One answer, then a misaligned tail: the rest fail with ErrBadIndex.
	calls, done = run(3)
	ids = ids[:0]
	for range 3 {
		hd, _ := h.recv()
		ids = append(ids, hd.ID)
	}
	h.reply(callEcho, ids[0], []byte{0})
	for atomic.LoadUint64(h.word(chRespHead)) != h.tail {
		runtime.Gosched() // until the client consumed the good answer
	}
	h.publish(h.tail + 4)
	if err := <-done; !errors.Is(err, ErrBadIndex) {
		t.Fatalf("batch: %v", err)
	}
	if calls[0].Err != nil || !errors.Is(calls[1].Err, ErrBadIndex) || !errors.Is(calls[2].Err, ErrBadIndex) {
		t.Fatalf("calls: %v / %v / %v", calls[0].Err, calls[1].Err, calls[2].Err)
	}
	h.publish(h.tail)
	// The late answers to the abandoned calls are dropped: the channel is
	// resynchronised at the host's tail before the next batch.
	h.reply(callEcho, ids[1], []byte{1})
	h.reply(callEcho, ids[2], []byte{2})
	calls, done = run(2)
	for range 2 {
		hd, p := h.recv()
		h.reply(callEcho, hd.ID, p)
	}
	if err := <-done; err != nil || calls[0].Err != nil || calls[1].Err != nil {
		t.Fatalf("after recovery: %v %v %v", err, calls[0].Err, calls[1].Err)
	}
	if cc := c.Counters(); cc.Resyncs != 1 || cc.StaleResponses != 0 || cc.BadIndex != 1 {
		t.Fatalf("counters %+v", cc)
	}
}
