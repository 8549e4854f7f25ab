package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"testing"
	"time"
)

// The JSON has every contract key with a positive value. No timing is
// asserted: the figures depend on the machine.
func TestBenchLedgerJSON(t *testing.T) {
	// A real clock: the benchmark measures elapsed time.
	var out bytes.Buffer
	e := &env{ctx: context.Background(), stdin: bytes.NewReader(nil), stdout: &out, stderr: io.Discard, now: time.Now}
	if err := runBenchLedger(e, []string{"--json", "--entries", "300", "--writers", "8", "--dir", t.TempDir()}); err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(out.Bytes(), &got); err != nil {
		t.Fatalf("stdout is not one JSON object: %v\n%s", err, out.String())
	}
	for _, k := range []string{"appends_per_s", "receipt_p50_ms", "receipt_p99_ms", "verify_receipts_per_s", "plain_appends_per_s"} {
		if v, ok := got[k].(float64); !ok || !(v > 0) {
			t.Errorf("%s = %v, want a positive number", k, got[k])
		}
	}
	if got["entries"] != float64(300) || got["writers"] != float64(8) {
		t.Errorf("entries/writers: %v %v", got["entries"], got["writers"])
	}
	if r := runCLI(t, "bench", "ledger", "--writers", "0"); r.code != exitUsage {
		t.Errorf("--writers 0: %s", r)
	}
}
