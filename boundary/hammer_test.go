package boundary

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"sync"
	"testing"
)

// TestHammer: P goroutines × N calls on each of two regions at once, with
// GOMAXPROCS small so the goroutines interleave on few threads, mixing
// single calls and batches. Every response must be the one for its request.
// Run under -race; no timing assertions.
func TestHammer(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(2))
	const (
		P = 8
		N = 200
	)
	if testing.Short() {
		t.Skip("hammer skipped in -short")
	}
	type pair struct {
		c *Client
		s *Server
	}
	var pairs []pair
	for range 2 {
		// Fewer channels than goroutines, so channels are contended too.
		r := newRegion(t, Config{Channels: 3, RequestRingSize: MinRingSize, ResponseRingSize: MinRingSize})
		s := startServer(t, r, serverTable(t), echoHandler)
		pairs = append(pairs, pair{newClient(t, r, clientTable(t)), s})
	}
	var wg sync.WaitGroup
	errs := make(chan error, 2*P)
	for pi, p := range pairs {
		for g := range P {
			wg.Go(func() {
				ctx := context.Background()
				req := make([]byte, 64)
				resp := make([]byte, 1024)
				batch := make([]BatchCall, 16)
				for i := range N {
					fill := func(b []byte, k int) []byte {
						n := 16 + (g*31+i*7+k)%200
						b = b[:0]
						b = binary.LittleEndian.AppendUint64(b, uint64(pi<<48|g<<32|i<<8|k))
						return append(b, bytes.Repeat([]byte{byte(i + k)}, n-8)...)
					}
					if i%10 == 9 {
						for k := range batch {
							batch[k] = BatchCall{Call: callEcho, Req: fill(nil, k), Resp: make([]byte, 256)}
						}
						if err := p.c.Batch(ctx, batch); err != nil {
							errs <- err
							return
						}
						for k, bc := range batch {
							if bc.Err != nil || !bytes.Equal(bc.Resp[:bc.N], bc.Req) {
								errs <- fmt.Errorf("region %d goroutine %d batch %d call %d: %v", pi, g, i, k, bc.Err)
								return
							}
						}
						continue
					}
					req = fill(req, 0)
					n, err := p.c.Call(ctx, callEcho, req, resp)
					if err != nil || !bytes.Equal(resp[:n], req) {
						errs <- fmt.Errorf("region %d goroutine %d call %d: %v", pi, g, i, err)
						return
					}
				}
			})
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	for i, p := range pairs {
		cc, sc := p.c.Counters(), p.s.Counters()
		want := uint64(P * (N - N/10 + N/10*16))
		if cc.Calls != want || sc.Calls != want {
			t.Errorf("region %d: client calls %d, server calls %d, want %d", i, cc.Calls, sc.Calls, want)
		}
		if cc.BadIndex+cc.MalformedFrames+cc.UnknownIDs+cc.DuplicateIDs+cc.StaleResponses+sc.BadIndex+sc.MalformedFrames != 0 {
			t.Errorf("region %d: protocol errors: client %+v server %+v", i, cc, sc)
		}
		t.Logf("region %d: client %+v", i, cc)
	}
}

// childEnv marks the test binary re-executed as the enclave process.
const childEnv = "CLOISTER_BOUNDARY_TEST_CHILD"

// childCfg is the geometry both processes agree on out of band, as the
// enclave's configuration would fix it.
var childCfg = Config{Channels: 2, RequestRingSize: 1 << 16, ResponseRingSize: 1 << 16}

func TestMain(m *testing.M) {
	switch os.Getenv(childEnv) {
	case "":
		os.Exit(m.Run())
	case "roundtrip":
		if err := childRoundTrips(); err != nil {
			fmt.Fprintln(os.Stderr, "child:", err)
			os.Exit(1)
		}
		os.Exit(0)
	case "bench-server":
		if err := childServe(); err != nil {
			fmt.Fprintln(os.Stderr, "child:", err)
			os.Exit(1)
		}
		os.Exit(0)
	case "bench-uds":
		udsEcho(os.NewFile(3, "uds"))
		os.Exit(0)
	case "bench-pingpong":
		f := os.NewFile(3, "boundary")
		r, err := Attach(f, childCfg)
		if err != nil {
			fmt.Fprintln(os.Stderr, "child:", err)
			os.Exit(1)
		}
		pingPongPeer(r)
		os.Exit(0)
	}
}

// childRoundTrips is the enclave side in a separate process: attach the
// region from fd 3 and make verified round trips.
func childRoundTrips() error {
	f := os.NewFile(3, "boundary")
	r, err := Attach(f, childCfg)
	if err != nil {
		return err
	}
	f.Close()
	defer r.Close()
	tb, err := NewTable(testCalls...)
	if err != nil {
		return err
	}
	c, err := NewClient(r, tb)
	if err != nil {
		return err
	}
	defer c.Close()
	ctx := context.Background()
	resp := make([]byte, 1024)
	for i := range 2000 {
		req := bytes.Repeat([]byte{byte(i)}, i%1000)
		n, err := c.Call(ctx, callEcho, req, resp)
		if err != nil {
			return fmt.Errorf("call %d: %w", i, err)
		}
		if !bytes.Equal(resp[:n], req) {
			return fmt.Errorf("call %d: echo mismatch", i)
		}
	}
	calls := make([]BatchCall, 100)
	for i := range calls {
		calls[i] = BatchCall{Call: callEcho, Req: []byte{byte(i)}, Resp: make([]byte, 1)}
	}
	if err := c.Batch(ctx, calls); err != nil {
		return err
	}
	for i, bc := range calls {
		if bc.Err != nil || bc.N != 1 || bc.Resp[0] != byte(i) {
			return fmt.Errorf("batch call %d: %v", i, bc.Err)
		}
	}
	if _, err := c.Call(ctx, callFail, nil, resp); err == nil {
		return fmt.Errorf("failing call succeeded")
	}
	return nil
}

// startChild re-executes the test binary as the enclave child with the
// region's memfd as fd 3.
func startChild(t testing.TB, r *Region, mode string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+mode)
	cmd.ExtraFiles = []*os.File{r.File()}
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return cmd
}

// TestChildProcess: a real enclave process attaches the memfd passed via
// ExtraFiles and makes round trips to the host's Server in this process.
func TestChildProcess(t *testing.T) {
	r := newRegion(t, childCfg)
	s := startServer(t, r, serverTable(t), echoHandler)
	cmd := startChild(t, r, "roundtrip")
	if err := cmd.Wait(); err != nil {
		t.Fatalf("child: %v", err)
	}
	if sc := s.Counters(); sc.Calls != 2101 || sc.RemoteErrors != 1 {
		t.Fatalf("server counters %+v", sc)
	}
}

// childServe runs an echo Server in the child process until the parent
// closes stdin (used by the process benchmark).
func childServe() error {
	f := os.NewFile(3, "boundary")
	r, err := Attach(f, childCfg)
	if err != nil {
		return err
	}
	f.Close()
	tb, err := NewTable(testCalls...)
	if err != nil {
		return err
	}
	s, err := NewServer(r, tb, echoHandler)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		var b [1]byte
		os.Stdin.Read(b[:]) // EOF when the parent is done
		cancel()
	}()
	s.Serve(ctx)
	return r.Close()
}
