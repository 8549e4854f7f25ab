package boundary

import (
	"context"
	"errors"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cloister-dev/cloister/boundary/internal/ring"
)

// Liveness: every call path returns within its deadline plus a generous
// bound, whatever the host does. The bound (deadline + 2 s) is a hang
// detector for a loaded 2-core machine, not a speed assertion.
const (
	liveDeadline = 200 * time.Millisecond
	liveSlack    = 2 * time.Second
)

// errHung is what within returns for a call that did not return in time.
var errHung = errors.New("still blocked past the deadline")

// within runs f and fails the test if it has not returned liveDeadline +
// liveSlack after it started (then returning errHung). It returns f's
// error. Safe to use from any goroutine.
func within(t *testing.T, what string, f func() error) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- f() }()
	select {
	case err := <-done:
		return err
	case <-time.After(liveDeadline + liveSlack):
		t.Errorf("%s: still blocked %v after a %v deadline", what, liveSlack, liveDeadline)
		return errHung
	}
}

// junkHost streams well-formed response frames with ids never issued into
// every channel's response ring until stop is closed, as fast as the
// client frees space.
func junkHost(r *Region, stop <-chan struct{}) *sync.WaitGroup {
	var wg sync.WaitGroup
	for i, l := range r.lay.ch {
		wg.Go(func() {
			resp, _ := ring.New(r.mem[l.respData : l.respData+r.lay.respSize])
			tailW := r.u64(l.base + chRespTail)
			headW := r.u64(l.base + chRespHead)
			w := r.waitLine(l.base + chWait)
			tail := atomic.LoadUint64(tailW)
			id := uint64(1<<62 + i<<40)
			for {
				select {
				case <-stop:
					return
				default:
				}
				next, err := resp.Write(atomic.LoadUint64(headW), tail, ring.Header{Call: callEcho, ID: id}, []byte("junk"))
				if next != tail {
					tail = next
					atomic.StoreUint64(tailW, tail)
					atomic.AddUint32(w.seq, 1)
					futexWakeAll(w.seq)
				}
				if err != nil {
					runtime.Gosched()
				}
				id++
			}
		})
	}
	return &wg
}

// stallHost takes every request on every channel (moving the request head)
// and never answers, until stop is closed.
func stallHost(r *Region, stop <-chan struct{}) *sync.WaitGroup {
	var wg sync.WaitGroup
	for _, l := range r.lay.ch {
		wg.Go(func() {
			req, _ := ring.New(r.mem[l.reqData : l.reqData+r.lay.reqSize])
			tailW := r.u64(l.base + chReqTail)
			headW := r.u64(l.base + chReqHead)
			head := atomic.LoadUint64(headW)
			for {
				select {
				case <-stop:
					return
				case <-time.After(time.Millisecond):
				}
				for {
					f, err := req.Next(head, atomic.LoadUint64(tailW), MaxFramePayload)
					if err != nil {
						if err == ring.ErrEmpty {
							head = f.Next
						}
						break
					}
					head = f.Next
				}
				atomic.StoreUint64(headW, head)
			}
		})
	}
	return &wg
}

// TestCancelledOnEntry: a context that already ended fails Call and Batch
// at once, even though the host would answer immediately, and nothing is
// sent.
func TestCancelledOnEntry(t *testing.T) {
	r := newRegion(t, smallCfg)
	s := startServer(t, r, serverTable(t), echoHandler)
	c := newClient(t, r, clientTable(t))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := c.Call(ctx, callEcho, []byte("x"), make([]byte, 8)); !errors.Is(err, context.Canceled) {
		t.Fatalf("Call with a cancelled context: %v", err)
	}
	calls := []BatchCall{{Call: callEcho, Req: []byte("x"), Resp: make([]byte, 8)}}
	if err := c.Batch(ctx, calls); !errors.Is(err, context.Canceled) || !errors.Is(calls[0].Err, context.Canceled) {
		t.Fatalf("Batch with a cancelled context: %v / %v", err, calls[0].Err)
	}
	// The same calls go through with a live context, and the server saw
	// only these.
	if _, err := c.Call(context.Background(), callEcho, []byte("x"), make([]byte, 8)); err != nil {
		t.Fatal(err)
	}
	// The server counts a pass's calls after it has published them: wait
	// for the count, then check it is this call alone.
	for start := time.Now(); s.Counters().Calls == 0 && time.Since(start) < liveSlack; {
		time.Sleep(time.Millisecond)
	}
	if n := s.Counters().Calls; n != 1 {
		t.Fatalf("server served %d calls, want 1", n)
	}
}

