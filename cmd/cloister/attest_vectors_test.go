package main

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/cloister-dev/cloister/attest"
)

// TestAttestServeRealQuotes runs `attest serve` trusting only Intel's root,
// with Intel's real collateral in --collateral-dir, and attests the real
// dcap-qvl SGX and TDX quotes: each token validates against the published
// key, and its claims are what `cloister verify evidence` reports for the
// same quote, collateral and time.
func TestAttestServeRealQuotes(t *testing.T) {
	at := time.Date(2025, 7, 1, 0, 0, 0, 0, time.UTC)
	clock := func() time.Time { return at }
	dir := t.TempDir()
	colDir := filepath.Join(dir, "collateral")
	if err := os.Mkdir(colDir, 0o700); err != nil {
		t.Fatal(err)
	}
	for i, f := range []string{sgxCollateral, tdxCollateral} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(colDir, fmt.Sprintf("%d.json", i)), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	srv := serveInProcess(t, clock, "--tee", "sim-sgx", "--sim-dir", filepath.Join(dir, "sim"),
		"--addr", "127.0.0.1:0", "--collateral-dir", colDir, "--alg", "RS256")
	base := "http://" + srv.addr
	keys, err := fetchJWKS(t.Context(), http.DefaultClient, base+"/certs")
	if err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		typ, quote, collateral string
		// token claim → key of verify evidence's JSON
		same map[string]string
		// x-ms-attestation-type: MAA names TDX "tdxvm" where Cloister's
		// claims say "tdx".
		attestationType string
	}{
		{"SgxEnclave", sgxQuote, sgxCollateral, map[string]string{
			"x-ms-sgx-mrenclave": "mrenclave", "x-ms-sgx-mrsigner": "mrsigner", "x-ms-sgx-product-id": "isv_prod_id",
			"x-ms-sgx-svn": "isv_svn", "x-ms-sgx-is-debuggable": "debug", "x-ms-sgx-report-data": "report_data",
			"tcb_status": "tcb_status", "x-ms-attestation-type": "tee"}, "sgx"},
		{"TdxVm", tdxQuote, tdxCollateral, map[string]string{
			"tdx_mrtd": "mrtd", "tdx_rtmr0": "rtmr0", "tdx_rtmr1": "rtmr1", "tdx_rtmr2": "rtmr2", "tdx_rtmr3": "rtmr3",
			"tdx_mrseam": "mr_seam", "tdx_mrconfigid": "mr_config_id", "tdx_report_data": "report_data",
			"tdx_td_attributes": "td_attributes", "tdx_xfam": "xfam", "tdx_tee_tcb_svn": "tee_tcb_svn",
			"tcb_status": "tcb_status"}, "tdxvm"},
	} {
		t.Run(tc.typ, func(t *testing.T) {
			raw, err := os.ReadFile(tc.quote)
			if err != nil {
				t.Fatal(err)
			}
			resp, err := http.Post(base+"/attest/"+tc.typ+"?api-version=2022-08-01", "application/json",
				strings.NewReader(fmt.Sprintf(`{"quote":%q}`, base64.RawURLEncoding.EncodeToString(raw))))
			if err != nil {
				t.Fatal(err)
			}
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil || resp.StatusCode != 200 {
				t.Fatalf("status %d: %s", resp.StatusCode, body)
			}
			var out struct{ Token string }
			if err := json.Unmarshal(body, &out); err != nil {
				t.Fatal(err)
			}
			claims := jwt.MapClaims{}
			if _, err := jwt.ParseWithClaims(out.Token, claims, func(tk *jwt.Token) (any, error) {
				for _, k := range keys {
					if k.Kid == tk.Header["kid"] {
						certs, err := attest.ParseX5C(k.X5C)
						if err != nil {
							return nil, err
						}
						return certs[0].PublicKey, nil
					}
				}
				return nil, fmt.Errorf("kid %v not in /certs", tk.Header["kid"])
			}, jwt.WithValidMethods([]string{"RS256"}), jwt.WithTimeFunc(clock)); err != nil {
				t.Fatal(err)
			}

			r := runCLIAt(t, at, "verify", "evidence", tc.quote, "--collateral", tc.collateral)
			if r.code != 0 {
				t.Fatal(r)
			}
			var want map[string]any
			if err := json.Unmarshal([]byte(r.stdout), &want); err != nil {
				t.Fatal(err)
			}
			if claims["x-ms-attestation-type"] != tc.attestationType {
				t.Errorf("x-ms-attestation-type = %v, want %s", claims["x-ms-attestation-type"], tc.attestationType)
			}
			for claim, key := range tc.same {
				if fmt.Sprint(claims[claim]) != fmt.Sprint(want[key]) || want[key] == nil {
					t.Errorf("token %s = %v; verify evidence %s = %v", claim, claims[claim], key, want[key])
				}
			}
		})
	}
}
