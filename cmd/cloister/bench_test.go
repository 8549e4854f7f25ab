package main

import (
	"encoding/json"
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
	if os.Getenv(benchboundary.ChildEnv) != "" || (len(os.Args) > 1 && os.Args[1] == demoAppCommand) {
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
		{"bench", "boundary", "extra"},
	} {
		if r := runCLI(t, args...); r.code != exitUsage {
			t.Errorf("%q: exit %d, want %d\n%s", args, r.code, exitUsage, r)
		}
	}
}
