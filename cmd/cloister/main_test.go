package main

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cloister-dev/cloister/evidence/pcs"
	"github.com/cloister-dev/cloister/tee/sim"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

// Shared vectors (repository testdata/, described in testdata/README.md).
const (
	sgxQuote      = "../../testdata/sgx/dcap-qvl_sgx_quote_v3.bin"
	sgxCollateral = "../../testdata/sgx/dcap-qvl_sgx_quote_v3_collateral.json"
	tdxQuote      = "../../testdata/tdx/dcap-qvl_tdx_quote_v4.bin"
	tdxCollateral = "../../testdata/tdx/dcap-qvl_tdx_quote_v4_collateral.json"
	sgxRootDER    = "../../testdata/sgx/intel_sgx_root_ca.der"

	// go-tdx-guest's quote and saved PCS responses.
	gtgQuote       = "../../testdata/tdx/tdx_prod_quote_SPR_E4.dat"
	gtgTCBInfo     = "../../testdata/tdx/sample_tcbInfo_response"
	gtgQEIdentity  = "../../testdata/tdx/sample_qeIdentity_response"
	gtgTCBChain    = "../../testdata/tdx/sample_tcbInfo_issuer_chain.pem"
	gtgPCKCRL      = "../../testdata/tdx/pckcrl"
	gtgPCKCRLChain = "../../testdata/tdx/pckcrl_issuer_chain.pem"
	gtgRootCRL     = "../../testdata/tdx/rootcrl.der"

	sgxMRENCLAVE = "33d8736db756ed4997e04ba358d27833188f1932ff7b1d156904d3f560452fbb"
	sgxMRSIGNER  = "815f42f11cf64430c30bab7816ba596a1da0130c3b028b673133a66cf9a3e0e6"
	tdxMRTD      = "91eb2b44d141d4ece09f0c75c2c53d247a3c68edd7fafe8a3520c942a604a407de03ae6dc5f87f27428b2538873118b7"
	otherHex32   = "abababababababababababababababababababababababababababababababab"
)

// fixedNow is the "now" of every test: inside the validity window of both
// dcap-qvl vectors, so tests that rely on the default time agree with --at.
var fixedNow = time.Date(2025, 7, 1, 0, 0, 0, 0, time.UTC)

type result struct {
	code           int
	stdout, stderr string
}

func runCLI(t *testing.T, args ...string) result {
	t.Helper()
	return runCLIAt(t, fixedNow, args...)
}

func runCLIAt(t *testing.T, now time.Time, args ...string) result {
	t.Helper()
	return runCLIStdin(t, now, strings.NewReader(""), args...)
}

func runCLIStdin(t *testing.T, now time.Time, stdin io.Reader, args ...string) result {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := run(args, stdin, &stdout, &stderr, func() time.Time { return now })
	return result{code, stdout.String(), stderr.String()}
}

