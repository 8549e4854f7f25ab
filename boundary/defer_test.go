package boundary

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"
	"time"
)

type deferred struct {
	req   []byte
	reply Reply
}

// deferLater defers every echo request that starts with "later", handing
// it to the test through the returned channel.
func deferLater(s *Server) <-chan deferred {
	got := make(chan deferred, 1024)
	s.SetDefer(func(call uint32, req []byte, reply Reply) bool {
		if call != callEcho || !bytes.HasPrefix(req, []byte("later")) {
			return false
		}
		got <- deferred{append([]byte(nil), req...), reply}
		return true
	})
	return got
}

// serveDeferred serves r with h until the test ends, deferring the calls
// deferLater picks, and returns the server, those calls and a client of r.
func serveDeferred(t *testing.T, r *Region, h Handler) (*Server, <-chan deferred, *Client) {
	t.Helper()
	s, err := NewServer(r, serverTable(t), h)
	if err != nil {
		t.Fatal(err)
	}
	got := deferLater(s)
	done := make(chan struct{})
	go func() { defer close(done); s.Serve(context.Background()) }()
	t.Cleanup(func() { s.Close(); <-done })
	return s, got, newClient(t, r, clientTable(t))
}

// TestDeferredReplies: a request the host answers later does not stall
// the Serve loop (another channel's calls go through meanwhile), and its
// reply reaches the caller; a second answer is ignored; an error answer
// arrives as a RemoteError.
func TestDeferredReplies(t *testing.T) {
	r := newRegion(t, Config{Channels: 2, RequestRingSize: 1 << 16, ResponseRingSize: 1 << 16})
	_, got, c := serveDeferred(t, r, echoHandler)

	slow := goCall(c, callEcho, []byte("later-1"), 64)
	d := <-got
	for i := range 3 {
		req := fmt.Appendf(nil, "now-%d", i)
		resp := make([]byte, 64)
		n, err := c.Call(context.Background(), callEcho, req, resp)
		if err != nil || !bytes.Equal(resp[:n], req) {
			t.Fatalf("call beside a pending one: %q, %v", resp[:n], err)
		}
	}
	d.reply.Send(append([]byte("answer:"), d.req...))
	d.reply.Send([]byte("second answer, ignored"))
	if res := <-slow; res.err != nil || string(res.out) != "answer:later-1" {
		t.Fatalf("deferred call: %q, %v", res.out, res.err)
	}
	failed := goCall(c, callEcho, []byte("later-2"), 64)
	(<-got).reply.Fail(errors.New("disk on fire"))
	var re *RemoteError
	if res := <-failed; !errors.As(res.err, &re) || re.Code != CodeHandler || re.Message != "disk on fire" {
		t.Fatalf("failed deferred call: %v", res.err)
	}
	now := goCall(c, callSmall, []byte("x"), 64) // not deferred: answered now
	if res := <-now; res.err != nil || string(res.out) != "x" {
		t.Fatalf("undeferred call: %q, %v", res.out, res.err)
	}
}

