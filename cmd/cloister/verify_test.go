package main

import (
	"crypto/rand"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cloister-dev/cloister/tee/sim"
)

// simFiles writes a sim SGX quote, the sim root and sim collateral (edited
// by edit, when not nil) to a temporary directory.
type simFiles struct{ quote, root, collateral string }

func writeSim(t *testing.T, edit sim.CollateralEdit) simFiles {
	t.Helper()
	dir := t.TempDir()
	pki, err := sim.Load(filepath.Join(dir, "sim"), rand.Reader, fixedNow.Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	q, err := pki.QuoteSGX(rand.Reader, sim.SGXReport{MRENCLAVE: [32]byte{1}})
	if err != nil {
		t.Fatal(err)
	}
	col, err := pki.CollateralWith(rand.Reader, fixedNow, false, edit)
	if err != nil {
		t.Fatal(err)
	}
	cj, err := json.Marshal(col)
	if err != nil {
		t.Fatal(err)
	}
	f := simFiles{filepath.Join(dir, "q.bin"), filepath.Join(dir, "root.pem"), filepath.Join(dir, "col.json")}
	for name, b := range map[string][]byte{f.quote: q, f.root: pki.RootPEM(), f.collateral: cj} {
		if err := os.WriteFile(name, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return f
}

func platformStatus(s string) sim.CollateralEdit {
	return func(ti, _ map[string]any) { ti["tcbLevels"].([]any)[0].(map[string]any)["tcbStatus"] = s }
}

// Issue 12 item 12: without policy flags, Revoked (and "TCB level not
// supported", an error) exit 1, as Intel's library and dcap-qvl fail on
// them; other statuses print and exit 0.
func TestVerifyExitStatusByTCBStatus(t *testing.T) {
	for _, tc := range []struct {
		name   string
		edit   sim.CollateralEdit
		extra  []string
		code   int
		stderr string
	}{
		{"UpToDate", nil, nil, 0, ""},
		{"OutOfDate prints", platformStatus("OutOfDate"), nil, 0, ""},
		{"ConfigurationNeeded prints", platformStatus("ConfigurationNeeded"), nil, 0, ""},
		{"Revoked fails", platformStatus("Revoked"), nil, 1, "Revoked"},
		{"QE revoked fails", func(_, qi map[string]any) { qi["tcbLevels"].([]any)[0].(map[string]any)["tcbStatus"] = "Revoked" }, nil, 1, "Revoked"},
		{"TCB not supported fails", func(_, qi map[string]any) {
			qi["tcbLevels"].([]any)[0].(map[string]any)["tcb"] = map[string]any{"isvsvn": 99}
		}, nil, 1, "TCB level not supported"},
		{"Revoked with a policy that does not list it", platformStatus("Revoked"), []string{"--mrenclave", "01" + strings.Repeat("00", 31)}, 1, "Revoked"},
		{"Revoked listed by the policy", platformStatus("Revoked"), []string{"--any-identity", "--allow-status", "Revoked"}, 0, ""},
		{"OutOfDate under a default policy", platformStatus("OutOfDate"), []string{"--any-identity", "--allow-debug"}, 1, "tcb_status"},
	} {
		f := writeSim(t, tc.edit)
		r := runCLI(t, append([]string{"verify", "evidence", f.quote, "--collateral", f.collateral, "--trust-root", f.root}, tc.extra...)...)
		if r.code != tc.code || !strings.Contains(r.stderr, tc.stderr) {
			t.Errorf("%s: %s\nwant exit %d and %q on stderr", tc.name, r, tc.code, tc.stderr)
		}
		if r.code != 0 && r.stdout != "" {
			t.Errorf("%s: exit %d with claims on stdout", tc.name, r.code)
		}
	}
	if r := runCLI(t, "verify", "evidence", "--help"); !strings.Contains(r.stdout, "Revoked") {
		t.Errorf("--help does not say how Revoked exits:\n%s", r.stdout)
	}
}

// Issue 12 item 7: policy flags on the PCK certificate's platform facts.
func TestVerifyPCKPlatformFlags(t *testing.T) {
	f := writeSim(t, nil)
	base := []string{"verify", "evidence", f.quote, "--collateral", f.collateral, "--trust-root", f.root, "--any-identity"}
	for _, tc := range []struct {
		flags  []string
		code   int
		stderr string
	}{
		{[]string{"--require-smt-disabled", "--require-static-platform", "--require-no-cached-keys", "--sgx-type", "scalable"}, 0, ""},
		{[]string{"--sgx-type", "standard,scalable_with_integrity"}, 1, "sgx_type"},
		{[]string{"--platform-instance-id", strings.Repeat("ab", 16)}, 1, "platform_instance_id"},
		{[]string{"--platform-instance-id", "c1057e514d" + strings.Repeat("00", 11)}, 0, ""},
		{[]string{"--sgx-type", "scaleable"}, 2, "sgx_type"},
		{[]string{"--platform-instance-id", "abcd"}, 2, "platform_instance_id"},
	} {
		r := runCLI(t, append(base, tc.flags...)...)
		if r.code != tc.code || !strings.Contains(r.stderr, tc.stderr) {
			t.Errorf("%v: %s\nwant exit %d and %q", tc.flags, r, tc.code, tc.stderr)
		}
	}
	// The SNP vector has no PCK certificate: requiring SMT off fails.
	r := runCLI(t, "verify", "evidence", "../../testdata/snp/attestation.bin", "--vcek", "../../testdata/snp/vcek.testcer",
		"--at", "2025-07-01T00:00:00Z", "--any-identity", "--require-smt-disabled")
	if r.code != 1 || !strings.Contains(r.stderr, "smt_enabled") {
		t.Errorf("SNP with --require-smt-disabled: %s", r)
	}
}

// Issue 12 item 13: errors say what to do next.
func TestVerifyErrorHints(t *testing.T) {
	f := writeSim(t, nil)
	// Expired collateral: --at and a fresh bundle.
	r := runCLIAt(t, fixedNow.AddDate(1, 0, 0), "verify", "evidence", f.quote, "--collateral", f.collateral, "--trust-root", f.root)
	for _, want := range []string{"--at", "cloister collateral fetch"} {
		if r.code != 1 || !strings.Contains(r.stderr, want) {
			t.Errorf("expired collateral: want exit 1 and %q:\n%s", want, r)
		}
	}
	// A sim quote without the sim root: how to name it.
	r = runCLI(t, "verify", "evidence", f.quote, "--collateral", f.collateral)
	if r.code != 1 || !strings.Contains(r.stderr, "--trust-root <(cloister sim root)") {
		t.Errorf("sim quote without its root:\n%s", r)
	}
	// A real quote under the wrong root gets no sim hint.
	r = runCLI(t, "verify", "evidence", sgxQuote, "--collateral", sgxCollateral, "--trust-root", f.root)
	if r.code != 1 || strings.Contains(r.stderr, "cloister sim root") {
		t.Errorf("real quote under a sim root:\n%s", r)
	}
	// An SNP report without a VCEK: the VCEK hint, not the DCAP collateral one.
	r = runCLI(t, "verify", "evidence", "../../testdata/snp/attestation.bin", "--at", "2025-07-01T00:00:00Z")
	if r.code != 2 || !strings.Contains(r.stderr, "--vcek") || strings.Contains(r.stderr, "collateral") {
		t.Errorf("SNP without VCEK:\n%s", r)
	}
}
