package boundary

import (
	"context"
	"io"
	"os"
	osexec "os/exec"
	"strconv"
	"sync/atomic"
	"testing"

	"golang.org/x/sys/unix"
)

// BenchmarkRoundTrip compares one 64-byte request/response round trip over
// the rings with the same over a Unix socket pair (a system call per
// message, the stand-in for an enclave transition) and with a bare
// cache-line ping-pong through the same shared memory (the physical limit).
// Ratios are in the package README/report; nothing asserts on them.
func BenchmarkRoundTrip(b *testing.B) {
	b.Run("ring", func(b *testing.B) {
		r := newRegion(b, childCfg)
		startServer(b, r, serverTable(b), echoHandler)
		c := newClient(b, r, clientTable(b))
		benchCalls(b, c)
	})
	b.Run("uds", func(b *testing.B) {
		a, z := socketPair(b)
		defer a.Close()
		go func() { defer z.Close(); udsEcho(z) }()
		benchUDS(b, a)
	})
	b.Run("pingpong", func(b *testing.B) {
		// Two words on separate cache lines of the shared region: the
		// caller writes a sequence number, the peer echoes it back. The
		// minimum any shared-memory protocol can do per round trip.
		r := newRegion(b, childCfg)
		done := make(chan struct{})
		go func() { defer close(done); pingPongPeer(r) }()
		defer func() { atomic.StoreUint64(r.u64(offChannels+chWait), 1); <-done }()
		benchPingPong(b, r)
	})
	b.Run("ring-process", func(b *testing.B) {
		// The server runs in a child process attached to the memfd: the
		// deployment shape, host and enclave in two processes.
		r := newRegion(b, childCfg)
		stop := startBenchChild(b, "bench-server", r.File())
		defer stop()
		benchCalls(b, newClient(b, r, clientTable(b)))
	})
	b.Run("uds-process", func(b *testing.B) {
		a, z := socketPair(b)
		stop := startBenchChild(b, "bench-uds", z)
		z.Close()
		benchUDS(b, a)
		a.Close() // EOF for the child's echo loop, before waiting for it
		stop()
	})
	b.Run("pingpong-process", func(b *testing.B) {
		r := newRegion(b, childCfg)
		stop := startBenchChild(b, "bench-pingpong", r.File())
		defer func() { atomic.StoreUint64(r.u64(offChannels+chWait), 1); stop() }()
		benchPingPong(b, r)
	})
}

// pingPongPeer echoes the ping word into the pong word until the stop word
// is set. It spins with the rings' spin hint (PAUSE) but never sleeps, so
// the comparison with the rings shows their cost above the limit.
func pingPongPeer(r *Region) {
	ping, pong, stop := r.u64(offChannels+chReqTail), r.u64(offChannels+chRespTail), r.u64(offChannels+chWait)
	var seen uint64
	for atomic.LoadUint64(stop) == 0 {
		if v := atomic.LoadUint64(ping); v != seen {
			seen = v
			atomic.StoreUint64(pong, v)
		} else {
			pause()
		}
	}
}

func benchPingPong(b *testing.B, r *Region) {
	ping, pong := r.u64(offChannels+chReqTail), r.u64(offChannels+chRespTail)
	var n uint64
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		n++
		atomic.StoreUint64(ping, n)
		for atomic.LoadUint64(pong) != n {
			pause()
		}
	}
}

func socketPair(b *testing.B) (*os.File, *os.File) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		b.Fatal(err)
	}
	return os.NewFile(uintptr(fds[0]), "uds-a"), os.NewFile(uintptr(fds[1]), "uds-z")
}

// udsEcho echoes 64-byte messages until EOF: one read and one write system
// call per message on each side.
func udsEcho(z *os.File) {
	buf := make([]byte, 64)
	for {
		if _, err := io.ReadFull(z, buf); err != nil {
			return
		}
		if _, err := z.Write(buf); err != nil {
			return
		}
	}
}

func benchUDS(b *testing.B, a *os.File) {
	req, resp := make([]byte, 64), make([]byte, 64)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := a.Write(req); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(a, resp); err != nil {
			b.Fatal(err)
		}
	}
}

func benchCalls(b *testing.B, c *Client) {
	req, resp := make([]byte, 64), make([]byte, 64)
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if n, err := c.Call(ctx, callEcho, req, resp); err != nil || n != 64 {
			b.Fatal(n, err)
		}
	}
	b.StopTimer()
	cc := c.Counters()
	b.ReportMetric(float64(cc.Sleeps)/float64(b.N), "sleeps/op")
}

// startBenchChild re-executes the test binary in mode with f as fd 3 and
// returns a function that closes the child's stdin (its stop signal) and
// waits for it.
func startBenchChild(b *testing.B, mode string, f *os.File) func() {
	b.Helper()
	cmd := osexec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+mode)
	cmd.ExtraFiles = []*os.File{f}
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	return func() {
		stdin.Close()
		if err := cmd.Wait(); err != nil {
			b.Errorf("%s child: %v", mode, err)
		}
	}
}

// BenchmarkBatch measures throughput with many calls in flight: batches of
// 64-byte calls on one channel, answered by the server in batches too.
// ns/op is per call; calls/s is reported as a metric.
func BenchmarkBatch(b *testing.B) {
	for _, size := range []int{16, 64, 256} {
		b.Run(strconv.Itoa(size), func(b *testing.B) {
			r := newRegion(b, childCfg)
			startServer(b, r, serverTable(b), echoHandler)
			c := newClient(b, r, clientTable(b))
			calls := make([]BatchCall, size)
			for i := range calls {
				calls[i] = BatchCall{Call: callEcho, Req: make([]byte, 64), Resp: make([]byte, 64)}
			}
			ctx := context.Background()
			b.ReportAllocs()
			b.ResetTimer()
			done := 0
			for done < b.N {
				if err := c.Batch(ctx, calls); err != nil {
					b.Fatal(err)
				}
				done += size
			}
			b.StopTimer()
			b.ReportMetric(float64(done)/b.Elapsed().Seconds(), "calls/s")
		})
	}
}