// TestLivenessCall: Call and Batch against a host that never answers
// (nothing serves the region), one that takes requests and stalls, and one
// that streams junk frames, each with a deadline. With one channel, a
// second call queued behind a stalled one also honours its deadline.
func TestLivenessCall(t *testing.T) {
	hosts := []struct {
		name  string
		start func(*Region, <-chan struct{}) *sync.WaitGroup
	}{
		{"never answers", func(*Region, <-chan struct{}) *sync.WaitGroup { return new(sync.WaitGroup) }},
		{"stalled", stallHost},
		{"junk", junkHost},
	}
	for _, h := range hosts {
		t.Run(h.name, func(t *testing.T) {
			start := func() *Client {
				r := newRegion(t, smallCfg)
				c := newClient(t, r, clientTable(t))
				stop := make(chan struct{})
				wg := h.start(r, stop)
				t.Cleanup(func() { c.Close(); close(stop); wg.Wait() })
				return c
			}
			c := start()
			ctx, cancel := context.WithTimeout(context.Background(), liveDeadline)
			defer cancel()
			// A call without a deadline holding the only channel, and
			// one with a deadline queued behind it.
			first := make(chan error, 1)
			if h.name != "junk" {
				go func() {
					_, err := c.Call(context.Background(), callEcho, []byte{1}, make([]byte, 8))
					first <- err
				}()
				for c.Counters().Sleeps == 0 {
					time.Sleep(time.Millisecond) // until it waits for the host
				}
			}
			err := within(t, "Call", func() error {
				_, err := c.Call(ctx, callEcho, []byte{2}, make([]byte, 8))
				return err
			})
			if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, ErrUnknownID) {
				t.Errorf("call: %v", err)
			}
			if h.name != "junk" {
				c.Close()
				if err := <-first; !errors.Is(err, ErrClosed) {
					t.Errorf("first call after Close: %v", err)
				}
			}

			c = start()
			bctx, bcancel := context.WithTimeout(context.Background(), liveDeadline)
			defer bcancel()
			calls := make([]BatchCall, 8)
			for i := range calls {
				calls[i] = BatchCall{Call: callEcho, Req: []byte{byte(i)}, Resp: make([]byte, 8)}
			}
			err = within(t, "Batch", func() error { return c.Batch(bctx, calls) })
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("batch: %v", err)
			}
			for i, bc := range calls {
				if !errors.Is(bc.Err, context.DeadlineExceeded) {
					t.Fatalf("batch call %d: %v", i, bc.Err)
				}
			}
		})
	}
}

// TestCloseUnblocks: Close ends a Batch fed with junk and a Call waiting on
// a host that never answers, and returns itself.
func TestCloseUnblocks(t *testing.T) {
	r := newRegion(t, Config{Channels: 2, RequestRingSize: MinRingSize, ResponseRingSize: MinRingSize})
	c := newClient(t, r, clientTable(t))
	stop := make(chan struct{})
	wg := junkHost(r, stop)
	defer func() { close(stop); wg.Wait() }()
	var calls sync.WaitGroup
	for range 3 {
		calls.Go(func() {
			b := []BatchCall{{Call: callEcho, Req: []byte("x"), Resp: make([]byte, 8)}}
			err := within(t, "Batch", func() error { return c.Batch(context.Background(), b) })
			if !errors.Is(err, ErrClosed) {
				t.Errorf("batch after Close: %v", err)
			}
		})
	}
	time.Sleep(liveDeadline)
	if within(t, "Close", c.Close) == errHung {
		return
	}
	calls.Wait()
}