// TestDeferredBound: at most MaxPendingPerChannel requests of a channel
// are pending; the rest wait in the ring and are taken as replies free
// slots. Every call of a large batch gets its own answer.
func TestDeferredBound(t *testing.T) {
	// A response ring that holds MaxPendingPerChannel reservations, so the
	// bound met is the pending bound, not the ring's space.
	r := newRegion(t, Config{Channels: 1, RequestRingSize: 1 << 16, ResponseRingSize: 1 << 18})
	s, got, c := serveDeferred(t, r, echoHandler)

	calls := make([]BatchCall, 3*MaxPendingPerChannel)
	for i := range calls {
		calls[i] = BatchCall{Call: callEcho, Req: fmt.Appendf(nil, "later-%d", i), Resp: make([]byte, 64)}
	}
	batch := make(chan error, 1)
	go func() { batch <- c.Batch(context.Background(), calls) }()
	var held []deferred
	for range MaxPendingPerChannel {
		held = append(held, <-got)
	}
	// The server takes no more until a reply frees a slot: wait until it
	// sleeps again (it has nothing else to do), then check nothing more
	// came.
	for sleeps := s.Counters().Sleeps; s.Counters().Sleeps == sleeps; {
		time.Sleep(time.Millisecond)
	}
	select {
	case d := <-got:
		t.Fatalf("request %q taken beyond the bound", d.req)
	default:
	}
	answered := 0
	for answered < len(calls) {
		if len(held) == 0 {
			held = append(held, <-got)
		}
		d := held[0]
		held = held[1:]
		d.reply.Send(d.req)
		answered++
	}
	if err := <-batch; err != nil {
		t.Fatal(err)
	}
	for i, bc := range calls {
		if bc.Err != nil || !bytes.Equal(bc.Resp[:bc.N], bc.Req) {
			t.Fatalf("call %d: %q, %v", i, bc.Resp[:bc.N], bc.Err)
		}
	}
}

// TestDeferredReplyAfterClose: a reply after the server closed is dropped
// without touching the region.
func TestDeferredReplyAfterClose(t *testing.T) {
	r := newRegion(t, Config{Channels: 1, RequestRingSize: 1 << 16, ResponseRingSize: 1 << 16})
	s, err := NewServer(r, serverTable(t), echoHandler)
	if err != nil {
		t.Fatal(err)
	}
	got := deferLater(s)
	done := make(chan struct{})
	go func() { defer close(done); s.Serve(context.Background()) }()
	c := newClient(t, r, clientTable(t))
	ctx, cancel := context.WithCancel(context.Background())
	res := make(chan error, 1)
	go func() { _, err := c.Call(ctx, callEcho, []byte("later"), make([]byte, 8)); res <- err }()
	d := <-got
	cancel()
	if err := <-res; !errors.Is(err, context.Canceled) {
		t.Fatal(err)
	}
	s.Close()
	<-done
	c.Close()
	r.Close()
	d.reply.Send([]byte("late")) // must not touch the unmapped region
}

