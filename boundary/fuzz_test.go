package boundary

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"

	"github.com/cloister-dev/cloister/boundary/internal/ring"
)

// FuzzClientResponse plays a hostile host at the level of the whole client:
// arbitrary response ring bytes, an arbitrary published tail and an
// arbitrary request head, then two calls. The client must never panic or
// touch memory outside the region; every failure must be a named error; a
// success must respect the call's bound; and the head it publishes must
// stay within what the host published.
func FuzzClientResponse(f *testing.F) {
	seed := make([]byte, MinRingSize)
	rg, _ := ring.New(seed)
	t1, _ := rg.Write(0, 0, ring.Header{Call: callEcho, ID: 1}, []byte("hello"))
	t1, _ = rg.Write(0, t1, ring.Header{Call: callEcho, ID: 2}, []byte("again"))
	f.Add(seed, t1, uint64(0))
	// Typed statuses: a would-block and a not-found error response.
	st := make([]byte, MinRingSize)
	rs, _ := ring.New(st)
	t2, _ := rs.Write(0, 0, ring.Header{Call: callEcho | ErrorFlag, ID: 1}, []byte{byte(CodeWouldBlock), 0, 0, 0, 2, 0, 0, 0, 'w', 'b'})
	t2, _ = rs.Write(0, t2, ring.Header{Call: callEcho | ErrorFlag, ID: 2}, []byte{byte(CodeNotFound), 0, 0, 0, 0, 0, 0, 0})
	f.Add(st, t2, uint64(0))
	f.Add(seed[:64], uint64(16), uint64(0))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff}, uint64(64), uint64(8))
	f.Add([]byte{}, uint64(1<<64-8), uint64(3))

	named := []error{ErrBadIndex, ErrMalformedFrame, ErrUnknownID, ErrDuplicateID, ErrCallMismatch,
		ErrResponseTooLarge, ErrMalformedError, ErrRemote, ErrShortBuffer, context.Canceled}
	typed := map[Code]error{CodeUnknownCall: ErrUnknownCall, CodeWouldBlock: ErrWouldBlock, CodeNotFound: ErrNotFound}
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	ct := clientTable(f)
	f.Fuzz(func(t *testing.T, data []byte, tail, reqHead uint64) {
		r, err := Create(smallCfg)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		l := r.lay.ch[0]
		copy(r.mem[l.respData:l.respData+r.lay.respSize], data)
		atomic.StoreUint64(r.u64(l.base+chRespTail), tail)
		atomic.StoreUint64(r.u64(l.base+chReqHead), reqHead)
		c, err := NewClient(r, ct)
		if err != nil {
			t.Fatal(err)
		}
		resp := make([]byte, 1024)
		for range 2 {
			// Live on entry, ended at the first wait: an empty ring ends
			// the call after the spin phase, deterministically.
			ctx := &endsAfterEntry{Context: cancelled}
			n, err := c.Call(ctx, callEcho, []byte("req"), resp)
			if err != nil {
				if !isOneOf(err, named) {
					t.Fatalf("unnamed error: %v", err)
				}
				var re *RemoteError
				if errors.As(err, &re) && len(re.Message) > MaxErrorMessage {
					t.Fatalf("error message of %d bytes", len(re.Message))
				}
				// A status is its code's alone: no other status matches.
				for code, sentinel := range typed {
					if re != nil && errors.Is(err, sentinel) != (re.Code == code) {
						t.Fatalf("%v: errors.Is(%v) = %v with code %v", err, sentinel, errors.Is(err, sentinel), re.Code)
					}
				}
				continue
			}
			if n < 0 || n > 1024 {
				t.Fatalf("n = %d", n)
			}
		}
		head := atomic.LoadUint64(r.u64(l.base + chRespHead))
		if head != 0 && head-0 > tail-0 {
			t.Fatalf("published head %d beyond the host's tail %d", head, tail)
		}
	})
}

// endsAfterEntry is a context whose first Err (Call's check on entry)
// reports nil and every later one the ended context's error.
type endsAfterEntry struct {
	context.Context
	checked atomic.Bool
}

func (c *endsAfterEntry) Err() error {
	if !c.checked.Swap(true) {
		return nil
	}
	return c.Context.Err()
}
