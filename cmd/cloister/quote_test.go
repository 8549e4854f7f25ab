package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestSimQuoteVerifyMeasure is issue 4's "done when": a sim quote verifies
// under the sim root with the MRENCLAVE/MRSIGNER `cloister measure` prints
// and the report data given, and fails naming the root without it.
func TestSimQuoteVerifyMeasure(t *testing.T) {
	dir := t.TempDir()
	simDir := filepath.Join(dir, "sim")
	app, key, cfg, sig := filepath.Join(dir, "app"), filepath.Join(dir, "key.pem"), filepath.Join(dir, "enclave.json"), filepath.Join(dir, "app.sig")
	q, root, col := filepath.Join(dir, "q.bin"), filepath.Join(dir, "root.pem"), filepath.Join(dir, "col.json")
	must := func(r result) result {
		t.Helper()
		if r.code != 0 {
			t.Fatal(r)
		}
		return r
	}
	if err := os.WriteFile(app, []byte("an enclave app binary"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfg, []byte(`{"product_id": 5, "svn": 7, "debug": false}`), 0o644); err != nil {
		t.Fatal(err)
	}
	must(runCLI(t, "sign", "--new-key", key))
	must(runCLI(t, "sign", app, "--key", key, "--config", cfg, "--out", sig))
	measured := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(must(runCLI(t, "measure", app, "--sig", sig)).stdout), "\n") {
		f := strings.Fields(line)
		measured[f[0]] = f[1]
	}
	must(runCLI(t, "quote", "--tee", "sim-sgx", "--report-data", "c0ffee", "--out", q, "--sim-dir", simDir, "--app", app, "--sig", sig))
	if err := os.WriteFile(root, []byte(must(runCLI(t, "sim", "root", "--sim-dir", simDir)).stdout), 0o644); err != nil {
		t.Fatal(err)
	}
	must(runCLI(t, "sim", "collateral", "--sim-dir", simDir, "--out", col))

	r := must(runCLI(t, "verify", "evidence", q, "--trust-root", root, "--collateral", col))
	var c map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &c); err != nil {
		t.Fatal(err)
	}
	if c["tee"] != "sim-sgx" || c["mrenclave"] != measured["mrenclave"] || c["mrsigner"] != measured["mrsigner"] ||
		!strings.HasPrefix(c["report_data"].(string), "c0ffee00") || c["isv_prod_id"] != 5.0 || c["isv_svn"] != 7.0 {
		t.Errorf("claims %v; measure printed %v", c, measured)
	}
	r = runCLI(t, "verify", "evidence", q, "--collateral", col)
	if r.code != 1 || !strings.Contains(r.stderr, "Cloister Simulated SGX Root CA") || !strings.Contains(r.stderr, "untrusted root") {
		t.Errorf("without --trust-root: %v", r)
	}

	// sim-tdx quotes verify against the TDX sim collateral.
	must(runCLI(t, "quote", "--tee", "sim-tdx", "--report-data", "01", "--out", q, "--sim-dir", simDir, "--app", app))
	must(runCLI(t, "sim", "collateral", "--tee", "sim-tdx", "--sim-dir", simDir, "--out", col))
	r = must(runCLI(t, "verify", "evidence", q, "--trust-root", root, "--collateral", col))
	if !strings.Contains(r.stdout, `"tee": "sim-tdx"`) {
		t.Errorf("sim-tdx: %s", r.stdout)
	}
}

func TestQuoteUsage(t *testing.T) {
	for _, args := range [][]string{
		{"quote", "--out", "x"},
		{"quote", "--report-data", "01"},
		{"quote", "--report-data", "zz", "--out", "x"},
		{"quote", "--report-data", strings.Repeat("00", 65), "--out", "x"},
		{"quote", "--tee", "tdx", "--app", "a", "--report-data", "01", "--out", "x"},
	} {
		if r := runCLI(t, args...); r.code != 2 {
			t.Errorf("%v: %v; want exit 2", args, r)
		}
	}
}

func TestDemo(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the example app")
	}
	// The whole demo: it signs this (test) binary as the example app,
	// runs it on sim-sgx (TestMain dispatches "demo-app") and attests it
	// over RA-TLS.
	r := runCLI(t, "demo", "--sim-dir", filepath.Join(t.TempDir(), "sim"))
	if r.code != 0 || r.stderr != "" {
		t.Fatal(r)
	}
	for _, want := range []string{
		"tee sim-sgx, tcb_status UpToDate", "report_data matches: true", "fails, as it must (untrusted root)", "another MRENCLAVE cannot",
		"6. the example app (examples/echo's service) is this binary itself", `enclave.json {"product_id": 1, "svn": 1, "debug": false}`,
		"8. running it with 'cloister run' on sim-sgx", "the host says: network: ",
		"9. attested https://127.0.0.1:", "tee        sim-sgx", "= the signed app's, as expected", "= the demo key's, as expected",
		"product 1, SVN 1 (policy: at least 1), debug false", "tcb_status UpToDate (sim collateral",
		"key bound  true: the evidence (ccc extension)",
		"10. fresh evidence checked", `POST /echo "hello, enclave" → "hello, enclave"`, `GET → "a value sealed to the enclave"`,
		"12. a client expecting another MRENCLAVE", "policy: mrenclave: got ",
		"13. stopped", "exited with status 0", "the demo passed",
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("demo output lacks %q:\n%s", want, r.stdout)
		}
	}
	// The MRENCLAVE and MRSIGNER attested in step 9 are those of the
	// signed app and the demo key in step 7.
	found := 0
	for _, l := range strings.Split(r.stdout, "\n") {
		f := strings.Fields(l)
		switch {
		case len(f) < 2:
		case strings.HasSuffix(l, "(as 'cloister measure' computes it)"):
			found++
			if want := "MRENCLAVE  " + f[1] + " = the signed app's"; !strings.Contains(r.stdout, want) {
				t.Errorf("demo output lacks %q", want)
			}
		case strings.HasSuffix(l, "(the demo key)"):
			found++
			if want := "MRSIGNER   " + f[1] + " = the demo key's"; !strings.Contains(r.stdout, want) {
				t.Errorf("demo output lacks %q", want)
			}
		}
	}
	if found != 2 {
		t.Errorf("demo output: %d of the signed app's MRENCLAVE and MRSIGNER lines, want 2:\n%s", found, r.stdout)
	}
}
