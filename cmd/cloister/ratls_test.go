package main

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"io"
	"log"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cloister-dev/cloister/ratls"
	"github.com/cloister-dev/cloister/tee"
	"github.com/cloister-dev/cloister/tee/sim"
)

const (
	gramineCert  = "../../testdata/ratls/gramine-cert.pem"
	ratsTLSCert  = "../../testdata/ratls/rats-tls-cert.pem"
	gramineMRE   = "0866e7ca11b9f4efe4bf39b2607f4e1299f111920d96d95719080f01b62b7585"
	interopAtRFC = "2024-01-01T00:00:00Z"
)

// ratlsOutput is the JSON of the RA-TLS commands, as far as tests read it.
type ratlsOutput struct {
	TEE       string `json:"tee"`
	MRENCLAVE string `json:"mrenclave"`
	TCBStatus string `json:"tcb_status"`
	Debug     bool   `json:"debug"`
	RATLS     struct {
		Form      string `json:"form"`
		KeyBound  bool   `json:"key_bound"`
		Appraised bool   `json:"appraised"`
		Fresh     bool   `json:"fresh"`
	} `json:"ratls"`
}

func decodeRATLS(t *testing.T, r result) ratlsOutput {
	t.Helper()
	var out ratlsOutput
	if err := json.Unmarshal([]byte(r.stdout), &out); err != nil {
		t.Fatalf("output is not JSON: %v\n%s", err, r)
	}
	return out
}

func TestVerifyCertInterop(t *testing.T) {
	r := runCLI(t, "verify", "cert", gramineCert, "--no-collateral", "--at", interopAtRFC)
	if r.code != 0 {
		t.Fatal(r)
	}
	out := decodeRATLS(t, r)
	if out.TEE != "sgx" || out.MRENCLAVE != gramineMRE || out.TCBStatus != "NotEvaluated" || !out.Debug ||
		out.RATLS.Form != "ccc" || !out.RATLS.KeyBound || out.RATLS.Appraised {
		t.Errorf("output %+v", out)
	}

	// With a policy: allowed explicitly it passes; by default the debug
	// enclave and the unevaluated TCB both fail, each named.
	r = runCLI(t, "verify", "cert", gramineCert, "--no-collateral", "--at", interopAtRFC,
		"--mrenclave", gramineMRE, "--allow-debug", "--allow-status", "NotEvaluated")
	if r.code != 0 || !decodeRATLS(t, r).RATLS.Appraised {
		t.Fatal(r)
	}
	r = runCLI(t, "verify", "cert", gramineCert, "--no-collateral", "--at", interopAtRFC, "--mrenclave", gramineMRE)
	if r.code != 1 || r.stdout != "" || !strings.Contains(r.stderr, "policy not satisfied") ||
		!strings.Contains(r.stderr, "debug") || !strings.Contains(r.stderr, "tcb_status") {
		t.Fatal(r)
	}
}

func TestVerifyCertFailures(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		code int
		has  string
	}{
		{"needs collateral", []string{ratsTLSCert, "--at", interopAtRFC}, 2, "--no-collateral"},
		{"expired certificate", []string{ratsTLSCert, "--no-collateral", "--at", "2025-01-01T00:00:00Z"}, 1, "expired or not yet valid"},
		{"untrusted root", []string{ratsTLSCert, "--no-collateral", "--at", interopAtRFC, "--trust-root", "../../testdata/snp/ask_ark_milan.pem"}, 1, "untrusted root"},
		{"not a certificate", []string{sgxQuote, "--no-collateral"}, 1, "certificate"},
		{"no extension", []string{"../../testdata/tdx/sample_tcbInfo_issuer_chain.pem", "--no-collateral"}, 1, "no RA-TLS evidence extension"},
		{"missing PEM", nil, 2, "missing certificate PEM"},
		{"bad format", []string{ratsTLSCert, "--format", "xml"}, 2, "--format"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := runCLI(t, append([]string{"verify", "cert"}, tc.args...)...)
			if r.code != tc.code || r.stdout != "" || !strings.Contains(r.stderr, tc.has) {
				t.Fatalf("want exit %d and %q\n%s", tc.code, tc.has, r)
			}
		})
	}
}

