package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const ccelDir = "../../testdata/tdx/ccel/"

// TestVerifyCCELVector: the real cos-113 quote with its CCEL: exit 0, the
// claims list the 43 replayed events and no app; a changed digest byte in
// the log exits 1; --app-digest fails (nothing measured at run time).
func TestVerifyCCELVector(t *testing.T) {
	base := []string{"verify", "evidence", ccelDir + "cos-113-tdx-quote.dat", "--no-collateral", "--at", "2024-08-01T00:00:00Z",
		"--event-log", ccelDir + "ccel_data.dat", "--ccel-table", ccelDir + "ccel_table.dat"}
	r := runCLI(t, base...)
	if r.code != exitOK {
		t.Fatalf("%s", r)
	}
	var c struct {
		EventLog struct {
			Format     string            `json:"format"`
			Events     []json.RawMessage `json:"events"`
			AppDigests []string          `json:"app_digests"`
		} `json:"event_log"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &c); err != nil {
		t.Fatal(err)
	}
	if c.EventLog.Format != "tcg2-crypto-agile" || len(c.EventLog.Events) != 43 || c.EventLog.AppDigests == nil || len(c.EventLog.AppDigests) != 0 {
		t.Errorf("event_log %+v", c.EventLog)
	}
	if !strings.Contains(r.stderr, "nothing was measured at run time") {
		t.Errorf("no warning that nothing was measured:\n%s", r.stderr)
	}
	r = runCLI(t, append(base, "--format", "text")...)
	if r.code != exitOK || !strings.Contains(r.stdout, "Event log: 43 events replayed (RTMR0 16, RTMR1 7, RTMR2 20, RTMR3 0)") || !strings.Contains(r.stdout, "App launched: none measured") {
		t.Errorf("text report:\n%s", r)
	}

	// The first event's digest starts at 79 (65-byte header, then MR
	// index, type, digest count and algorithm).
	log, err := os.ReadFile(ccelDir + "ccel_data.dat")
	if err != nil {
		t.Fatal(err)
	}
	log[79+5] ^= 1
	bad := filepath.Join(t.TempDir(), "ccel")
	if err := os.WriteFile(bad, log, 0o600); err != nil {
		t.Fatal(err)
	}
	tampered := append([]string(nil), base...)
	tampered[7] = bad
	r = runCLI(t, tampered...)
	if r.code != exitFailed || !strings.Contains(r.stderr, "does not replay") || !strings.Contains(r.stderr, "RTMR0") || r.stdout != "" {
		t.Errorf("tampered CCEL: %s", r)
	}

	r = runCLI(t, append(base, "--mrtd", "dae67181d3d65e073ad8f95b7907d5e927bfe9761c9ff3e9b89734a45d8954dba41394c7717cb2735396c1d04231f94a",
		"--allow-status", "NotEvaluated", "--app-digest", strings.Repeat("ab", 32))...)
	if r.code != exitFailed || !strings.Contains(r.stderr, "app_digests") {
		t.Errorf("--app-digest with no app measured: %s", r)
	}
}

func TestVerifyEventLogUsage(t *testing.T) {
	q := ccelDir + "cos-113-tdx-quote.dat"
	for _, args := range [][]string{
		{"verify", "evidence", q, "--no-collateral", "--ccel-table", ccelDir + "ccel_table.dat"},
		{"verify", "evidence", q, "--no-collateral", "--any-identity", "--app-digest", strings.Repeat("ab", 32)},
		{"verify", "evidence", q, "--no-collateral", "--event-log", ccelDir + "ccel_data.dat", "--app-digest", "abcd"},
	} {
		if r := runCLI(t, args...); r.code != exitUsage {
			t.Errorf("%v: %s", args, r)
		}
	}
}

// TestVerifyCCELGolden freezes the JSON printed for the cos-113 quote with
// its CCEL (the event_log claims are a contract, as the others). Refresh
// with go test ./cmd/cloister -run Golden -update, and review the diff.
func TestVerifyCCELGolden(t *testing.T) {
	r := runCLI(t, "verify", "evidence", ccelDir+"cos-113-tdx-quote.dat", "--no-collateral", "--at", "2024-08-01T00:00:00Z",
		"--event-log", ccelDir+"ccel_data.dat", "--ccel-table", ccelDir+"ccel_table.dat")
	if r.code != exitOK {
		t.Fatalf("%s", r)
	}
	golden := filepath.Join("testdata", "verify_tdx_ccel.golden.json")
	if *update {
		if err := os.WriteFile(golden, []byte(r.stdout), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if r.stdout != string(want) {
		t.Errorf("output differs from %s (run with -update if the change is intended):\ngot:\n%s\nwant:\n%s", golden, r.stdout, want)
	}
}
