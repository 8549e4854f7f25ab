package main

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/cloister-dev/cloister/internal/benchboundary"
)

// runBenchBoundary measures the host↔enclave boundary: this process is the
// host and re-executes its own binary (with benchboundary.ChildEnv set, the
// hidden enclave-side mode of this same command) as the enclave.
func runBenchBoundary(e *env, args []string) error {
	if os.Getenv(benchboundary.ChildEnv) != "" {
		return benchboundary.Child(e.ctx)
	}
	if os.Getenv(benchboundary.BurnEnv) != "" {
		return benchboundary.Burn(e.ctx)
	}
	fs := newFlagSet("bench boundary", "[--json] [--duration D] [--calls N] [--reps R] [--load N]",
		`Measure 64-byte request/response round trips between this process (the host)
and a child process (the enclave side) over the shared-memory rings, a Unix
socket pair (one system call per message: the stand-in for an enclave
transition), gRPC over a Unix socket, and a cache-line ping-pong through shared
memory (the physical limit); then batched throughput over the rings and
pipelined throughput over the socket. Each figure is the median of --reps
repetitions. Targets (reported, not asserted): rings at least 20x faster than
the socket and within 3x of the ping-pong per round trip, and at least 5 million
calls/s batched. Figures on a small or busy machine are noisy. --load N starts
N CPU-burning processes for the run (and stops them) to measure under load.
`)
	jsonOut := fs.Bool("json", false, "print the figures as one JSON object")
	duration := fs.Duration("duration", benchboundary.DefaultDuration, "time per measurement, shared by one warm-up and the repetitions")
	calls := fs.Int64("calls", benchboundary.DefaultMaxCalls, "at most `N` calls per repetition")
	reps := fs.Int("reps", benchboundary.DefaultReps, "repetitions per measurement (the median is reported)")
	load := fs.Int("load", 0, "start `N` CPU-burning processes for the run")
	if err := parseNoArgs(e, fs, args); err != nil {
		return err
	}
	switch {
	case *duration <= 0:
		return usagef("--duration %v: want a positive duration", *duration)
	case *calls < 1:
		return usagef("--calls %d: want at least 1", *calls)
	case *reps < 1 || *reps > 1000:
		return usagef("--reps %d: want 1..1000", *reps)
	case *load < 0 || *load > benchboundary.MaxLoad:
		return usagef("--load %d: want 0..%d", *load, benchboundary.MaxLoad)
	}
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find this program to start the enclave side: %w", err)
	}
	stderr := &syncWriter{w: e.stderr} // the log and the child's stderr copier share it
	ctx, stop := signal.NotifyContext(e.ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	res, err := benchboundary.Run(ctx, benchboundary.Options{
		Duration: *duration,
		Reps:     *reps,
		MaxCalls: *calls,
		Exe:      exe,
		Args:     []string{"bench", "boundary"},
		Stderr:   stderr,
		Log:      slog.New(slog.NewTextHandler(stderr, nil)),
		Load:     *load,
	})
	if err != nil {
		return err
	}
	if *jsonOut {
		return printJSON(e.stdout, res)
	}
	return printBenchBoundary(e, res)
}

// printBenchBoundary prints the figures as a table for people.
func printBenchBoundary(e *env, r *benchboundary.Result) error {
	rep := time.Duration(r.RepNs)
	if rep >= 10*time.Millisecond {
		rep = rep.Round(time.Millisecond)
	} else {
		rep = rep.Round(time.Microsecond)
	}
	row := func(name, value, note string) {
		fmt.Fprintln(e.stdout, strings.TrimRight(fmt.Sprintf("  %-38s %14s  %s", name, value, note), " "))
	}
	fmt.Fprintf(e.stdout, "Round trip, %d-byte request and response (median of %d x %v):\n", r.MessageBytes, r.Reps, rep)
	row("rings", fmt.Sprintf("%.0f ns", r.RingRTTNs), fmt.Sprintf("(%.3f futex sleeps per call)", r.RingSleepsPerCall))
	row("Unix socket (1 syscall per message)", fmt.Sprintf("%.0f ns", r.UDSRTTNs), fmt.Sprintf("rings %.1fx faster (target >= 20x)", r.RingVsUDS))
	row("gRPC over Unix socket", fmt.Sprintf("%.0f ns", r.GRPCUDSRTTNs), fmt.Sprintf("rings %.1fx faster", r.RingVsGRPC))
	row("cache-line ping-pong (the limit)", fmt.Sprintf("%.0f ns", r.PingPongRTTNs), fmt.Sprintf("rings at %.2fx of it (target <= 3x)", r.RingVsPingPong))
	fmt.Fprintf(e.stdout, "Throughput, many calls in flight:\n")
	row(fmt.Sprintf("rings (%d goroutines x Batch of %d)", r.BatchGoroutines, r.BatchSize), fmt.Sprintf("%.2fM calls/s", r.RingCallsPerS/1e6), "(target >= 5M)")
	row(fmt.Sprintf("Unix socket (%d pipelined)", r.UDSDepth), fmt.Sprintf("%.2fM calls/s", r.UDSCallsPerS/1e6), "")
	_, err := fmt.Fprintf(e.stdout, "%d CPUs, %d CPU-burning processes alongside; figures on a small or busy machine vary from run to run.\n", r.CPUs, r.Load)
	return err
}

// syncWriter serialises writes from several goroutines to one writer.
type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}