func TestVerifyCertText(t *testing.T) {
	r := runCLI(t, "verify", "cert", ratsTLSCert, "--no-collateral", "--at", interopAtRFC, "--format", "text")
	if r.code != 0 || !strings.Contains(r.stdout, "RA-TLS: evidence in the ccc extension, certificate key bound: true") {
		t.Fatal(r)
	}
}

// raServer is an RA-TLS HTTPS server on the simulator, on loopback, with
// the challenge handler mounted; it returns the base URL and the files a
// client needs (sim root, collateral).
func raServer(t *testing.T, now time.Time, app sim.App) (base, rootFile, colFile string) {
	t.Helper()
	dir := t.TempDir()
	pki, err := sim.Load(filepath.Join(dir, "sim"), rand.Reader, now)
	if err != nil {
		t.Fatal(err)
	}
	col, err := pki.Collateral(rand.Reader, now, false)
	if err != nil {
		t.Fatal(err)
	}
	colJSON, err := col.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	rootFile, colFile = filepath.Join(dir, "root.pem"), filepath.Join(dir, "collateral.json")
	if err := os.WriteFile(rootFile, pki.RootPEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(colFile, colJSON, 0o600); err != nil {
		t.Fatal(err)
	}
	p, err := sim.NewPlatform(pki, tee.KindSimSGX, app, nil)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := ratls.NewServer(context.Background(), ratls.ServerOptions{Platform: p, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := ratls.ServerConfig(srv, nil)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle(ratls.ChallengePath, srv.ChallengeHandler())
	hs := &http.Server{Handler: mux, ErrorLog: log.New(io.Discard, "", 0)}
	go hs.Serve(ln)
	t.Cleanup(func() { hs.Close() })
	return "https://" + ln.Addr().String(), rootFile, colFile
}

func TestVerifyHTTPS(t *testing.T) {
	now := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	app := sim.App{MRENCLAVE: [32]byte{0x5A, 1}, MRSIGNER: [32]byte{0x5B, 2}, ProductID: 1, SVN: 2}
	mre := hex.EncodeToString(app.MRENCLAVE[:])
	base, root, col := raServer(t, now, app)

	r := runCLIAt(t, now, "verify", base, "--trust-root", root, "--collateral", col, "--mrenclave", mre, "--fresh")
	if r.code != 0 {
		t.Fatal(r)
	}
	out := decodeRATLS(t, r)
	if out.TEE != "sim-sgx" || out.MRENCLAVE != mre || out.TCBStatus != "UpToDate" || out.RATLS.Form != "ccc" ||
		!out.RATLS.KeyBound || !out.RATLS.Appraised || !out.RATLS.Fresh {
		t.Errorf("output %+v", out)
	}
	// The table spelling works too, without the challenge.
	r = runCLIAt(t, now, "verify", "https", base, "--trust-root", root, "--collateral", col)
	if r.code != 0 || decodeRATLS(t, r).RATLS.Fresh {
		t.Fatal(r)
	}

	for _, tc := range []struct {
		name string
		args []string
		code int
		has  string
	}{
		{"wrong mrenclave", []string{"--trust-root", root, "--collateral", col, "--mrenclave", otherHex32}, 1, "policy: mrenclave"},
		{"sim root not named", []string{"--collateral", col}, 1, "untrusted root"},
		{"needs collateral", []string{"--trust-root", root}, 2, "--no-collateral"},
		{"NotEvaluated not allowed", []string{"--trust-root", root, "--no-collateral", "--mrenclave", mre}, 1, "tcb_status"},
		{"bad flag", []string{"--bogus"}, 2, "-bogus"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := runCLIAt(t, now, append([]string{"verify", base}, tc.args...)...)
			if r.code != tc.code || r.stdout != "" || !strings.Contains(r.stderr, tc.has) {
				t.Fatalf("want exit %d and %q\n%s", tc.code, tc.has, r)
			}
		})
	}
	for _, bad := range []string{"https://", "https://h:1/path", "https://h:1?q=1"} {
		if r := runCLIAt(t, now, "verify", bad); r.code != 2 || !strings.Contains(r.stderr, "want https://HOST:PORT") {
			t.Errorf("%s: %s", bad, r)
		}
	}
	if r := runCLIAt(t, now, "verify", "https"); r.code != 2 || !strings.Contains(r.stderr, "missing https://HOST:PORT") {
		t.Error(r)
	}
}