// TestDeferredSmallRing: on a ring that holds the reservation of only one
// pending reply next to an answer given now, deferred and immediate calls
// of one batch still all get their answers: the server takes a deferrable
// request only when its reply's space is free.
func TestDeferredSmallRing(t *testing.T) {
	r := newRegion(t, smallCfg) // 4 KiB: one echo reservation (2 x 1040) plus one echo answer
	s, err := NewServer(r, serverTable(t), echoHandler)
	if err != nil {
		t.Fatal(err)
	}
	got := deferLater(s)
	go func() {
		for d := range got {
			// Answered later, from another goroutine, with a reply near
			// the call's bound so that reservations matter.
			d.reply.Send(append(d.req, make([]byte, 1000-len(d.req))...))
		}
	}()
	done := make(chan struct{})
	go func() { defer close(done); s.Serve(context.Background()) }()
	t.Cleanup(func() { s.Close(); <-done })
	c := newClient(t, r, clientTable(t))
	for round := range 20 {
		calls := make([]BatchCall, 12)
		for i := range calls {
			p := "now"
			if i%3 != 0 {
				p = "later"
			}
			calls[i] = BatchCall{Call: callEcho, Req: fmt.Appendf(nil, "%s-%d-%d", p, round, i), Resp: make([]byte, 1024)}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := c.Batch(ctx, calls)
		cancel()
		if err != nil {
			t.Fatalf("round %d: %v (server %+v)", round, err, s.Counters())
		}
		for i, bc := range calls {
			want := len(bc.Req)
			if bytes.HasPrefix(bc.Req, []byte("later")) {
				want = 1000
			}
			if bc.Err != nil || bc.N != want || !bytes.HasPrefix(bc.Resp[:bc.N], bc.Req) {
				t.Fatalf("round %d call %d: %d bytes %q, %v", round, i, bc.N, bc.Resp[:min(bc.N, 32)], bc.Err)
			}
		}
	}
	if n := s.Counters().BadIndex; n != 0 {
		t.Fatalf("server BadIndex %d: a reply found no room", n)
	}
}

// TestCancelDropsPendingReply: when a caller gives up on a deferred
// request, the client's cancel frame makes the host drop the reply: the
// handler sees Reply.Done, the request's slot and reserved space are freed
// at once (more than MaxPendingPerChannel cancelled requests that are never
// answered do not wedge the channel), and a late Send is not written (the
// client sees no stale response).
func TestCancelDropsPendingReply(t *testing.T) {
	r := newRegion(t, Config{Channels: 1, RequestRingSize: 1 << 16, ResponseRingSize: 1 << 16})
	s, got, c := serveDeferred(t, r, echoHandler)

	hang := time.After(30 * liveSlack) // a hang detector, not a timing assertion
	var kept []deferred
	for i := range MaxPendingPerChannel + 2 {
		ctx, cancel := context.WithCancel(context.Background())
		res := make(chan error, 1)
		go func() {
			_, err := c.Call(ctx, callEcho, fmt.Appendf(nil, "later-%d", i), make([]byte, 64))
			res <- err
		}()
		var d deferred
		select {
		case d = <-got:
		case <-hang:
			t.Fatalf("request %d was never taken: cancelled requests still hold the channel's slots", i)
		}
		cancel()
		if err := <-res; !errors.Is(err, context.Canceled) {
			t.Fatalf("call %d: %v, want context.Canceled", i, err)
		}
		select {
		case <-d.reply.Done():
		case <-hang:
			t.Fatalf("request %d: the handler was never told of the cancel", i)
		}
		kept = append(kept, d)
	}
	for _, d := range kept {
		d.reply.Send([]byte("late"))
	}
	for s.Counters().CancelledReplies != uint64(len(kept)) {
		select {
		case <-hang:
			t.Fatalf("late replies dropped: %d of %d", s.Counters().CancelledReplies, len(kept))
		case <-time.After(time.Millisecond):
		}
	}
	resp := make([]byte, 64)
	if n, err := c.Call(context.Background(), callEcho, []byte("now"), resp); err != nil || string(resp[:n]) != "now" {
		t.Fatalf("call after the cancels: %q, %v", resp[:n], err)
	}
	if cc := c.Counters(); cc.StaleResponses != 0 || cc.Cancels != uint64(len(kept)) {
		t.Fatalf("client counters %+v: want no stale response and %d cancels", cc, len(kept))
	}
	if sc := s.Counters(); sc.Cancels != uint64(len(kept)) {
		t.Fatalf("server counters %+v: want %d cancels", sc, len(kept))
	}
}

// TestCallsDoNotHoldTheChannel: a call whose reply the host holds
// (deferred) does not hold its channel: on a one-channel region another
// call goes through meanwhile, within its deadline, and the held call then
// gets its own reply.
func TestCallsDoNotHoldTheChannel(t *testing.T) {
	r := newRegion(t, Config{Channels: 1, RequestRingSize: 1 << 16, ResponseRingSize: 1 << 16})
	s, err := NewServer(r, serverTable(t), echoHandler)
	if err != nil {
		t.Fatal(err)
	}
	got := deferLater(s)
	done := make(chan struct{})
	go func() { defer close(done); s.Serve(context.Background()) }()
	t.Cleanup(func() { s.Close(); <-done })
	c := newClient(t, r, clientTable(t))

	held := goCall(c, callEcho, []byte("later-held"), 64)
	d := <-got
	ctx, cancel := context.WithTimeout(context.Background(), liveSlack)
	defer cancel()
	resp := make([]byte, 64)
	for i := range 3 {
		req := fmt.Appendf(nil, "now-%d", i)
		n, err := c.Call(ctx, callEcho, req, resp)
		if err != nil || string(resp[:n]) != string(req) {
			t.Fatalf("call %d beside a held one on the same channel: %q, %v", i, resp[:n], err)
		}
	}
	d.reply.Send([]byte("held-answer"))
	if res := <-held; res.err != nil || string(res.out) != "held-answer" {
		t.Fatalf("held call: %q, %v", res.out, res.err)
	}
}

// TestNoMisdelivery: with two calls in flight on one channel, a reply
// carrying B's id completes B and never A; a second reply with B's id (a
// duplicate) fails the waiting call A with ErrDuplicateID instead of
// completing it with B's bytes; A's late reply is then dropped as stale
// and the channel keeps working.
func TestNoMisdelivery(t *testing.T) {
	cfg := smallCfg
	cfg.Channels = 1
	r := newRegion(t, cfg)
	c := newClient(t, r, clientTable(t))
	h := newEvilHost(t, r)

	a := goCall(c, callEcho, []byte("A"), 64)
	hdA, _ := h.recv()
	b := goCall(c, callEcho, []byte("B"), 64)
	hdB, _ := h.recv()
	if hdA.ID == hdB.ID {
		t.Fatalf("two calls in flight share id %d", hdA.ID)
	}
	h.reply(callEcho, hdB.ID, []byte("for-B"))
	if res := <-b; res.err != nil || string(res.out) != "for-B" {
		t.Fatalf("B: %q, %v", res.out, res.err)
	}
	h.reply(callEcho, hdB.ID, []byte("for-B again"))
	if res := <-a; !errors.Is(res.err, ErrDuplicateID) || len(res.out) != 0 {
		t.Fatalf("A after a duplicate of B's reply: %q, %v; want ErrDuplicateID", res.out, res.err)
	}
	h.reply(callEcho, hdA.ID, []byte("for-A, late"))
	next := goCall(c, callEcho, []byte("C"), 64)
	hdC, p := h.recv()
	h.reply(callEcho, hdC.ID, p)
	if res := <-next; res.err != nil || string(res.out) != "C" {
		t.Fatalf("C: %q, %v", res.out, res.err)
	}
	if cc := c.Counters(); cc.StaleResponses != 1 || cc.DuplicateIDs != 1 {
		t.Fatalf("counters %+v", cc)
	}
}

// TestOutOfOrderRepliesOneChannel: many callers share one channel while
// the host answers their deferred requests in reverse order of arrival;
// each caller gets exactly its own reply (an echo of its request).
func TestOutOfOrderRepliesOneChannel(t *testing.T) {
	r := newRegion(t, Config{Channels: 1, RequestRingSize: 1 << 16, ResponseRingSize: 1 << 16})
	s, err := NewServer(r, serverTable(t), echoHandler)
	if err != nil {
		t.Fatal(err)
	}
	got := deferLater(s)
	done := make(chan struct{})
	go func() { defer close(done); s.Serve(context.Background()) }()
	t.Cleanup(func() { s.Close(); <-done })
	c := newClient(t, r, clientTable(t))

	const callers, rounds = 8, 20
	stop := make(chan struct{})
	defer close(stop)
	go func() { // answer in batches, newest first
		var held []deferred
		for {
			var d deferred
			select {
			case d = <-got:
			case <-stop:
				return
			}
			held = append(held, d)
			if len(held) < callers {
				continue
			}
			for i := len(held) - 1; i >= 0; i-- {
				held[i].reply.Send(held[i].req)
			}
			held = held[:0]
		}
	}()
	errs := make(chan error, callers)
	for g := range callers {
		go func() {
			resp := make([]byte, 64)
			for i := range rounds {
				req := fmt.Appendf(nil, "later-%d-%d", g, i)
				n, err := c.Call(context.Background(), callEcho, req, resp)
				if err != nil || !bytes.Equal(resp[:n], req) {
					errs <- fmt.Errorf("caller %d round %d: got %q, %v", g, i, resp[:n], err)
					return
				}
			}
			errs <- nil
		}()
	}
	for range callers {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}
