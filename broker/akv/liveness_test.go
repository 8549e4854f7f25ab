package akv

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
)

// A hung authority never holds a release past its caller's context: while
// one caller's fetch hangs, callers whose contexts end return at once
// (they wait for the fetch, not on a lock held across it), and a caller
// giving up does not count as the authority's failure.
func TestHungAuthorityReleasesWaiters(t *testing.T) {
	for _, mk := range []func(*httptest.Server) KeySource{
		func(s *httptest.Server) KeySource { return &RemoteKeys{URL: s.URL + "/certs", Client: s.Client()} },
		func(s *httptest.Server) KeySource { return &discoveredKeys{issuer: s.URL, client: s.Client()} },
	} {
		hang := make(chan struct{})
		arrived := make(chan struct{}, 1)
		srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			select {
			case arrived <- struct{}{}:
			default:
			}
			select {
			case <-hang:
			case <-r.Context().Done():
			}
		}))
		ks := mk(srv)
		fetcher := make(chan error, 1)
		go func() { _, err := ks.Key(context.Background(), "k"); fetcher <- err }()
		<-arrived // the first caller's fetch is in progress, and hangs
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		var wg sync.WaitGroup
		errs := make([]error, 4)
		for i := range errs {
			wg.Go(func() { _, errs[i] = ks.Key(ctx, "k") })
		}
		wg.Wait() // returns only if the waiters honour their contexts
		for i, err := range errs {
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("%T waiter %d: %v, want context.Canceled", ks, i, err)
			}
		}
		close(hang)
		if err := <-fetcher; err == nil {
			t.Fatalf("%T: the hung fetch produced a key", ks)
		}
		if d, ok := ks.(*discoveredKeys); ok {
			d.mu.Lock()
			if d.inflight != nil {
				t.Fatal("discovery still marked in flight")
			}
			d.mu.Unlock()
		}
		srv.Close()
	}
}
