package main

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/cloister-dev/cloister/internal/benchboundary"
)

// TestMain lets this test binary be the enclave side of `bench boundary`
// and the demo's app: those commands re-execute their own binary (with
// benchboundary.ChildEnv set, or as "demo-app"), which under `go test` is
// this binary, so it must dispatch the same way main does.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == cvmTestApp {
		runCVMTestApp() // exits
	}
	isBundle, err := selfBundle() // as main: fail closed
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(exitFailed)
	}
	if isBundle { // a bundle made by the tests from this binary
		runBundleLoader(os.Args[1:])
	}
	if os.Getenv(benchboundary.ChildEnv) != "" || os.Getenv(benchboundary.BurnEnv) != "" || (len(os.Args) > 1 && (os.Args[1] == demoAppCommand || os.Args[1] == ledgerNodeCommand)) {
		os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr, time.Now))
	}
	os.Exit(m.Run())
}

// The JSON has every contract key with a positive value. No timing is
// asserted: the figures depend on the machine.
func TestBenchBoundaryJSON(t *testing.T) {
	r := runCLI(t, "bench", "boundary", "--json", "--duration", "30ms", "--reps", "3")
	if r.code != 0 {
		t.Fatalf("bench boundary failed:\n%s", r)
	}
	var got map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &got); err != nil {
		t.Fatalf("stdout is not one JSON object: %v\n%s", err, r)
	}
	for _, k := range []string{"ring_rtt_ns", "uds_rtt_ns", "grpc_uds_rtt_ns", "pingpong_rtt_ns", "ring_calls_per_s", "uds_calls_per_s"} {
		v, ok := got[k].(float64)
		if !ok || !(v > 0) {
			t.Errorf("%s = %v, want a positive number", k, got[k])
		}
	}
	if v, ok := got["ring_sleeps_per_call"].(float64); !ok || v < 0 {
		t.Errorf("ring_sleeps_per_call = %v, want a number >= 0", got["ring_sleeps_per_call"])
	}
	if got["load"] != 0.0 {
		t.Errorf("load = %v, want 0", got["load"])
	}
}

// --load N runs N burners for the run, reports N, and leaves none behind.
func TestBenchBoundaryLoad(t *testing.T) {
	r := runCLI(t, "bench", "boundary", "--json", "--duration", "30ms", "--reps", "1", "--load", "2")
	if r.code != 0 {
		t.Fatalf("bench boundary --load 2 failed:\n%s", r)
	}
	var got map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &got); err != nil {
		t.Fatalf("stdout is not one JSON object: %v\n%s", err, r)
	}
	if got["load"] != 2.0 {
		t.Errorf("load = %v, want 2", got["load"])
	}
	if v, ok := got["ring_rtt_ns"].(float64); !ok || !(v > 0) {
		t.Errorf("ring_rtt_ns = %v under load", got["ring_rtt_ns"])
	}
	// Every burner was stopped and reaped: no child of this process is
	// left running the burn mode.
	if left := burnersLeft(t); left != 0 {
		t.Errorf("%d burners still running after the run", left)
	}
}

// burnersLeft counts the processes whose parent is this process and whose
// environment marks them as burners.
func burnersLeft(t *testing.T) int {
	t.Helper()
	dirs, err := os.ReadDir("/proc")
	if err != nil {
		t.Skipf("no /proc: %v", err)
	}
	n := 0
	for _, d := range dirs {
		env, err := os.ReadFile("/proc/" + d.Name() + "/environ")
		if err != nil || !strings.Contains(string(env), benchboundary.BurnEnv+"=1") {
			continue
		}
		stat, err := os.ReadFile("/proc/" + d.Name() + "/stat")
		if err != nil {
			continue
		}
		// stat: pid (comm) state ppid ...
		f := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:]))
		if len(f) > 1 && f[1] == fmt.Sprint(os.Getpid()) {
			n++
		}
	}
	return n
}

func TestBenchBoundaryTable(t *testing.T) {
	r := runCLI(t, "bench", "boundary", "--duration", "10ms", "--reps", "1", "--calls", "50")
	if r.code != 0 {
		t.Fatalf("bench boundary failed:\n%s", r)
	}
	for _, want := range []string{"rings", "Unix socket", "gRPC", "ping-pong", "calls/s"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("table lacks %q:\n%s", want, r.stdout)
		}
	}
}

func TestBenchBoundaryUsage(t *testing.T) {
	for _, args := range [][]string{
		{"bench", "boundary", "--duration", "0s"},
		{"bench", "boundary", "--calls", "0"},
		{"bench", "boundary", "--reps", "0"},
		{"bench", "boundary", "--load", "-1"},
		{"bench", "boundary", "--load", "65"},
		{"bench", "boundary", "extra"},
	} {
		if r := runCLI(t, args...); r.code != exitUsage {
			t.Errorf("%q: exit %d, want %d\n%s", args, r.code, exitUsage, r)
		}
	}
}