func (r result) String() string {
	return fmt.Sprintf("exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
}

func TestUsage(t *testing.T) {
	tests := []struct {
		name       string
		args       []string
		code       int
		stdoutHas  string // "" = stdout must be empty
		stderrHas  string // "" = stderr must be empty
		noStdoutOK bool
	}{
		{"no args", nil, 2, "", "Usage:", false},
		{"top help", []string{"help"}, 0, "Commands:", "", false},
		{"top --help", []string{"--help"}, 0, "verify evidence", "", false},
		{"top -h", []string{"-h"}, 0, "collateral fetch", "", false},
		{"unknown command", []string{"frobnicate"}, 2, "", `unknown command "frobnicate"`, false},
		{"unknown subcommand", []string{"verify", "bogus"}, 2, "", `unknown subcommand "bogus"`, false},
		{"missing subcommand", []string{"collateral"}, 2, "", "missing subcommand", false},
		{"group --help", []string{"collateral", "--help"}, 0, "collateral bundle", "", false},
		{"help group", []string{"help", "verify"}, 0, "verify evidence", "", false},
		{"help command", []string{"help", "verify", "evidence"}, 0, "--collateral BUNDLE", "", false},
		{"help unknown", []string{"help", "nope"}, 2, "", `unknown command "nope"`, false},
		{"version", []string{"version"}, 0, "cloister ", "", false},
		{"version extra arg", []string{"version", "x"}, 2, "", "unexpected argument", false},

		{"verify --help", []string{"verify", "evidence", "--help"}, 0, "--no-collateral", "", false},
		{"verify -h after file", []string{"verify", "evidence", sgxQuote, "-h"}, 0, "--allow-status", "", false},
		{"fetch --help", []string{"collateral", "fetch", "--help"}, 0, "--pcs-url URL", "", false},
		{"bundle --help", []string{"collateral", "bundle", "--help"}, 0, "--tcb-info-chain", "", false},
		{"version --help", []string{"version", "--help"}, 0, "Usage:", "", false},

		{"verify missing file", []string{"verify", "evidence"}, 2, "", "missing evidence FILE", false},
		{"verify two files", []string{"verify", "evidence", "a", "b"}, 2, "", "want one evidence FILE", false},
		{"verify bad flag", []string{"verify", "evidence", sgxQuote, "--bogus"}, 2, "", "flag provided but not defined: -bogus", false},
		{"verify bad --at", []string{"verify", "evidence", sgxQuote, "--at", "yesterday"}, 2, "", "--at", false},
		{"verify bad --at date", []string{"verify", "evidence", sgxQuote, "--at", "2025-07-01"}, 2, "", "RFC 3339", false},
		{"verify --at missing value", []string{"verify", "evidence", sgxQuote, "--at"}, 2, "", "flag needs an argument", false},
		{"verify negative --at", []string{"verify", "evidence", sgxQuote, "--at", "-5"}, 2, "", "--at", false},
		{"verify bad format", []string{"verify", "evidence", "--format", "xml", sgxQuote}, 2, "", "--format", false},
		{"verify both collateral flags", []string{"verify", "evidence", sgxQuote, "--collateral", sgxCollateral, "--no-collateral"}, 2, "", "exclude each other", false},
		{"verify odd hex", []string{"verify", "evidence", sgxQuote, "--mrenclave", "abc"}, 2, "", "-mrenclave", false},
		{"verify short mrenclave", []string{"verify", "evidence", sgxQuote, "--mrenclave", "abcd"}, 2, "", "mrenclave entry 0: 2 bytes", false},
		{"verify mrtd of sgx size", []string{"verify", "evidence", sgxQuote, "--mrtd", sgxMRENCLAVE}, 2, "", "mrtd entry 0: 32 bytes", false},
		{"verify bad status", []string{"verify", "evidence", sgxQuote, "--allow-status", "Fine"}, 2, "", `tcb_status "Fine"`, false},
		{"verify bad min-svn", []string{"verify", "evidence", sgxQuote, "--min-svn", "65536"}, 2, "", "-min-svn", false},

		{"fetch missing quote", []string{"collateral", "fetch", "--out", "x.json"}, 2, "", "missing --quote", false},
		{"fetch missing out", []string{"collateral", "fetch", "--quote", gtgQuote}, 2, "", "missing --out", false},
		{"fetch bad pcs url", []string{"collateral", "fetch", "--quote", gtgQuote, "--out", "x.json", "--pcs-url", "ftp://x"}, 2, "", "BaseURL", false},
		{"fetch positional", []string{"collateral", "fetch", gtgQuote}, 2, "", "unexpected argument", false},
		{"bundle missing tcb-info", []string{"collateral", "bundle", "--out", "x.json"}, 2, "", "missing --tcb-info", false},
		{"bundle crl without chain", []string{"collateral", "bundle", "--tcb-info", gtgTCBInfo, "--tcb-info-chain", gtgTCBChain,
			"--qe-identity", gtgQEIdentity, "--qe-identity-chain", gtgTCBChain, "--pck-crl", gtgPCKCRL, "--out", "x.json"}, 2, "", "go together", false},

		{"verify missing file on disk", []string{"verify", "evidence", "does-not-exist.bin", "--no-collateral"}, 1, "", "does-not-exist.bin", false},
		{"verify missing collateral file", []string{"verify", "evidence", sgxQuote, "--collateral", "nope.json"}, 1, "", "reading collateral", false},
		{"verify bad collateral file", []string{"verify", "evidence", sgxQuote, "--collateral", sgxQuote}, 1, "", "collateral", false},
		{"verify bad trust root", []string{"verify", "evidence", sgxQuote, "--no-collateral", "--trust-root", gtgTCBInfo}, 1, "", "trust roots", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := runCLI(t, tc.args...)
			if r.code != tc.code {
				t.Fatalf("exit %d, want %d\n%s", r.code, tc.code, r)
			}
			if tc.stdoutHas == "" && r.stdout != "" {
				t.Errorf("stdout not empty:\n%s", r)
			}
			if !strings.Contains(r.stdout, tc.stdoutHas) {
				t.Errorf("stdout lacks %q\n%s", tc.stdoutHas, r)
			}
			if tc.stderrHas == "" && r.stderr != "" {
				t.Errorf("stderr not empty:\n%s", r)
			}
			if !strings.Contains(r.stderr, tc.stderrHas) {
				t.Errorf("stderr lacks %q\n%s", tc.stderrHas, r)
			}
			if r.code == 2 && tc.args != nil && !strings.Contains(r.stderr, "help") && !strings.Contains(r.stderr, "Usage") {
				t.Errorf("usage error does not point to help\n%s", r)
			}
		})
	}
}

