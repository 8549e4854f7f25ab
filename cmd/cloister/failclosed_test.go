package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cloister-dev/cloister/attest"
	"github.com/cloister-dev/cloister/evidence/pcs"
	"github.com/cloister-dev/cloister/tee"
	"github.com/cloister-dev/cloister/tee/sim"
)

// tokenService runs the attestation service as app on the simulator and
// returns its URL, a token it issued, the sim root's PEM file and a
// collateral bundle file for the service's own quote.
func tokenService(t *testing.T, now time.Time, app sim.App) (url, token, rootFile, colFile string) {
	t.Helper()
	dir := t.TempDir()
	pki, err := sim.Load(filepath.Join(dir, "sim"), rand.Reader, now.Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	col, err := pki.Collateral(rand.Reader, now, false)
	if err != nil {
		t.Fatal(err)
	}
	plat, err := sim.NewPlatform(pki, tee.KindSimSGX, app, rand.Reader)
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
	t.Cleanup(srv.Close)

	token = attestHello(t, pki, srv.URL)
	rootFile = filepath.Join(dir, "root.pem")
	if err := os.WriteFile(rootFile, pki.RootPEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	colJSON, err := json.Marshal(col)
	if err != nil {
		t.Fatal(err)
	}
	colFile = filepath.Join(dir, "collateral.json")
	if err := os.WriteFile(colFile, colJSON, 0o600); err != nil {
		t.Fatal(err)
	}
	return srv.URL, token, rootFile, colFile
}

// verify-token appraises the service's own evidence by default: a debug
// service (whose memory the host reads, so whose keys anyone may hold) is
// refused unless appraisal is skipped by name; a production one passes.
func TestVerifyTokenAppraisesServiceByDefault(t *testing.T) {
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	app := sim.App{MRENCLAVE: [32]byte{1}, MRSIGNER: [32]byte{2}, ProductID: 7}
	debugApp := app
	debugApp.Debug = true
	call := func(args ...string) (int, string) {
		var so, se bytes.Buffer
		code := run(append([]string{"attest", "verify-token"}, args...), strings.NewReader(""), &so, &se, func() time.Time { return now })
		return code, so.String() + se.String()
	}
	mre := fmt.Sprintf("%x", app.MRENCLAVE)

	url, token, root, col := tokenService(t, now, debugApp)
	for name, extra := range map[string][]string{
		"collateral":    {"--collateral", col},
		"no collateral": {"--no-collateral"},
	} {
		args := append([]string{token, "--service", url, "--trust-root", root}, extra...)
		if code, out := call(args...); code != 1 || !strings.Contains(out, "debug") {
			t.Errorf("debug service, %s, default: exit %d, want 1 naming debug\n%s", name, code, out)
		}
		if code, out := call(append(args, "--skip-appraisal")...); code != 0 {
			t.Errorf("debug service, %s, --skip-appraisal: exit %d\n%s", name, code, out)
		}
		if code, out := call(append(args, "--mrenclave", mre, "--allow-debug", "--allow-status", "UpToDate,NotEvaluated")...); code != 0 {
			t.Errorf("debug service, %s, pinned and debug allowed: exit %d\n%s", name, code, out)
		}
	}

	url, token, root, col = tokenService(t, now, app)
	for name, extra := range map[string][]string{
		"collateral (UpToDate)":        {"--collateral", col},
		"NotEvaluated allowed by name": {"--no-collateral", "--any-identity", "--allow-status", "NotEvaluated"},
		"pinned":                       {"--collateral", col, "--mrenclave", mre},
		"signer and product":           {"--collateral", col, "--mrsigner", fmt.Sprintf("%x", app.MRSIGNER), "--product-id", "7"},
	} {
		args := append([]string{token, "--service", url, "--trust-root", root}, extra...)
		if code, out := call(args...); code != 0 {
			t.Errorf("service, %s: exit %d\n%s", name, code, out)
		}
	}
	// Without collateral the status is NotEvaluated, which the default
	// (UpToDate only) refuses: an OutOfDate service would look the same.
	if code, out := call(token, "--service", url, "--trust-root", root, "--no-collateral"); code != 1 || !strings.Contains(out, "tcb_status") {
		t.Errorf("no collateral, default: exit %d, want 1 naming tcb_status\n%s", code, out)
	}
	// Another enclave pinned: refused.
	if code, out := call(token, "--service", url, "--trust-root", root, "--collateral", col, "--mrenclave", strings.Repeat("ab", 32)); code != 1 {
		t.Errorf("wrong mrenclave: exit %d\n%s", code, out)
	}
	// Policy flags that name no identity are a usage error that says so.
	if code, out := call(token, "--service", url, "--trust-root", root, "--collateral", col, "--allow-status", "UpToDate"); code != 2 || !strings.Contains(out, "no identity") {
		t.Errorf("policy without identity: exit %d, want 2 naming the missing identity\n%s", code, out)
	}
	if code, out := call(token, "--service", url, "--trust-root", root, "--skip-appraisal", "--mrenclave", mre); code != 2 {
		t.Errorf("--skip-appraisal with policy flags: exit %d, want 2\n%s", code, out)
	}
}

// Every command that appraises with policy flags refuses flags that name no
// identity, and accepts --any-identity as the conscious choice.
func TestPolicyFlagsNeedIdentity(t *testing.T) {
	base := []string{"verify", "cert", gramineCert, "--at", interopAtRFC, "--no-collateral"}
	for name, tc := range map[string]struct {
		args []string
		code int
	}{
		"status and debug only":  {[]string{"--allow-status", "NotEvaluated", "--allow-debug"}, 2},
		"signer without product": {[]string{"--mrsigner", "adc53501f21ced9b998e37a7a18e061c63e00315045fa57a49c18ef0a30d02ca", "--allow-status", "NotEvaluated", "--allow-debug"}, 2},
		"any identity":           {[]string{"--any-identity", "--allow-status", "NotEvaluated", "--allow-debug"}, 0},
		"mrenclave":              {[]string{"--mrenclave", gramineMRE, "--allow-status", "NotEvaluated", "--allow-debug"}, 0},
		"no policy flags":        {nil, 0},
	} {
		r := runCLI(t, append(slices.Clone(base), tc.args...)...)
		if r.code != tc.code || (tc.code == 2 && !strings.Contains(r.stderr, "no identity")) {
			t.Errorf("verify cert, %s: exit %d, want %d\n%s", name, r.code, tc.code, r)
		}
	}
	r := runCLI(t, "verify", "evidence", sgxQuote, "--no-collateral", "--at", "1751328000", "--allow-status", "NotEvaluated")
	if r.code != 2 || !strings.Contains(r.stderr, "no identity") {
		t.Errorf("verify evidence without identity: exit %d, want 2\n%s", r.code, r)
	}
}
