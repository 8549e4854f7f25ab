package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"testing"
	"time"
)

// --nodes 3: the JSON has every contract key of issue 19 with a positive
// value; the failovers really happened (one per round). No timing is
// asserted: the figures depend on the machine.
func TestBenchLedgerNodesJSON(t *testing.T) {
	var out bytes.Buffer
	e := &env{ctx: context.Background(), stdin: bytes.NewReader(nil), stdout: &out, stderr: io.Discard, now: time.Now}
	if err := runBenchLedger(e, []string{"--json", "--nodes", "3", "--failovers", "2", "--entries", "200", "--writers", "8", "--dir", t.TempDir()}); err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(out.Bytes(), &got); err != nil {
		t.Fatalf("stdout is not one JSON object: %v\n%s", err, out.String())
	}
	for _, k := range []string{"appends_per_s_1node", "appends_per_s_3nodes", "appends_per_s_3nodes_forwarded", "failover_p50_ms", "failover_max_ms"} {
		if v, ok := got[k].(float64); !ok || !(v > 0) {
			t.Errorf("%s = %v, want a positive number", k, got[k])
		}
	}
	if got["nodes"] != float64(3) || got["failovers"] != float64(2) || got["entries"] != float64(200) {
		t.Errorf("nodes/failovers/entries: %v %v %v", got["nodes"], got["failovers"], got["entries"])
	}
	for _, args := range [][]string{{"--nodes", "1"}, {"--nodes", "10"}, {"--nodes", "3", "--failovers", "-1"}} {
		if r := runCLI(t, append([]string{"bench", "ledger"}, args...)...); r.code != exitUsage {
			t.Errorf("%v: %s", args, r)
		}
	}
}
