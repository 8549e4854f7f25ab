package benchboundary

import (
	"bytes"
	"context"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// The full run (two processes) is tested through the command, in
// cmd/cloister/bench_test.go. These tests cover the pieces in one process.

func TestMedian(t *testing.T) {
	for _, tc := range []struct {
		in   []float64
		want float64
	}{
		{nil, 0},
		{[]float64{3}, 3},
		{[]float64{5, 1, 3}, 3},
		{[]float64{4, 1, 3, 2}, 2.5},
	} {
		in := append([]float64(nil), tc.in...)
		if got := median(in); got != tc.want {
			t.Errorf("median(%v) = %v, want %v", tc.in, got, tc.want)
		}
		for i := range in {
			if in[i] != tc.in[i] {
				t.Fatalf("median reordered its input: %v", in)
			}
		}
	}
	s := []sample{{Calls: 10, Ns: 1000}, {Calls: 10, Ns: 3000}, {Calls: 10, Ns: 2000}}
	if got := medianNsPerCall(s); got != 200 {
		t.Errorf("medianNsPerCall = %v, want 200", got)
	}
	if got := medianRate(s); got != 1e7/2 {
		t.Errorf("medianRate = %v, want %v", got, 1e7/2)
	}
	if got := ratio(1, 0); got != 0 {
		t.Errorf("ratio(1, 0) = %v, want 0", got)
	}
}

func TestOptionsValidate(t *testing.T) {
	o, err := Options{Exe: "x"}.validate()
	if err != nil || o.Duration != DefaultDuration || o.Reps != DefaultReps || o.MaxCalls != DefaultMaxCalls || o.Log == nil {
		t.Fatalf("defaults: %+v, %v", o, err)
	}
	for _, bad := range []Options{
		{},
		{Exe: "x", Duration: -time.Second},
		{Exe: "x", Reps: -1},
		{Exe: "x", Reps: 1001},
		{Exe: "x", MaxCalls: -1},
		{Exe: "x", Duration: time.Nanosecond},
	} {
		if _, err := bad.validate(); err == nil {
			t.Errorf("%+v: accepted", bad)
		}
		if _, err := Run(context.Background(), bad); err == nil {
			t.Errorf("Run(%+v): accepted", bad)
		}
	}
}

func TestRawCodec(t *testing.T) {
	c := rawCodec{}
	in := []byte("sixty-four bytes, more or less")
	b, err := c.Marshal(&in)
	if err != nil || !bytes.Equal(b, in) {
		t.Fatalf("Marshal = %q, %v", b, err)
	}
	out := make([]byte, 0, 4)
	if err := c.Unmarshal(b, &out); err != nil || !bytes.Equal(out, in) {
		t.Fatalf("Unmarshal = %q, %v", out, err)
	}
	if _, err := c.Marshal("not bytes"); err == nil {
		t.Error("Marshal accepted a string")
	}
	if err := c.Unmarshal(b, new(string)); err == nil {
		t.Error("Unmarshal accepted a *string")
	}
}

func socketPair(t *testing.T) (int, int) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	return fds[0], fds[1]
}

func TestUDSEcho(t *testing.T) {
	a, z := socketPair(t)
	defer unix.Close(a)
	done := make(chan struct{})
	go func() { defer close(done); udsEcho(z) }()
	u := newUDSClient(a)
	copy(u.req, "ping")
	if n, err := u.roundTrip(10); n != 10 || err != nil {
		t.Fatalf("roundTrip = %d, %v", n, err)
	}
	if !bytes.Equal(u.resp, u.req) {
		t.Errorf("echo %q, want %q", u.resp, u.req)
	}
	if n, err := u.pipelined(); n != udsDepth || err != nil {
		t.Fatalf("pipelined = %d, %v", n, err)
	}
	unix.Shutdown(z, unix.SHUT_RDWR) // the host's way to stop the echo
	<-done
	unix.Close(z)
	if _, err := u.roundTrip(1); err == nil {
		t.Error("round trip after shutdown succeeded")
	}
}

func TestGRPCEcho(t *testing.T) {
	a, z := socketPair(t)
	hostConn, err := netConn(os.NewFile(uintptr(a), "host"))
	if err != nil {
		t.Fatal(err)
	}
	childConn, err := netConn(os.NewFile(uintptr(z), "child"))
	if err != nil {
		t.Fatal(err)
	}
	s := newGRPCServer()
	served := make(chan error, 1)
	go func() { served <- s.Serve(newOneConnListener(hostConn)) }()
	cc, err := newGRPCClient(childConn)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for i := range 3 {
		in, out := bytes.Repeat([]byte{byte(i)}, msgSize), []byte(nil)
		if err := cc.Invoke(ctx, grpcMethod, &in, &out); err != nil {
			t.Fatalf("Invoke: %v", err)
		}
		if !bytes.Equal(in, out) {
			t.Fatalf("echo %x, want %x", out, in)
		}
	}
	cc.Close()
	s.Stop()
	if err := <-served; err != nil {
		t.Errorf("Serve: %v", err)
	}
}

func TestOneConnListenerClose(t *testing.T) {
	a, b := net.Pipe()
	defer b.Close()
	l := newOneConnListener(a)
	l.Close()
	l.Close()
	if _, err := l.Accept(); err == nil {
		// The select may pick the queued connection first; the next
		// Accept must fail.
		if _, err := l.Accept(); err == nil {
			t.Fatal("Accept after Close succeeded twice")
		}
	}
}

func TestPingPongInProcess(t *testing.T) {
	host, err := newSharedPage()
	if err != nil {
		t.Fatal(err)
	}
	defer host.close()
	peer, err := mapPage(host.file) // a second mapping of the same page
	if err != nil {
		t.Fatal(err)
	}
	defer peer.close()
	host.reset()
	var wg sync.WaitGroup
	wg.Go(func() { host.echo(context.Background()) })
	var seq uint64
	n, err := peer.ping(&seq, 1000)
	peer.word(offStop).Store(1)
	wg.Wait()
	if n != 1000 || err != nil || seq != 1000 {
		t.Fatalf("ping = %d, %v (seq %d)", n, err, seq)
	}
}

func TestSerialBounds(t *testing.T) {
	var made int64
	rep := serial(7, func(n int64) (int64, error) { made += n; return n, nil })
	s, err := rep(time.Hour, 20)
	if err != nil || s.Calls != 20 || made != 20 {
		t.Fatalf("serial with maxCalls 20: %+v, %v, made %d", s, err, made)
	}
	made = 0
	s, err = rep(0, 1000)
	if err != nil || s.Calls != 7 {
		t.Fatalf("serial with no time: %+v, %v (want one step)", s, err)
	}
}

// A child that exits at once fails the run with an error that says so; the
// host releases everything and does not hang.
func TestRunChildGone(t *testing.T) {
	exe, err := exec.LookPath("true")
	if err != nil {
		t.Skip("no true(1)")
	}
	_, err = Run(context.Background(), Options{Exe: exe, Duration: 10 * time.Millisecond, Reps: 1})
	if err == nil || !strings.Contains(err.Error(), "enclave side") {
		t.Fatalf("Run with a child that exits: %v", err)
	}
	t.Log(err)
}