// TestCloseUnmapRace: callers queued on a channel while the client and the
// region are closed must get ErrClosed, never touch the unmapped region
// (which kills the process with SIGSEGV).
func TestCloseUnmapRace(t *testing.T) {
	for round := range 20 {
		host := newRegion(t, smallCfg)
		startServer(t, host, serverTable(t), echoHandler)
		r, err := Attach(host.File(), smallCfg)
		if err != nil {
			t.Fatal(err)
		}
		c, err := NewClient(r, clientTable(t))
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		for range 8 {
			wg.Go(func() {
				resp := make([]byte, 8)
				for {
					if _, err := c.Call(context.Background(), callEcho, []byte("x"), resp); err != nil {
						if !errors.Is(err, ErrClosed) {
							t.Errorf("round %d: %v", round, err)
						}
						return
					}
				}
			})
		}
		time.Sleep(5 * time.Millisecond)
		c.Close()
		r.Close()
		wg.Wait()
	}
}

// TestRetractedIndexRecovers: a host that moves an index backwards once
// and then behaves from the retracted value fails one call, not every call
// after it: the channel resynchronises at the host's indices.
func TestRetractedIndexRecovers(t *testing.T) {
	for _, which := range []string{"request head", "response tail"} {
		t.Run(which, func(t *testing.T) {
			r := newRegion(t, smallCfg)
			c := newClient(t, r, clientTable(t))
			h := newEvilHost(t, r)
			echo := func() callResult {
				res := goCall(c, callEcho, []byte("ok"), 8)
				hd, p := h.recv()
				h.reply(hd.Call, hd.ID, p)
				return <-res
			}
			for range 3 {
				if got := echo(); got.err != nil {
					t.Fatal(got.err)
				}
			}
			switch which {
			case "request head":
				// Forget the last two requests taken: the host now
				// believes they are still in the ring.
				h.head -= 2 * ring.FrameSize(2)
				atomic.StoreUint64(h.word(chReqHead), h.head)
				old := atomic.LoadUint64(h.word(chReqTail))
				if _, err := c.Call(context.Background(), callEcho, []byte("x"), make([]byte, 8)); !errors.Is(err, ErrBadIndex) {
					t.Fatalf("call after the retraction: %v", err)
				}
				// The next call resynchronises before it sends: the host
				// waits for that instead of serving the old requests it
				// believes are pending.
				res := goCall(c, callEcho, []byte("ok"), 8)
				for start := time.Now(); atomic.LoadUint64(h.word(chReqTail)) == old; runtime.Gosched() {
					if time.Since(start) > liveSlack {
						t.Fatal("the client never resynchronised its request tail")
					}
				}
				hd, p := h.recv()
				h.reply(hd.Call, hd.ID, p)
				if got := <-res; got.err != nil || string(got.out) != "ok" {
					t.Fatalf("first call after the retraction: %q, %v", got.out, got.err)
				}
			case "response tail":
				// Take back the last two answers.
				h.tail -= 2 * ring.FrameSize(2)
				h.publish(h.tail)
				res := goCall(c, callEcho, []byte("x"), 8)
				hd, p := h.recv()
				// The host's own view: everything up to its tail was
				// consumed, so the frame goes where the client already
				// read.
				tail, err := h.resp.Write(h.tail, h.tail, ring.Header{Call: hd.Call, ID: hd.ID}, p)
				if err != nil {
					t.Fatal(err)
				}
				h.tail = tail
				h.publish(tail)
				if got := <-res; !errors.Is(got.err, ErrBadIndex) {
					t.Fatalf("call after the retraction: %v", got.err)
				}
			}
			for i := range 3 {
				if got := echo(); got.err != nil || string(got.out) != "ok" {
					t.Fatalf("call %d after the retraction: %q, %v", i, got.out, got.err)
				}
			}
		})
	}
}

// TestBatchOnFullRing: a batch that starts on a request ring the host
// never drained sends nothing at first and waits from its first step; it
// still ends at its deadline.
func TestBatchOnFullRing(t *testing.T) {
	r := newRegion(t, smallCfg)
	c := newClient(t, r, clientTable(t))
	for round := range 2 {
		calls := make([]BatchCall, 256) // more than the 4 KiB ring holds
		for i := range calls {
			calls[i] = BatchCall{Call: callEcho, Req: make([]byte, 32), Resp: make([]byte, 64)}
		}
		ctx, cancel := context.WithTimeout(context.Background(), liveDeadline)
		err := within(t, "Batch", func() error { return c.Batch(ctx, calls) })
		cancel()
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("round %d: %v", round, err)
		}
	}
}
