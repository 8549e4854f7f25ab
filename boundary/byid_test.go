package boundary

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"
)

// TestReaderGivesUpHandsOff: the call reading a channel's response ring
// (the first one in) gives up at its deadline while another call on the
// channel still waits; the reader's role passes to the waiting call, which
// gets its reply when the host answers it. Without the hand-off nobody
// would read the ring and the second call would hang.
func TestReaderGivesUpHandsOff(t *testing.T) {
	r := newRegion(t, Config{Channels: 1, RequestRingSize: 1 << 16, ResponseRingSize: 1 << 16})
	_, got, c := serveDeferred(t, r, echoHandler)

	ctx, cancel := context.WithCancel(context.Background())
	first := make(chan error, 1)
	go func() {
		_, err := c.Call(ctx, callEcho, []byte("later-first"), make([]byte, 64))
		first <- err
	}()
	d1 := <-got // the first call is registered and reads the ring
	second := goCall(c, callEcho, []byte("later-second"), 64)
	d2 := <-got
	cancel()
	if err := within(t, "the reader giving up", func() error { return <-first }); !errors.Is(err, context.Canceled) {
		t.Fatalf("first call: %v, want context.Canceled", err)
	}
	d2.reply.Send(d2.req)
	d1.reply.Send(d1.req) // cancelled: dropped by the host
	var res callResult
	within(t, "the second call after the hand-off", func() error { res = <-second; return res.err })
	if res.err != nil || string(res.out) != "later-second" {
		t.Fatalf("second call: %q, %v", res.out, res.err)
	}
}

// TestWaiterGivesUpWhileReaderReads: a call that is not the reader gives
// up at its deadline at once (it does not wait for the reader), sends a
// cancel frame, and its late reply, written before the cancel reached the
// host, is dropped as stale by the reader; the reader's own call is
// unaffected.
func TestWaiterGivesUpWhileReaderReads(t *testing.T) {
	cfg := smallCfg
	r := newRegion(t, cfg)
	c := newClient(t, r, clientTable(t))
	h := newEvilHost(t, r)

	a := goCall(c, callEcho, []byte("A"), 64) // the reader
	hdA, _ := h.recv()
	ctx, cancel := context.WithTimeout(context.Background(), liveDeadline)
	defer cancel()
	b := make(chan error, 1)
	go func() { _, err := c.Call(ctx, callEcho, []byte("B"), make([]byte, 64)); b <- err }()
	hdB, _ := h.recv()
	if err := within(t, "the waiting call at its deadline", func() error { return <-b }); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("call B: %v, want context.DeadlineExceeded", err)
	}
	h.reply(callEcho, hdB.ID, []byte("late B"))
	h.reply(callEcho, hdA.ID, []byte("A"))
	var res callResult
	within(t, "the reader's call", func() error { res = <-a; return res.err })
	if res.err != nil || string(res.out) != "A" {
		t.Fatalf("call A: %q, %v", res.out, res.err)
	}
	// The cancel frame for B was sent; consume it with the next request.
	next := goCall(c, callEcho, []byte("C"), 64)
	hdC, _ := h.recv()
	h.reply(callEcho, hdC.ID, []byte("C"))
	if res := <-next; res.err != nil || string(res.out) != "C" {
		t.Fatalf("call C: %q, %v", res.out, res.err)
	}
	if len(h.cancels) != 1 || h.cancels[0] != hdB.ID {
		t.Fatalf("cancel frames %v, want [%d]", h.cancels, hdB.ID)
	}
	if cc := c.Counters(); cc.StaleResponses != 1 || cc.Cancels != 1 {
		t.Fatalf("counters %+v: want 1 stale response and 1 cancel", cc)
	}
}

