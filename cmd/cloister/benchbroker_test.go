package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"testing"
	"time"
)

// TestBenchBrokerJSON runs a tiny `bench broker --json` and checks the keys
// scripts read and that nothing failed; figures are not asserted (timing
// is not a test).
func TestBenchBrokerJSON(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the broker and the attestation service")
	}
	var out bytes.Buffer
	e := &env{ctx: context.Background(), stdin: bytes.NewReader(nil), stdout: &out, stderr: io.Discard, now: time.Now}
	if err := runBenchBroker(e, []string{"--json", "--concurrency", "2", "--flows", "6", "--requests", "20"}); err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(out.Bytes(), &got); err != nil {
		t.Fatalf("%v: %s", err, out.Bytes())
	}
	for _, k := range []string{"kbs_flow_per_s", "kbs_flow_p50_ms", "kbs_flow_p99_ms", "kbs_resource_per_s", "kbs_resource_p50_ms",
		"kbs_resource_p99_ms", "attest_per_s", "attest_p50_ms", "attest_p99_ms", "kbs_flow_cost_vs_attest", "guest_quote_per_s", "cpu_us_per_flow", "cpu_us_per_resource", "cpu_us_per_attest", "kbs_flow_cpu_cost_vs_attest", "akv_release_per_s", "akv_release_p50_ms"} {
		if v, ok := got[k].(float64); !ok || v <= 0 {
			t.Errorf("%s = %v; want a positive figure", k, got[k])
		}
	}
	for _, k := range []string{"load_avg_1m_start", "load_avg_1m_end", "cores", "errors"} {
		if _, ok := got[k].(float64); !ok {
			t.Errorf("%s missing", k)
		}
	}
	if v := got["errors"]; v != 0.0 {
		t.Errorf("errors = %v, want 0", v)
	}
}
