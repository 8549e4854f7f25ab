package boundary

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
)

// TestTypedStatus: the status a caller branches on is the error response's
// code, set from the handler error's type (errors.Is), never from its
// text: a wrapped ErrWouldBlock or ErrNotFound answers CodeWouldBlock or
// CodeNotFound whatever its message, and a plain error whose text is
// "would block" answers CodeHandler and is not ErrWouldBlock. Deferred
// replies (Reply.Fail) map the same way.
func TestTypedStatus(t *testing.T) {
	cases := []struct {
		name     string
		err      error
		code     Code
		is, isnt error
	}{
		{"wrapped would block", fmt.Errorf("conn 7: %w", ErrWouldBlock), CodeWouldBlock, ErrWouldBlock, ErrNotFound},
		{"bare would block", ErrWouldBlock, CodeWouldBlock, ErrWouldBlock, ErrNotFound},
		{"wrapped not found", fmt.Errorf("key %q: %w", "k", ErrNotFound), CodeNotFound, ErrNotFound, ErrWouldBlock},
		{"text only, would block", errors.New("would block"), CodeHandler, ErrRemote, ErrWouldBlock},
		{"text only, not found", errors.New("not found"), CodeHandler, ErrRemote, ErrNotFound},
	}
	r := newRegion(t, smallCfg)
	var current atomic.Pointer[error] // set by the test, read by the Serve goroutine
	_, got, c := serveDeferred(t, r, func(call uint32, req, resp []byte) (int, error) {
		if call == callFail {
			return 0, *current.Load()
		}
		return copy(resp, req), nil
	})
	check := func(t *testing.T, err error, want Code, is, isnt error) {
		t.Helper()
		var re *RemoteError
		if !errors.As(err, &re) || re.Code != want {
			t.Fatalf("err = %v, want a RemoteError with %v", err, want)
		}
		if !errors.Is(err, is) || errors.Is(err, isnt) || !errors.Is(err, ErrRemote) {
			t.Fatalf("err = %v: errors.Is %v = %v, %v = %v", err, is, errors.Is(err, is), isnt, errors.Is(err, isnt))
		}
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			current.Store(&tc.err)
			_, err := c.Call(context.Background(), callFail, nil, nil)
			check(t, err, tc.code, tc.is, tc.isnt)

			res := goCall(c, callEcho, []byte("later"), 64)
			d := <-got
			d.reply.Fail(tc.err)
			check(t, (<-res).err, tc.code, tc.is, tc.isnt)
		})
	}
}
