package boundary

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestHostileConcurrentMutation: while the enclave calls through a real
// Server, a hostile host scribbles on the shared region at the same time:
// ring bytes, the frame headers at the enclave's head, every index and
// every wait word. Each call must return within its deadline plus a
// generous bound with success or a named error (never a panic or an
// unnamed error), and once the scribbling stops, calls succeed again with
// the right answers. Run under -race; bounded in time; no speed assertion.
func TestHostileConcurrentMutation(t *testing.T) {
	dur := 1500 * time.Millisecond
	if testing.Short() {
		dur = 300 * time.Millisecond
	}
	cfg := Config{Channels: 2, RequestRingSize: MinRingSize, ResponseRingSize: MinRingSize}
	r := newRegion(t, cfg)
	startServer(t, r, serverTable(t), echoHandler)
	c := newClient(t, r, clientTable(t))
	named := []error{ErrBadIndex, ErrMalformedFrame, ErrUnknownID, ErrDuplicateID, ErrCallMismatch,
		ErrResponseTooLarge, ErrMalformedError, ErrRemote, ErrShortBuffer, context.DeadlineExceeded}

	stop := make(chan struct{})
	var mut sync.WaitGroup
	mut.Go(func() {
		rng := rand.New(rand.NewPCG(7, 8))
		var b [8]byte
		for n := 0; ; n++ {
			select {
			case <-stop:
				return
			default:
			}
			l := r.lay.ch[rng.IntN(len(r.lay.ch))]
			switch rng.IntN(4) {
			case 0: // an index: garbage, or a plausible nearby value
				w := r.u64(l.base + []int{chReqTail, chReqHead, chRespTail, chRespHead}[rng.IntN(4)])
				v := rng.Uint64()
				if rng.IntN(2) == 0 {
					v = atomic.LoadUint64(w) + uint64(rng.IntN(129)-64)&^7
				}
				atomic.StoreUint64(w, v)
			case 1: // a wait word or flag, of either side
				off := []int{offServerWait, l.base + chWait}[rng.IntN(2)] + []int{waitSeq, waitFlag}[rng.IntN(2)]
				atomic.StoreUint32(r.u32(off), rng.Uint32())
			case 2: // the header at the enclave's response head
				head := atomic.LoadUint64(r.u64(l.base + chRespHead))
				binary.LittleEndian.PutUint64(b[:], rng.Uint64())
				copy(r.mem[l.respData+int(head%uint64(r.lay.respSize))&^7:], b[:])
			default: // any ring byte
				base, size := l.reqData, r.lay.reqSize
				if rng.IntN(2) == 0 {
					base, size = l.respData, r.lay.respSize
				}
				r.mem[base+rng.IntN(size)] = byte(rng.Uint32())
			}
			if n%64 == 0 {
				time.Sleep(50 * time.Microsecond) // let the others run
			}
		}
	})

	var lastErr atomic.Value
	lastErr.Store("none")
	// call makes one call (or a batch of 4) with a deadline and reports
	// whether it succeeded with the right answers.
	call := func(g, i int) (bool, error) {
		ctx, cancel := context.WithTimeout(context.Background(), liveDeadline)
		defer cancel()
		req := fmt.Appendf(nil, "g%d-i%d", g, i)
		var ok bool
		err := within(t, "call under mutation", func() error {
			if i%5 == 4 {
				calls := make([]BatchCall, 4)
				for k := range calls {
					calls[k] = BatchCall{Call: callEcho, Req: append(req, byte('a'+k)), Resp: make([]byte, 64)}
				}
				if err := c.Batch(ctx, calls); err != nil {
					return err
				}
				ok = true
				for _, bc := range calls {
					if bc.Err != nil {
						ok = false
						if !isOneOf(bc.Err, named) {
							return bc.Err
						}
					} else if !bytes.Equal(bc.Resp[:bc.N], bc.Req) {
						ok = false
					}
				}
				return nil
			}
			resp := make([]byte, 64)
			n, err := c.Call(ctx, callEcho, req, resp)
			ok = err == nil && bytes.Equal(resp[:n], req)
			return err
		})
		if err != nil {
			lastErr.Store(err.Error())
		} else if !ok {
			lastErr.Store("wrong answer")
		}
		if err != nil && !isOneOf(err, named) {
			return false, fmt.Errorf("goroutine %d call %d: unnamed error: %w", g, i, err)
		}
		return ok, nil
	}

	var callers sync.WaitGroup
	errs := make(chan error, 8)
	deadline := time.Now().Add(dur)
	for g := range 4 {
		callers.Go(func() {
			for i := 0; time.Now().Before(deadline); i++ {
				if _, err := call(g, i); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	callers.Wait()
	close(stop)
	mut.Wait()
	t.Logf("after scribbling: client %+v", c.Counters())

	// The host behaves again: every goroutine gets through within a
	// bounded time, with the right answers. (A server republishes its
	// scribbled indices when it next goes idle; until then calls may fail
	// at once with ErrBadIndex, hence the pause between attempts.)
	for g := range 4 {
		callers.Go(func() {
			var last string
			for i, start := 0, time.Now(); time.Since(start) < liveSlack; i++ {
				if i > 0 {
					time.Sleep(10 * time.Millisecond)
				}
				ok, err := call(g, i)
				if err != nil {
					errs <- err
					return
				}
				if ok {
					return
				}
				last = lastErr.Load().(string)
			}
			errs <- fmt.Errorf("goroutine %d: no call succeeded after the host stopped scribbling; last error: %s", g, last)
		})
	}
	callers.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
