package enclave

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/cloister-dev/cloister/boundary/boundarytest"
	"github.com/cloister-dev/cloister/host"
)

// echoPeer is a TCP server that echoes each connection until it closes,
// and hands the test its side of every connection.
func echoPeer(t *testing.T) (net.Listener, <-chan net.Conn) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	conns := make(chan net.Conn, 256)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			conns <- c
		}
	}()
	t.Cleanup(func() {
		l.Close()
		for {
			select {
			case c := <-conns:
				c.Close()
			default:
				return
			}
		}
	})
	return l, conns
}

// TestIdleConnsDoNotStarvePromptCalls: more connections than the channels
// have slots (4 x 64; 60 each may block) each have a Read waiting for data
// (idle keep-alive connections). Storage and time calls still go through
// within their deadline (prompt calls keep their slots and response
// space), and every Read, the ones waiting for a slot included, gets its
// byte once the peers write.
func TestIdleConnsDoNotStarvePromptCalls(t *testing.T) {
	env := newTestEnv(t, host.ServiceOptions{})
	peer, peerConns := echoPeer(t)
	const n = 4*64 + 8 // above every slot of the region's channels
	type result struct {
		i   int
		b   byte
		err error
	}
	results := make(chan result, n)
	var peers []net.Conn
	var conns []net.Conn
	for i := range n {
		c, err := env.Dial("tcp", peer.Addr().String())
		if err != nil {
			t.Fatalf("dial %d: %v", i, err)
		}
		defer c.Close()
		conns = append(conns, c)
		peers = append(peers, <-peerConns)
	}
	for i, c := range conns {
		go func() {
			var b [1]byte
			_, err := io.ReadFull(c, b[:])
			results <- result{i, b[0], err}
		}()
	}
	time.Sleep(100 * time.Millisecond) // let the reads reach the host (no assertion on it)
	ctx, cancel := context.WithTimeout(context.Background(), liveDeadline+liveSlack)
	defer cancel()
	if _, err := env.UntrustedNow(ctx); err != nil {
		t.Fatalf("time call beside %d waiting reads: %v", n, err)
	}
	if err := env.Store().Put(ctx, []byte("k"), []byte("v")); err != nil {
		t.Fatalf("storage call beside %d waiting reads: %v", n, err)
	}
	for i, p := range peers {
		if _, err := p.Write([]byte{byte(i)}); err != nil {
			t.Fatal(err)
		}
	}
	for k := range n {
		select {
		case r := <-results:
			if r.err != nil || r.b != byte(r.i) {
				t.Fatalf("read %d: %#x, %v; want %#x", r.i, r.b, r.err, byte(r.i))
			}
		case <-time.After(10 * liveSlack): // a hang detector
			t.Fatalf("%d of %d reads never got their byte", n-k, n)
		}
	}
}

// TestSlowStoreDoesNotStallNetwork: while a storage write is stuck in the
// store (a long fsync), network calls on other channels proceed: a
// connection's write, echoed back, and read.
func TestSlowStoreDoesNotStallNetwork(t *testing.T) {
	st := slowStore{host.NewMemStore(), make(chan struct{}, 1), make(chan struct{})}
	env := newTestEnv(t, host.ServiceOptions{Store: st})
	release := sync.OnceFunc(func() { close(st.release) })
	t.Cleanup(release)
	peer, peerConns := echoPeer(t)
	c, err := env.Dial("tcp", peer.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	p := <-peerConns
	go io.Copy(p, p)

	put := make(chan error, 1)
	go func() { put <- env.Store().Put(context.Background(), []byte("k"), []byte("v")) }()
	<-st.entered
	c.SetDeadline(time.Now().Add(liveDeadline + liveSlack))
	for i := range 5 {
		msg := []byte{'m', byte('0' + i)}
		if _, err := c.Write(msg); err != nil {
			t.Fatalf("write %d while a put is stuck in the store: %v", i, err)
		}
		got := make([]byte, len(msg))
		if _, err := io.ReadFull(c, got); err != nil || string(got) != string(msg) {
			t.Fatalf("read %d while a put is stuck in the store: %q, %v", i, got, err)
		}
	}
	release()
	if err := <-put; err != nil {
		t.Fatal(err)
	}
}

// TestSDKUnderConcurrentMutation: a hostile host scribbles on the shared
// region (indices, wait words, frame headers, ring bytes) while the real
// host keeps serving and the SDK makes calls of every kind from several
// goroutines. Every call returns within its deadline plus a generous bound
// (no hang, no panic; errors are expected), and once the scribbling stops
// the calls succeed again. Run under -race; bounded in time.
func TestSDKUnderConcurrentMutation(t *testing.T) {
	dur := 1500 * time.Millisecond
	if testing.Short() {
		dur = 300 * time.Millisecond
	}
	th := newTestHost(t, host.ServiceOptions{})
	env := th.env
	peer, peerConns := echoPeer(t)
	go func() {
		for p := range peerConns {
			go io.Copy(p, p)
		}
	}()
	ops := map[string]func(ctx context.Context) error{
		"UntrustedNow": func(ctx context.Context) error { _, err := env.UntrustedNow(ctx); return err },
		"Store.Put":    func(ctx context.Context) error { return env.Store().Put(ctx, []byte("k"), []byte("v")) },
		"Store.Get": func(ctx context.Context) error {
			_, err := env.Store().Get(ctx, []byte("k"))
			if errors.Is(err, ErrNotFound) {
				return nil
			}
			return err
		},
		"Store.List": func(ctx context.Context) error { _, err := env.Store().List(ctx, []byte("k")); return err },
		"Dial+echo": func(ctx context.Context) error {
			c, err := env.DialContext(ctx, "tcp", peer.Addr().String())
			if err != nil {
				return err
			}
			defer c.Close()
			d, _ := ctx.Deadline()
			c.SetDeadline(d)
			if _, err := c.Write([]byte("ping")); err != nil {
				return err
			}
			b := make([]byte, 4)
			if _, err := io.ReadFull(c, b); err != nil {
				return err
			}
			if string(b) != "ping" {
				return errors.New("echo mismatch")
			}
			return nil
		},
	}
	hh, err := boundarytest.Map(th.region.File(), th.region.Config())
	if err != nil {
		t.Fatal(err)
	}
	defer hh.Close()
	hh.Mutate(11)
	end := time.Now().Add(dur)
	var wg sync.WaitGroup
	for name, op := range ops {
		wg.Go(func() {
			for time.Now().Before(end) {
				done := make(chan struct{})
				go func() {
					defer close(done)
					ctx, cancel := context.WithTimeout(context.Background(), liveDeadline)
					defer cancel()
					op(ctx)
				}()
				select {
				case <-done:
				case <-time.After(liveDeadline + liveSlack + closeTimeout):
					t.Errorf("%s: still blocked past its deadline under mutation", name)
					return
				}
			}
		})
	}
	wg.Wait()
	hh.Stop()
	for name, op := range ops {
		// The first calls on a channel resynchronise it (and the host at
		// the enclave's indices): retry for a bounded time.
		var err error
		for give := time.Now().Add(liveDeadline + liveSlack); ; time.Sleep(10 * time.Millisecond) {
			ctx, cancel := context.WithTimeout(context.Background(), liveDeadline+liveSlack)
			err = op(ctx)
			cancel()
			if err == nil || time.Now().After(give) {
				break
			}
		}
		if err != nil {
			t.Errorf("%s after the host behaves again: %v", name, err)
		}
	}
}
