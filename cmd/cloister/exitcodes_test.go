package main

import (
	"encoding/pem"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A bad flag value is a usage error (exit 2) in every command, reported
// before any work, naming the flag. Each case would fail differently (exit
// 1, or run) if the value were not checked up front.
func TestBadFlagValuesExit2(t *testing.T) {
	dir := t.TempDir()
	app := filepath.Join(dir, "app") // does not exist: measuring would fail with exit 1
	for _, tc := range []struct {
		args []string
		flag string
	}{
		{[]string{"demo", "--bogus"}, "-bogus"},
		{[]string{"verify", "evidence", "x", "--format", "yaml"}, "--format"},
		{[]string{"verify", "evidence", "x", "--at", "yesterday"}, "--at"},
		{[]string{"verify", "evidence", "x", "--mrenclave", "zz"}, "-mrenclave"},
		{[]string{"verify", "evidence", "x", "--min-svn", "70000"}, "-min-svn"},
		{[]string{"verify", "cert", "x", "--format", "yaml"}, "--format"},
		{[]string{"verify", "https://127.0.0.1:1", "--timeout", "-1s"}, "--timeout"},
		{[]string{"verify", "https://127.0.0.1:1", "--timeout", "0s"}, "--timeout"},
		{[]string{"verify", "https://127.0.0.1:notaport"}, "https://"},
		{[]string{"verify", "http://127.0.0.1:1"}, "use https://127.0.0.1:1"},
		{[]string{"collateral", "fetch", "--quote", "x", "--out", "y", "--pcs-url", "ftp://x"}, "ftp://x"},
		{[]string{"collateral", "bundle", "--bogus"}, "-bogus"},
		{[]string{"run", "--tee", "bogus", "--sim-dir", dir, app}, "--tee"},
		{[]string{"run", "--listen", "notanaddr", "--sim-dir", dir, app}, "--listen"},
		{[]string{"run", "--listen", "127.0.0.1:99999", "--sim-dir", dir, app}, "--listen"},
		{[]string{"run", "--dial", "nope", "--sim-dir", dir, app}, "--dial"},
		{[]string{"run", "--grace", "-1s", "--sim-dir", dir, app}, "--grace"},
		{[]string{"sign", "x", "--bogus"}, "-bogus"},
		{[]string{"measure", "x", "--format", "yaml"}, "--format"},
		{[]string{"quote", "--tee", "bogus", "--report-data", "00", "--out", filepath.Join(dir, "q")}, "--tee"},
		{[]string{"quote", "--tee", "sim-sgx", "--sim-dir", dir, "--report-data", "zz", "--out", filepath.Join(dir, "q")}, "--report-data"},
		{[]string{"sim", "root", "--bogus"}, "-bogus"},
		{[]string{"sim", "collateral", "--tee", "bogus", "--sim-dir", dir}, "--tee"},
		{[]string{"sim", "reset", "--bogus"}, "-bogus"},
		{[]string{"policy", "test", "x", "--bogus"}, "-bogus"},
		{[]string{"bench", "boundary", "--calls", "0"}, "--calls"},
		{[]string{"bench", "boundary", "--duration", "-1s"}, "--duration"},
		{[]string{"bench", "boundary", "--reps", "0"}, "--reps"},
		{[]string{"bench", "kv", "--duration", "-1s"}, "--duration"},
		{[]string{"bench", "kv", "--keys", "0"}, "--keys"},
		{[]string{"bench", "attest", "--alg", "HS256"}, "--alg"},
		{[]string{"bench", "broker", "--flows", "0"}, "--flows"},
		{[]string{"bench", "broker", "--requests", "0"}, "--requests"},
		{[]string{"bench", "broker", "--concurrency", "0"}, "--concurrency"},
		{[]string{"bench", "attest", "--concurrency", "0"}, "--concurrency"},
		{[]string{"bench", "attest", "--quotes", "0"}, "--quotes"},
		{[]string{"attest", "serve", "--tee", "bogus"}, "--tee"},
		{[]string{"attest", "serve", "--addr", "127.0.0.1:99999"}, "--addr"},
		{[]string{"attest", "serve", "--addr", "nope"}, "--addr"},
		{[]string{"attest", "serve", "--alg", "HS256"}, "--alg"},
		{[]string{"attest", "serve", "--max-inflight", "0"}, "--max-inflight"},
		{[]string{"attest", "serve", "--key-rotation", "5s"}, "--key-rotation"},
		{[]string{"attest", "serve", "--pcs", "--pcs-url", "ftp://x"}, "ftp://x"},
		{[]string{"attest", "verify-token", "t", "--service", "ftp://x"}, "--service"},
		{[]string{"attest", "verify-token", "t", "--service", "http://x", "--format", "yaml"}, "--format"},
		{[]string{"version", "extra"}, "extra"},
		{[]string{"help", "nosuchcommand"}, "nosuchcommand"},
	} {
		r := runCLI(t, tc.args...)
		if r.code != exitUsage || !strings.Contains(r.stderr, tc.flag) {
			t.Errorf("cloister %s: exit %d, want 2 naming %s\n%s", strings.Join(tc.args, " "), r.code, tc.flag, r.stderr)
		}
	}
}

// "help --help" (and -h) is help on help, not an unknown command.
func TestHelpHelp(t *testing.T) {
	for _, h := range []string{"--help", "-h", "-help"} {
		r := runCLI(t, "help", h)
		if r.code != 0 || !strings.Contains(r.stdout, "help [COMMAND]") {
			t.Errorf("help %s: exit %d\n%s", h, r.code, r)
		}
	}
}

// verify https tells a network failure and an ordinary (unattested)
// certificate apart from bad evidence: all exit 1, each with its own
// message, neither called invalid evidence.
func TestVerifyHTTPSFailureKinds(t *testing.T) {
	// Nothing listens: a network error.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := l.Addr().String()
	l.Close()
	r := runCLI(t, "verify", "https://"+closed, "--no-collateral")
	if r.code != 1 || !strings.Contains(r.stderr, "network") || strings.Contains(r.stderr, "invalid") {
		t.Errorf("nothing listening: exit %d, want 1 with a network message\n%s", r.code, r.stderr)
	}

	// An ordinary TLS server: no RA-TLS evidence.
	srv := httptest.NewTLSServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer srv.Close()
	r = runCLI(t, "verify", srv.URL, "--no-collateral")
	if r.code != 1 || !strings.Contains(r.stderr, "no RA-TLS evidence") || !strings.Contains(r.stderr, "ordinary certificate") || strings.Contains(r.stderr, "invalid") {
		t.Errorf("ordinary TLS server: exit %d, want 1 saying it has an ordinary certificate\n%s", r.code, r.stderr)
	}

	// A server that does not speak TLS: a network (handshake) error.
	plain := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer plain.Close()
	r = runCLI(t, "verify", "https://"+strings.TrimPrefix(plain.URL, "http://"), "--no-collateral")
	if r.code != 1 || !strings.Contains(r.stderr, "TLS") || strings.Contains(r.stderr, "invalid") {
		t.Errorf("plain HTTP server: exit %d, want 1 with a TLS handshake message\n%s", r.code, r.stderr)
	}
}

// verify cert says so when a certificate carries no RA-TLS evidence at all.
func TestVerifyCertOrdinaryCertificate(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer srv.Close()
	pemFile := filepath.Join(t.TempDir(), "ordinary.pem")
	if err := os.WriteFile(pemFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	r := runCLI(t, "verify", "cert", pemFile, "--no-collateral")
	if r.code != 1 || !strings.Contains(r.stderr, "no RA-TLS evidence: an ordinary certificate") {
		t.Errorf("ordinary certificate: exit %d\n%s", r.code, r.stderr)
	}
}