// Every command's help is reachable both ways and says the same.
func TestHelpAgrees(t *testing.T) {
	for _, c := range commands {
		words := strings.Fields(c.path)
		a := runCLI(t, append([]string{"help"}, words...)...)
		b := runCLI(t, append(words, "--help")...)
		if a.code != 0 || b.code != 0 || a.stdout != b.stdout || a.stdout == "" {
			t.Errorf("%s: 'help %s' and '%s --help' differ or fail:\n%s\n%s", c.path, c.path, c.path, a, b)
		}
	}
}

func TestParseTime(t *testing.T) {
	tests := []struct {
		in   string
		want time.Time
		ok   bool
	}{
		{"2025-07-01T00:00:00Z", fixedNow, true},
		{"1751328000", fixedNow, true},
		{"2025-07-01T02:00:00+02:00", fixedNow, true},
		{"2025-07-01", time.Time{}, false},
		{"0", time.Time{}, false},
		{"-1", time.Time{}, false},
		{"", time.Time{}, false},
		{"1751328000.5", time.Time{}, false},
	}
	for _, tc := range tests {
		got, err := parseTime(tc.in)
		if (err == nil) != tc.ok || (tc.ok && !got.Equal(tc.want)) {
			t.Errorf("parseTime(%q) = %v, %v; want %v, ok=%v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}

func TestParseArgsInterleaved(t *testing.T) {
	fs := newFlagSet("t", "", "")
	at := fs.String("at", "", "")
	e := &env{stdout: new(bytes.Buffer), stderr: new(bytes.Buffer)}
	pos, err := parseArgs(e, fs, []string{"--at", "1", "FILE", "--at=2", "--", "--x"})
	if err != nil || !slices.Equal(pos, []string{"FILE", "--x"}) || *at != "2" {
		t.Fatalf("parseArgs = %q, %v (at %q); want [FILE --x], nil (at 2)", pos, err, *at)
	}
}

// decodeClaims parses the JSON claims printed on stdout.
func decodeClaims(t *testing.T, r result) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &m); err != nil {
		t.Fatalf("stdout is not JSON claims: %v\n%s", err, r)
	}
	return m
}

func TestVerifySGX(t *testing.T) {
	r := runCLI(t, "verify", "evidence", sgxQuote, "--collateral", sgxCollateral, "--at", "2025-07-01T00:00:00Z")
	if r.code != 0 {
		t.Fatalf("exit %d, want 0\n%s", r.code, r)
	}
	m := decodeClaims(t, r)
	if m["tee"] != "sgx" || m["tcb_status"] != "ConfigurationAndSWHardeningNeeded" || m["mrenclave"] != sgxMRENCLAVE ||
		m["mrsigner"] != sgxMRSIGNER || m["debug"] != false {
		t.Errorf("claims: tee %v, tcb_status %v, mrenclave %v, mrsigner %v, debug %v", m["tee"], m["tcb_status"], m["mrenclave"], m["mrsigner"], m["debug"])
	}
	if got, _ := json.Marshal(m["advisory_ids"]); string(got) != `["INTEL-SA-00289","INTEL-SA-00615"]` {
		t.Errorf("advisory_ids = %s, want [INTEL-SA-00289 INTEL-SA-00615]", got)
	}
	if _, ok := m["mrtd"]; ok {
		t.Error("SGX claims carry a TDX field mrtd")
	}
}

// TestVerifySGXGolden freezes the JSON the CLI prints for the SGX vector:
// field names and layout are a contract scripts depend on. Refresh with
// go test ./cmd/cloister -run Golden -update, and review the diff.
func TestVerifySGXGolden(t *testing.T) {
	r := runCLI(t, "verify", "evidence", sgxQuote, "--collateral", sgxCollateral, "--at", "2025-07-01T00:00:00Z")
	if r.code != 0 {
		t.Fatalf("exit %d, want 0\n%s", r.code, r)
	}
	golden := filepath.Join("testdata", "verify_sgx_quote_v3.golden.json")
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
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

func TestVerifyTDX(t *testing.T) {
	r := runCLI(t, "verify", "evidence", tdxQuote, "--collateral", tdxCollateral, "--at", "1751328000")
	if r.code != 0 {
		t.Fatalf("exit %d, want 0\n%s", r.code, r)
	}
	m := decodeClaims(t, r)
	if m["tee"] != "tdx" || m["tcb_status"] != "UpToDate" || m["mrtd"] != tdxMRTD {
		t.Errorf("claims: tee %v, tcb_status %v, mrtd %v", m["tee"], m["tcb_status"], m["mrtd"])
	}
	if ids, _ := m["advisory_ids"].([]any); len(ids) != 0 {
		t.Errorf("advisory_ids = %v, want none", ids)
	}
}

func TestVerifyDefaultTimeIsNow(t *testing.T) {
	// Without --at the time comes from run's clock: inside the window it
	// verifies, after the collateral's nextUpdate it must not.
	if r := runCLI(t, "verify", "evidence", tdxQuote, "--collateral", tdxCollateral); r.code != 0 {
		t.Fatalf("at fixed now: exit %d, want 0\n%s", r.code, r)
	}
	r := runCLIAt(t, time.Date(2025, 8, 1, 0, 0, 0, 0, time.UTC), "verify", "evidence", tdxQuote, "--collateral", tdxCollateral)
	if r.code != 1 || r.stdout != "" || !strings.Contains(r.stderr, "reason:") {
		t.Fatalf("after nextUpdate: want exit 1 with a reason and no stdout\n%s", r)
	}
}

func TestVerifyTextFormat(t *testing.T) {
	r := runCLI(t, "verify", "evidence", sgxQuote, "--collateral", sgxCollateral, "--at", "1751328000", "--format", "text")
	if r.code != 0 {
		t.Fatalf("exit %d, want 0\n%s", r.code, r)
	}
	for _, want := range []string{"valid sgx evidence", "ConfigurationAndSWHardeningNeeded", "INTEL-SA-00289, INTEL-SA-00615", "MRENCLAVE", sgxMRENCLAVE, "Policy: none given"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("text report lacks %q:\n%s", want, r.stdout)
		}
	}
}

func TestVerifyPolicy(t *testing.T) {
	base := []string{"verify", "evidence", sgxQuote, "--collateral", sgxCollateral, "--at", "2025-07-01T00:00:00Z"}
	allow := []string{"--allow-status", "UpToDate,ConfigurationAndSWHardeningNeeded"}
	tests := []struct {
		name      string
		flags     []string
		code      int
		stderrHas []string
	}{
		{"right mrenclave", append([]string{"--mrenclave", sgxMRENCLAVE}, allow...), 0, nil},
		{"right mrenclave and signer, svn 0", append([]string{"--mrenclave", otherHex32 + "," + sgxMRENCLAVE, "--mrsigner", sgxMRSIGNER, "--min-svn", "0"}, allow...), 0, nil},
		{"wrong mrenclave", append([]string{"--mrenclave", otherHex32}, allow...), 1,
			[]string{"policy not satisfied", "policy: mrenclave: got " + sgxMRENCLAVE + ", want one of [" + otherHex32 + "]"}},
		{"status not allowed by default", []string{"--mrenclave", sgxMRENCLAVE}, 1,
			[]string{"policy: tcb_status: got ConfigurationAndSWHardeningNeeded, want one of [UpToDate]"}},
		{"every mismatch at once", []string{"--mrenclave", otherHex32, "--mrsigner", otherHex32, "--min-svn", "1", "--mrtd", tdxMRTD}, 1,
			[]string{"mrenclave: got", "mrsigner: got", "isv_svn: got 0", "mrtd: got nothing", "tcb_status: got"}},
		{"allow-debug with any identity turns appraisal on", []string{"--allow-debug", "--any-identity"}, 1, []string{"tcb_status"}},
		{"allow-debug alone names no identity", []string{"--allow-debug"}, 2, []string{"policy names no identity"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := runCLI(t, append(slices.Clone(base), tc.flags...)...)
			if r.code != tc.code {
				t.Fatalf("exit %d, want %d\n%s", r.code, tc.code, r)
			}
			if tc.code != 0 && r.stdout != "" {
				t.Errorf("stdout not empty on failure:\n%s", r)
			}
			for _, w := range tc.stderrHas {
				if !strings.Contains(r.stderr, w) {
					t.Errorf("stderr lacks %q\n%s", w, r)
				}
			}
		})
	}
}

func TestVerifyNoCollateral(t *testing.T) {
	r := runCLI(t, "verify", "evidence", sgxQuote, "--no-collateral", "--at", "1751328000")
	if r.code != 0 {
		t.Fatalf("exit %d, want 0\n%s", r.code, r)
	}
	if m := decodeClaims(t, r); m["tcb_status"] != "NotEvaluated" || m["mrenclave"] != sgxMRENCLAVE {
		t.Errorf("claims: tcb_status %v, mrenclave %v; want NotEvaluated, %s", m["tcb_status"], m["mrenclave"], sgxMRENCLAVE)
	}
	// A policy never accepts NotEvaluated unless told to.
	r = runCLI(t, "verify", "evidence", sgxQuote, "--no-collateral", "--at", "1751328000", "--mrenclave", sgxMRENCLAVE)
	if r.code != 1 || !strings.Contains(r.stderr, "tcb_status: got NotEvaluated") {
		t.Fatalf("policy with NotEvaluated: want exit 1 naming tcb_status\n%s", r)
	}
	r = runCLI(t, "verify", "evidence", sgxQuote, "--no-collateral", "--at", "1751328000", "--mrenclave", sgxMRENCLAVE, "--allow-status", "NotEvaluated")
	if r.code != 0 {
		t.Fatalf("--allow-status NotEvaluated: exit %d, want 0\n%s", r.code, r)
	}
}

// An SGX or TDX quote without --collateral or --no-collateral is a usage
// error that says what to add.
func TestVerifyCollateralNeeded(t *testing.T) {
	for _, q := range []string{sgxQuote, tdxQuote} {
		r := runCLI(t, "verify", "evidence", q, "--at", "1751328000")
		if r.code != 2 || !strings.Contains(r.stderr, "--collateral BUNDLE") || !strings.Contains(r.stderr, "--no-collateral") {
			t.Errorf("%s without collateral: want exit 2 with a hint\n%s", q, r)
		}
	}
}

func TestVerifyTrustRootReplacesBuiltIn(t *testing.T) {
	// The real Intel root, named explicitly (DER file), still verifies.
	r := runCLI(t, "verify", "evidence", sgxQuote, "--collateral", sgxCollateral, "--at", "1751328000", "--trust-root", sgxRootDER)
	if r.code != 0 {
		t.Fatalf("--trust-root Intel root: exit %d, want 0\n%s", r.code, r)
	}
	// A root that is not in the chain replaces the built-in one: untrusted.
	r = runCLI(t, "verify", "evidence", sgxQuote, "--collateral", sgxCollateral, "--at", "1751328000", "--trust-root", "../../testdata/snp/ask_ark_milan.pem")
	if r.code != 1 || !strings.Contains(r.stderr, "reason:") {
		t.Fatalf("--trust-root AMD roots: want exit 1 with a reason\n%s", r)
	}
}

// bundleArgs assembles go-tdx-guest's saved PCS responses.
func bundleArgs(out string) []string {
	return []string{"collateral", "bundle",
		"--tcb-info", gtgTCBInfo, "--tcb-info-chain", gtgTCBChain,
		"--qe-identity", gtgQEIdentity, "--qe-identity-chain", gtgTCBChain,
		"--pck-crl", gtgPCKCRL, "--pck-crl-chain", gtgPCKCRLChain, "--root-crl", gtgRootCRL,
		"--out", out}
}

// signedValue cuts the value of key from a PCS response body the way Intel
// signs it: from the '{' after "key": to the '}' before ,"signature".
func signedValue(t *testing.T, file, key string) string {
	t.Helper()
	body, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	s := string(body)
	start := strings.Index(s, `"`+key+`":`)
	end := strings.LastIndex(s, `,"signature"`)
	if start < 0 || end < 0 {
		t.Fatalf("%s: cannot find %s", file, key)
	}
	return s[start+len(key)+3 : end]
}

func TestCollateralBundle(t *testing.T) {
	out := filepath.Join(t.TempDir(), "bundle.json")
	r := runCLI(t, bundleArgs(out)...)
	if r.code != 0 {
		t.Fatalf("exit %d, want 0\n%s", r.code, r)
	}
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	b, err := pcs.ParseBundle(data)
	if err != nil {
		t.Fatalf("written bundle does not parse: %v", err)
	}
	if want := signedValue(t, gtgTCBInfo, "tcbInfo"); b.TCBInfo != want || len(want) != 2245 {
		t.Errorf("tcb_info is not the signed text byte-exact (%d bytes, want %d)", len(b.TCBInfo), len(want))
	}
	if want := signedValue(t, gtgQEIdentity, "enclaveIdentity"); b.QEIdentity != want || len(want) != 461 {
		t.Errorf("qe_identity is not the signed text byte-exact (%d bytes, want %d)", len(b.QEIdentity), len(want))
	}
	if b.PCKCRL == "" || b.RootCACRL == "" || b.PCKCRLIssuerChain == "" {
		t.Errorf("bundle lacks CRLs: pck %d, root %d, chain %d bytes", len(b.PCKCRL), len(b.RootCACRL), len(b.PCKCRLIssuerChain))
	}

	// Without CRLs the bundle is still written; revocation is then the
	// verifier's business (--allow-missing-crl).
	noCRL := filepath.Join(t.TempDir(), "nocrl.json")
	args := bundleArgs(noCRL)
	args = slices.Delete(args, 10, 16) // the three CRL flags and their values
	if r := runCLI(t, args...); r.code != 0 {
		t.Fatalf("bundle without CRLs: exit %d\n%s", r.code, r)
	}

	// Broken input: a response body given as the chain.
	bad := bundleArgs(filepath.Join(t.TempDir(), "bad.json"))
	bad[5] = gtgTCBInfo // --tcb-info-chain
	if r := runCLI(t, bad...); r.code != 1 || !strings.Contains(r.stderr, "assembling bundle") {
		t.Fatalf("bad chain: want exit 1\n%s", r)
	}
}

// The go-tdx-guest quote with its collateral must fail at the TCB step: no
// TCB level matches it (testdata/README.md).
func TestCollateralBundleVerifyGoTDXGuest(t *testing.T) {
	out := filepath.Join(t.TempDir(), "bundle.json")
	if r := runCLI(t, bundleArgs(out)...); r.code != 0 {
		t.Fatalf("bundle: exit %d\n%s", r.code, r)
	}
	r := runCLI(t, "verify", "evidence", gtgQuote, "--collateral", out, "--at", "2023-07-01T01:00:00Z")
	if r.code != 1 || !strings.Contains(r.stderr, "reason: TCB level not supported") {
		t.Fatalf("want exit 1, reason TCB level not supported\n%s", r)
	}
}

// pcsServer serves go-tdx-guest's saved PCS responses the way Intel PCS
// does: bodies as saved, issuer chains URL-encoded in the headers.
func pcsServer(t *testing.T) (*httptest.Server, *atomic.Int32) {
	t.Helper()
	read := func(name string) []byte {
		b, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	// Intel encodes like JavaScript's encodeURIComponent: space is %20 and
	// '+' is %2B (QueryEscape would send '+' for a space).
	pcsEscape := func(s string) string { return strings.ReplaceAll(url.QueryEscape(s), "+", "%20") }
	tcbChain := pcsEscape(string(read(gtgTCBChain)))
	crlChain := pcsEscape(string(read(gtgPCKCRLChain)))
	var hits atomic.Int32
	mux := http.NewServeMux()
	serve := func(path string, body []byte, header, chain string, query url.Values) {
		mux.HandleFunc(path, func(w http.ResponseWriter, r *http.Request) {
			hits.Add(1)
			for k := range query {
				if r.URL.Query().Get(k) != query.Get(k) {
					http.Error(w, "bad query "+r.URL.RawQuery, http.StatusBadRequest)
					return
				}
			}
			if header != "" {
				w.Header().Set(header, chain)
			}
			w.Write(body)
		})
	}
	serve("/tdx/certification/v4/tcb", read(gtgTCBInfo), "TCB-Info-Issuer-Chain", tcbChain, url.Values{"fmspc": {"50806f000000"}})
	serve("/tdx/certification/v4/qe/identity", read(gtgQEIdentity), "SGX-Enclave-Identity-Issuer-Chain", tcbChain, nil)
	serve("/sgx/certification/v4/pckcrl", read(gtgPCKCRL), "SGX-PCK-CRL-Issuer-Chain", crlChain, url.Values{"ca": {"platform"}})
	serve("/IntelSGXRootCA.der", read(gtgRootCRL), "", "", nil)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv, &hits
}

func TestCollateralFetch(t *testing.T) {
	srv, hits := pcsServer(t)
	dir := t.TempDir()
	cache := filepath.Join(dir, "cache")
	// Inside the saved collateral's validity, so the cache entries are fresh.
	now := time.Date(2023, 7, 1, 1, 0, 0, 0, time.UTC)
	fetch := func(out string) result {
		return runCLIAt(t, now, "collateral", "fetch", "--quote", gtgQuote, "--out", out, "--cache", cache,
			"--pcs-url", srv.URL, "--root-crl-url", srv.URL+"/IntelSGXRootCA.der")
	}

	fetched := filepath.Join(dir, "fetched.json")
	r := fetch(fetched)
	if r.code != 0 {
		t.Fatalf("fetch: exit %d, want 0\n%s", r.code, r)
	}
	if n := hits.Load(); n != 4 {
		t.Errorf("first fetch made %d requests, want 4", n)
	}
	if !strings.Contains(r.stdout, "tdx, FMSPC 50806f000000, PCK platform CA") {
		t.Errorf("summary does not name TEE, FMSPC and CA:\n%s", r)
	}

	// The same responses assembled offline give the same bundle.
	assembled := filepath.Join(dir, "assembled.json")
	if r := runCLI(t, bundleArgs(assembled)...); r.code != 0 {
		t.Fatalf("bundle: exit %d\n%s", r.code, r)
	}
	a, _ := os.ReadFile(fetched)
	b, _ := os.ReadFile(assembled)
	if !bytes.Equal(a, b) {
		t.Errorf("fetched bundle differs from the assembled one:\nfetched:\n%s\nassembled:\n%s", a, b)
	}

	// A second fetch is served from the cache.
	hits.Store(0)
	if r := fetch(filepath.Join(dir, "again.json")); r.code != 0 {
		t.Fatalf("cached fetch: exit %d\n%s", r.code, r)
	}
	if n := hits.Load(); n != 0 {
		t.Errorf("cached fetch made %d requests, want 0", n)
	}

	// A PCS that does not know the endpoint: exit 1, naming the URL.
	r = runCLIAt(t, now, "collateral", "fetch", "--quote", gtgQuote, "--out", filepath.Join(dir, "x.json"),
		"--pcs-url", srv.URL+"/nowhere", "--root-crl-url", srv.URL+"/IntelSGXRootCA.der")
	if r.code != 1 || !strings.Contains(r.stderr, "/nowhere/tdx/certification/v4/tcb") {
		t.Fatalf("unknown endpoint: want exit 1 naming the URL\n%s", r)
	}
	if _, err := os.Stat(filepath.Join(dir, "x.json")); err == nil {
		t.Error("a failed fetch left a bundle behind")
	}
}

// SEV-SNP: go-sev-guest's Milan report with its VCEK. Its guest policy
// allows debug, so any appraisal fails unless --allow-debug; AMD has no TCB
// status, so with no --allow-status the status is not a requirement.
func TestVerifySNP(t *testing.T) {
	const (
		report  = "../../testdata/snp/attestation.bin"
		vcek    = "../../testdata/snp/vcek.testcer"
		measure = "b07af9620f3b839b47996422ddec6058338951d984e312115131ea82705eaf5b6bdf8a9ece31a5a608eb0cf2e4872b01"
	)
	base := []string{"verify", "evidence", report, "--vcek", vcek, "--at", "2025-07-01T00:00:00Z"}
	r := runCLI(t, base...)
	if r.code != 0 {
		t.Fatalf("exit %d, want 0\n%s", r.code, r)
	}
	if m := decodeClaims(t, r); m["tee"] != "sev-snp" || m["measurement"] != measure || m["tcb_status"] != "NotEvaluated" {
		t.Errorf("claims: tee %v, measurement %v, tcb_status %v", m["tee"], m["measurement"], m["tcb_status"])
	}
	if r := runCLI(t, append(slices.Clone(base), "--measurement", measure, "--allow-debug")...); r.code != 0 {
		t.Errorf("right measurement, debug allowed: exit %d, want 0\n%s", r.code, r)
	}
	r = runCLI(t, append(slices.Clone(base), "--measurement", measure)...)
	if r.code != 1 || !strings.Contains(r.stderr, "policy: debug: got true") {
		t.Errorf("debug guest without --allow-debug: want exit 1 naming debug\n%s", r)
	}
	r = runCLI(t, append(slices.Clone(base), "--mrenclave", sgxMRENCLAVE, "--allow-debug")...)
	if r.code != 1 || !strings.Contains(r.stderr, `policy: mrenclave: got nothing (tee "sev-snp" evidence has no mrenclave)`) {
		t.Errorf("SGX policy on SNP evidence: want exit 1 naming mrenclave\n%s", r)
	}
}

func TestVerifyStdin(t *testing.T) {
	quote, err := os.ReadFile(tdxQuote)
	if err != nil {
		t.Fatal(err)
	}
	r := runCLIStdin(t, fixedNow, bytes.NewReader(quote), "verify", "evidence", "-", "--collateral", tdxCollateral)
	if r.code != 0 {
		t.Fatalf("exit %d, want 0\n%s", r.code, r)
	}
	if m := decodeClaims(t, r); m["mrtd"] != tdxMRTD {
		t.Errorf("mrtd = %v, want %s", m["mrtd"], tdxMRTD)
	}
	r = runCLIStdin(t, fixedNow, bytes.NewReader(make([]byte, maxStdinEvidence+1)), "verify", "evidence", "-", "--no-collateral")
	if r.code != 1 || !strings.Contains(r.stderr, "more than") {
		t.Errorf("oversized stdin: want exit 1\n%s", r)
	}
}

// A bundle without CRLs is refused (exit 1: the collateral was given, so
// this is not the usage hint) unless --allow-missing-crl, which passes with
// a warning in the claims and on stderr.
func TestVerifyAllowMissingCRL(t *testing.T) {
	data, err := os.ReadFile(sgxCollateral)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	delete(m, "pck_crl")
	delete(m, "pck_crl_issuer_chain")
	delete(m, "root_ca_crl")
	noCRL := filepath.Join(t.TempDir(), "nocrl.json")
	data, _ = json.Marshal(m)
	if err := os.WriteFile(noCRL, data, 0o644); err != nil {
		t.Fatal(err)
	}
	base := []string{"verify", "evidence", sgxQuote, "--collateral", noCRL, "--at", "1751328000"}
	r := runCLI(t, base...)
	if r.code != 1 || !strings.Contains(r.stderr, "reason: missing collateral") {
		t.Fatalf("no CRLs: want exit 1, reason missing collateral\n%s", r)
	}
	r = runCLI(t, append(slices.Clone(base), "--allow-missing-crl")...)
	if r.code != 0 {
		t.Fatalf("--allow-missing-crl: exit %d, want 0\n%s", r.code, r)
	}
	if w, _ := decodeClaims(t, r)["warnings"].([]any); len(w) == 0 || !strings.Contains(r.stderr, "warning:") {
		t.Errorf("--allow-missing-crl: want a warning in the claims and on stderr\n%s", r)
	}
}

// TestVerifyTextFormatKSS: a KSS enclave's config ID and IDs show in the
// text report; a pre-KSS quote (the real vector above) shows no such rows.
func TestVerifyTextFormatKSS(t *testing.T) {
	dir := t.TempDir()
	pki, err := sim.Load(filepath.Join(dir, "sim"), rand.Reader, fixedNow.Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	q, err := pki.QuoteSGX(rand.Reader, sim.SGXReport{MRENCLAVE: [32]byte{1}, ConfigID: [64]byte{0xc0, 0xf1}, ConfigSVN: 9})
	if err != nil {
		t.Fatal(err)
	}
	qf, rootf := filepath.Join(dir, "q.bin"), filepath.Join(dir, "root.pem")
	if err := os.WriteFile(qf, q, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(rootf, pki.RootPEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	r := runCLI(t, "verify", "evidence", qf, "--trust-root", rootf, "--no-collateral", "--format", "text")
	if r.code != 0 {
		t.Fatal(r)
	}
	for _, want := range []string{"CONFIGID", "c0f1" + strings.Repeat("00", 62), "CONFIGSVN", "ISV family ID"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("text report lacks %q:\n%s", want, r.stdout)
		}
	}
	r = runCLI(t, "verify", "evidence", sgxQuote, "--collateral", sgxCollateral, "--at", "1751328000", "--format", "text")
	if strings.Contains(r.stdout, "CONFIGID") {
		t.Errorf("pre-KSS quote shows a CONFIGID row:\n%s", r.stdout)
	}
}
