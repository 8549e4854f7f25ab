package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cloister-dev/cloister/attest"
	"github.com/cloister-dev/cloister/evidence/pcs"
	"github.com/cloister-dev/cloister/ratls"
	"github.com/cloister-dev/cloister/tee"
	"github.com/cloister-dev/cloister/tee/sim"
)

// TestAttestVerifyToken runs the service on loopback with the simulator and
// checks that verify-token attests it and validates a token it issued.
func TestAttestVerifyToken(t *testing.T) {
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	dir := t.TempDir()
	pki, err := sim.Load(filepath.Join(dir, "sim"), rand.Reader, now.Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	col, err := pki.Collateral(rand.Reader, now, false)
	if err != nil {
		t.Fatal(err)
	}
	plat, err := sim.NewPlatform(pki, tee.KindSimSGX, sim.App{MRENCLAVE: [32]byte{1}}, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	svc, err := attest.New(attest.Config{Platform: plat, Now: func() time.Time { return now }, Alg: "ES256",
		Issuer: "http://" + ln.Addr().String(), TrustRoots: []*x509.Certificate{pki.Root},
		Collateral: func(context.Context, []byte) (*pcs.Bundle, error) { return col, nil }})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(svc)
	srv.Listener.Close()
	srv.Listener = ln
	srv.Start()
	defer srv.Close()

	token := attestHello(t, pki, srv.URL)
	rootFile := filepath.Join(dir, "root.pem")
	if err := os.WriteFile(rootFile, pki.RootPEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	code := run([]string{"attest", "verify-token", token, "--service", srv.URL, "--trust-root", rootFile, "--no-collateral",
		"--mrenclave", "01" + strings.Repeat("00", 31), "--allow-status", "NotEvaluated"}, strings.NewReader(""), &stdout, &stderr, func() time.Time { return now })
	if code != 0 || !strings.Contains(stdout.String(), `"x-ms-sgx-mrenclave": "09`) {
		t.Fatalf("exit %d\nstdout %s\nstderr %s", code, stdout.String(), stderr.String())
	}
	// The claims come out exactly as the token carries them: a uint64
	// above 2^53 in the client's runtime JSON is not rounded.
	stdout.Reset()
	stderr.Reset()
	big := attestRuntimeJSON(t, pki, srv.URL, []byte(`{"counter":18446744073709551615}`))
	code = run([]string{"attest", "verify-token", big, "--service", srv.URL, "--trust-root", rootFile, "--no-collateral",
		"--mrenclave", "01" + strings.Repeat("00", 31), "--allow-status", "NotEvaluated"}, strings.NewReader(""), &stdout, &stderr, func() time.Time { return now })
	if code != 0 || !strings.Contains(stdout.String(), `"counter": 18446744073709551615`) {
		t.Errorf("exact numbers: exit %d\nstdout %s\nstderr %s", code, stdout.String(), stderr.String())
	}
	// A tampered token fails.
	stdout.Reset()
	stderr.Reset()
	bad := token[:len(token)-4] + "AAAA"
	if code := run([]string{"attest", "verify-token", bad, "--service", srv.URL, "--trust-root", rootFile, "--no-collateral"},
		strings.NewReader(""), &stdout, &stderr, func() time.Time { return now }); code != 1 {
		t.Errorf("tampered token: exit %d, %s", code, stderr.String())
	}
	// Without the sim root, the service cannot be attested.
	stderr.Reset()
	if code := run([]string{"attest", "verify-token", token, "--service", srv.URL, "--no-collateral"},
		strings.NewReader(""), &stdout, &stderr, func() time.Time { return now }); code != 1 {
		t.Errorf("untrusted service: exit %d, %s", code, stderr.String())
	}
}

func TestAttestServeUsage(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := run([]string{"attest", "serve", "--alg", "HS256"}, strings.NewReader(""), &stdout, &stderr, time.Now); code != 2 {
		t.Errorf("exit %d: %s", code, stderr.String())
	}
	if code := run([]string{"attest", "verify-token"}, strings.NewReader(""), &stdout, &stderr, time.Now); code != 2 {
		t.Errorf("exit %d: %s", code, stderr.String())
	}
	for _, bad := range []string{"-1h", "5s", "59m"} {
		stderr.Reset()
		if code := run([]string{"attest", "serve", "--key-rotation", bad}, strings.NewReader(""), &stdout, &stderr, time.Now); code != 2 ||
			!strings.Contains(stderr.String(), "--key-rotation") {
			t.Errorf("--key-rotation %s: exit %d: %s", bad, code, stderr.String())
		}
	}
}

// TestServeUntilStops checks the graceful shutdown path used on SIGINT/SIGTERM.
func TestServeUntilStops(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- serveUntil(ctx, ln, http.NotFoundHandler(), slog.New(slog.DiscardHandler), "attestation service", tee.KindSimSGX)
	}()
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// The service's collateral source prefers a matching bundle and otherwise
// asks online with the quote's FMSPC, CA and TEE.
func TestAttestCollateralSource(t *testing.T) {
	raw, err := os.ReadFile(sgxQuote)
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(sgxCollateral)
	if err != nil {
		t.Fatal(err)
	}
	b, err := pcs.ParseBundle(data)
	if err != nil {
		t.Fatal(err)
	}
	var asked []pcs.Query
	online := func(_ context.Context, q pcs.Query) (*pcs.Bundle, error) { asked = append(asked, q); return b, nil }
	if got, err := collateralSource([]*pcs.Bundle{b}, online)(context.Background(), raw); err != nil || got != b || len(asked) != 0 {
		t.Fatalf("with a matching bundle: %v, asked online %d times", err, len(asked))
	}
	if got, err := collateralSource(nil, online)(context.Background(), raw); err != nil || got != b || len(asked) != 1 {
		t.Fatalf("online: %v, %d", err, len(asked))
	}
	if q := asked[0]; q.TEE != pcs.SGX || hex.EncodeToString(q.FMSPC) != "00a067110000" || q.CA != "processor" {
		t.Errorf("online query %+v", q)
	}
	if _, err := collateralSource(nil, nil)(context.Background(), raw); err == nil {
		t.Error("no bundle and no online source gave collateral")
	}
}

// TestTokenKeyClaim: verify-token accepts a signing certificate only when
// the service's verified evidence names its key and kid is its hash; a
// certificate certified by one service's RA-TLS key but another's token key
// (or a wrong kid) is refused.
func TestTokenKeyClaim(t *testing.T) {
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	pki, err := sim.Load(filepath.Join(t.TempDir(), "sim"), rand.Reader, now.Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	plat, err := sim.NewPlatform(pki, tee.KindSimSGX, sim.App{MRENCLAVE: [32]byte{1}}, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	chain := func() []*x509.Certificate {
		svc, err := attest.New(attest.Config{Platform: plat, Now: func() time.Time { return now }, Alg: "ES256", Issuer: "http://svc"})
		if err != nil {
			t.Fatal(err)
		}
		defer svc.Close()
		c, err := svc.Certificates()
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	a, b := chain(), chain()
	res, err := ratls.Verify(context.Background(), a[1], ratls.VerifyOptions{TrustRoots: []*x509.Certificate{pki.Root},
		SkipTCBEvaluation: true, SkipAppraisal: true, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	kid := func(c *x509.Certificate) string {
		sum := sha256.Sum256(c.RawSubjectPublicKeyInfo)
		return base64.RawURLEncoding.EncodeToString(sum[:])
	}
	if err := checkTokenKeyClaim(a[1], res, a[0], kid(a[0])); err != nil {
		t.Fatalf("the service's own key: %v", err)
	}
	if err := checkTokenKeyClaim(a[1], res, b[0], kid(b[0])); err == nil || !strings.Contains(err.Error(), "binds token key") {
		t.Errorf("another service's token key under this evidence: %v", err)
	}
	if err := checkTokenKeyClaim(a[1], res, a[0], kid(b[0])); err == nil || !strings.Contains(err.Error(), "kid") {
		t.Errorf("wrong kid: %v", err)
	}
}

// attestHello posts a sim SGX quote (MRENCLAVE 09 00…) binding the runtime
// data "hello" to the service at url and returns the token it answers.
func attestHello(t *testing.T, pki *sim.PKI, url string) string {
	t.Helper()
	runtime := []byte("hello")
	var rd [64]byte
	sum := sha256.Sum256(runtime)
	copy(rd[:], sum[:])
	q, err := pki.QuoteSGX(rand.Reader, sim.SGXReport{MRENCLAVE: [32]byte{9}, ReportData: rd})
	if err != nil {
		t.Fatal(err)
	}
	body := fmt.Sprintf(`{"quote":%q,"runtimeData":{"data":%q,"dataType":"Binary"}}`,
		base64.StdEncoding.EncodeToString(q), base64.RawURLEncoding.EncodeToString(runtime))
	resp, err := http.Post(url+"/attest/SgxEnclave?api-version=2022-08-01", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	var out struct{ Token string }
	_ = json.NewDecoder(resp.Body).Decode(&out)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("attest: %d", resp.StatusCode)
	}
	return out.Token
}