// TestCallsInFlightBounded: a channel carries at most MaxPendingPerChannel
// calls in flight; one more waits for a slot (bounded by its context), and
// gets one as soon as a reply frees it.
func TestCallsInFlightBounded(t *testing.T) {
	// The response ring holds the host's reservations for every pending
	// reply, so the bound met is the enclave's, not the ring's.
	r := newRegion(t, Config{Channels: 1, RequestRingSize: 1 << 16, ResponseRingSize: 1 << 18})
	s, got, c := serveDeferred(t, r, echoHandler)
	var held []deferred
	var results []<-chan callResult
	for i := range MaxPendingPerChannel {
		results = append(results, goCall(c, callEcho, fmt.Appendf(nil, "later-%d", i), 64))
		held = append(held, <-got)
	}
	ctx, cancel := context.WithTimeout(context.Background(), liveDeadline)
	defer cancel()
	err := within(t, "a call beyond the bound", func() error {
		_, err := c.Call(ctx, callEcho, []byte("later-over"), make([]byte, 64))
		return err
	})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("call beyond the bound: %v, want context.DeadlineExceeded", err)
	}
	if n := s.Counters().Cancels; n != 0 {
		t.Fatalf("the call beyond the bound reached the host (%d cancels)", n)
	}
	extra := goCall(c, callEcho, []byte("later-extra"), 64)
	select {
	case d := <-got:
		t.Fatalf("a request beyond the bound reached the host: %q", d.req)
	case <-time.After(50 * time.Millisecond): // not a timing assertion: a chance to misbehave
	}
	held[0].reply.Send(held[0].req)
	var d deferred
	select {
	case d = <-got:
	case <-time.After(liveDeadline + liveSlack):
		t.Fatal("a freed slot was not taken by the waiting call")
	}
	if string(d.req) != "later-extra" {
		t.Fatalf("request %q, want later-extra", d.req)
	}
	d.reply.Send(d.req)
	for _, h := range held[1:] {
		h.reply.Send(h.req)
	}
	for i, res := range append(results, extra) {
		r := <-res
		want := "later-extra"
		if i < len(results) {
			want = fmt.Sprintf("later-%d", i)
		}
		if r.err != nil || string(r.out) != want {
			t.Fatalf("call %d: %q, %v; want %q", i, r.out, r.err, want)
		}
	}
}

// TestDeferredResponseBound: a call's MaxDeferredResponse bounds a reply
// the host defers (a larger one becomes CodeResponseTooLarge) while an
// answer given now may use the whole MaxResponse; NewTable refuses a
// deferred bound outside 0..MaxResponse.
func TestDeferredResponseBound(t *testing.T) {
	spec := CallSpec{ID: callEcho, Name: "test.echo", MaxRequest: 1024, MaxResponse: 1024, MaxDeferredResponse: 16}
	tb := mustTable(t, spec)
	r := newRegion(t, Config{Channels: 1, RequestRingSize: 1 << 16, ResponseRingSize: 1 << 16})
	s, err := NewServer(r, tb, echoHandler)
	if err != nil {
		t.Fatal(err)
	}
	got := deferLater(s)
	done := make(chan struct{})
	go func() { defer close(done); s.Serve(context.Background()) }()
	t.Cleanup(func() { s.Close(); <-done })
	c := newClient(t, r, tb)

	big := make([]byte, 100)
	copy(big, "now")
	resp := make([]byte, 1024)
	if n, err := c.Call(context.Background(), callEcho, big, resp); err != nil || n != 100 {
		t.Fatalf("answer given now: %d bytes, %v; want 100", n, err)
	}
	for _, tc := range []struct {
		payload []byte
		code    Code
	}{{[]byte("short"), 0}, {make([]byte, 17), CodeResponseTooLarge}} {
		res := goCall(c, callEcho, []byte("later"), 1024)
		d := <-got
		d.reply.Send(tc.payload)
		r := <-res
		var re *RemoteError
		switch {
		case tc.code == 0 && (r.err != nil || string(r.out) != string(tc.payload)):
			t.Fatalf("deferred reply within the bound: %q, %v", r.out, r.err)
		case tc.code != 0 && (!errors.As(r.err, &re) || re.Code != tc.code):
			t.Fatalf("deferred reply of %d bytes (bound 16): %v, want code %v", len(tc.payload), r.err, tc.code)
		}
	}
	for _, bad := range []int{-1, 1025} {
		sp := spec
		sp.MaxDeferredResponse = bad
		if _, err := NewTable(sp); err == nil {
			t.Errorf("NewTable with MaxDeferredResponse %d succeeded", bad)
		}
	}
}
