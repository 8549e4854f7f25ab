package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"testing"
	"time"
)

// TestBenchAttestJSON runs a tiny `bench attest --json` and checks the keys
// scripts read; figures are not asserted (timing is not a test).
func TestBenchAttestJSON(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the attestation service and makes sim keys")
	}
	var out bytes.Buffer
	e := &env{ctx: context.Background(), stdin: bytes.NewReader(nil), stdout: &out, stderr: io.Discard, now: time.Now}
	if err := runBenchAttest(e, []string{"--json", "--concurrency", "2", "--requests", "8", "--quotes", "2", "--alg", "ES256"}); err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(out.Bytes(), &got); err != nil {
		t.Fatalf("%v: %s", err, out.Bytes())
	}
	for _, k := range []string{"tokens_per_s", "p50_ms", "p99_ms", "sign_only_per_s", "verify_only_per_s", "ratio_vs_slower_limit", "ceiling_per_s", "ceiling_ratio_vs_slower_limit"} {
		if v, ok := got[k].(float64); !ok || v <= 0 {
			t.Errorf("%s = %v; want a positive figure", k, got[k])
		}
	}
	if v, ok := got["errors"].(float64); !ok || v != 0 {
		t.Errorf("errors = %v, want 0", got["errors"])
	}
}

// TestBenchAttestReplicasJSON runs a tiny `bench attest --replicas 2 --json`:
// both figures of the same run are there, and no token (each validated
// against another replica's /certs) failed.
func TestBenchAttestReplicasJSON(t *testing.T) {
	if testing.Short() {
		t.Skip("starts etcd and the attestation service")
	}
	var out, errs bytes.Buffer
	e := &env{ctx: context.Background(), stdin: bytes.NewReader(nil), stdout: &out, stderr: &errs, now: time.Now}
	if err := runBenchAttest(e, []string{"--json", "--concurrency", "2", "--requests", "12", "--quotes", "2", "--alg", "ES256", "--replicas", "2"}); err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(out.Bytes(), &got); err != nil {
		t.Fatalf("%v: %s", err, out.Bytes())
	}
	for _, k := range []string{"tokens_per_s_1replica", "tokens_per_s_replicas", "replicas_p50_ms", "replicas_vs_1replica"} {
		if v, ok := got[k].(float64); !ok || v <= 0 {
			t.Errorf("%s = %v; want a positive figure", k, got[k])
		}
	}
	if got["replicas"] != float64(2) || got["replicas_errors"] != float64(0) || got["errors"] != float64(0) {
		t.Errorf("replicas %v, replicas_errors %v, errors %v; want 2, 0, 0\n%s", got["replicas"], got["replicas_errors"], got["errors"], errs.String())
	}
}
