package attest

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"testing"
	"time"

	"github.com/cloister-dev/cloister/evidence"
	"github.com/cloister-dev/cloister/evidence/pcs"
	"github.com/cloister-dev/cloister/evidence/tsmreport"
	"github.com/cloister-dev/cloister/tee"
	"github.com/cloister-dev/cloister/tee/sim"
	"github.com/golang-jwt/jwt/v5"
)

// A sim-tdx quote through /attest/TdxVm: the token carries the TDX claims
// evidence.Verify reports for the same quote, and runtime data binds.
func TestAttestTdxVm(t *testing.T) {
	f := getFixture(t)
	s, col := newTDXService(t, f)
	defer s.Close()
	runtime := []byte(`{"key":"value"}`)
	var rd [64]byte
	sum := sha256.Sum256(runtime)
	copy(rd[:], sum[:])
	td, err := sim.NewPlatform(f.pki, tee.KindSimTDX, sim.App{MRENCLAVE: [32]byte{0x77}}, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	q, err := td.Evidence(context.Background(), rd)
	if err != nil {
		t.Fatal(err)
	}
	want, err := evidence.NewVerifier().Verify(context.Background(), q, evidence.Options{Time: testNow, Collateral: col, TrustRoots: []*x509.Certificate{f.pki.Root}})
	if err != nil {
		t.Fatal(err)
	}
	code, out := do(t, s, "POST", "/attest/TdxVm"+av, attestBody(q, runtime, ""))
	if code != 200 {
		t.Fatalf("TdxVm: %d %v", code, out)
	}
	tok, _, err := jwt.NewParser().ParseUnverified(out["token"].(string), jwt.MapClaims{})
	if err != nil {
		t.Fatal(err)
	}
	c := tok.Claims.(jwt.MapClaims)
	if c["tdx_mrtd"] != want.MRTD.String() || c["tcb_status"] != want.TCBStatus || c["x-ms-attestation-type"] != "sim-tdx" {
		t.Errorf("claims mrtd %v tcb %v type %v; evidence says %s %s", c["tdx_mrtd"], c["tcb_status"], c["x-ms-attestation-type"], want.MRTD, want.TCBStatus)
	}
	// The same quote with other runtime data, and an SGX quote at TdxVm, are 400s.
	if code, _ := do(t, s, "POST", "/attest/TdxVm"+av, attestBody(q, []byte(`{"other":1}`), "")); code != 400 {
		t.Errorf("mismatched runtime data: %d", code)
	}
	if code, _ := do(t, s, "POST", "/attest/TdxVm"+av, attestBody(quote(t, f, nil, false), nil, "")); code != 400 {
		t.Errorf("SGX quote at TdxVm: %d", code)
	}
}

// newTDXService is a service whose collateral source serves the sim's TDX
// bundle, which it also returns.
func newTDXService(t *testing.T, f fixture) (*Service, *pcs.Bundle) {
	t.Helper()
	col, err := f.pki.Collateral(rand.Reader, testNow, true)
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(Config{
		Platform: f.plat, Now: func() time.Time { return testNow }, TrustRoots: []*x509.Certificate{f.pki.Root},
		Collateral: func(context.Context, []byte) (*pcs.Bundle, error) { return col, nil },
		Alg:        "ES256", Issuer: "https://attest.test",
	})
	if err != nil {
		t.Fatal(err)
	}
	return s, col
}

// A configfs-tsm report carrying a TDX quote (as a TD's tee/tsm platform
// or Veraison's ratsd writes it, provider with the kernel's newline) gets
// the same collateral and trust roots at /attest/TdxVm as the bare quote:
// the collateral source is asked about the quote inside.
func TestAttestTdxVmTSMReport(t *testing.T) {
	f := getFixture(t)
	col, err := f.pki.Collateral(rand.Reader, testNow, true)
	if err != nil {
		t.Fatal(err)
	}
	var asked [][]byte
	s, err := New(Config{
		Platform: f.plat, Now: func() time.Time { return testNow }, TrustRoots: []*x509.Certificate{f.pki.Root},
		Collateral: func(_ context.Context, raw []byte) (*pcs.Bundle, error) {
			asked = append(asked, raw)
			return col, nil
		},
		Alg: "ES256", Issuer: "https://attest.test",
	})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	td, err := sim.NewPlatform(f.pki, tee.KindSimTDX, sim.App{MRENCLAVE: [32]byte{0x78}}, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	q, err := td.Evidence(context.Background(), [64]byte{})
	if err != nil {
		t.Fatal(err)
	}
	js, err := (&tsmreport.Report{Provider: tsmreport.ProviderTDX, OutBlob: q}).EncodeJSON()
	if err != nil {
		t.Fatal(err)
	}
	kernel := bytes.Replace(js, []byte(`"tdx_guest"`), []byte(`"tdx_guest\n"`), 1)
	for name, ev := range map[string][]byte{"JSON": js, "kernel newline": kernel} {
		asked = nil
		code, out := do(t, s, "POST", "/attest/TdxVm"+av, attestBody(ev, nil, ""))
		if code != 200 {
			t.Fatalf("%s: TdxVm with a configfs-tsm report: %d %v", name, code, out)
		}
		tok, _, err := jwt.NewParser().ParseUnverified(out["token"].(string), jwt.MapClaims{})
		if err != nil {
			t.Fatal(err)
		}
		c := tok.Claims.(jwt.MapClaims)
		if c["tcb_status"] != evidence.StatusUpToDate || c["x-ms-attestation-type"] != "sim-tdx" {
			t.Errorf("%s: tcb_status %v type %v, want UpToDate sim-tdx", name, c["tcb_status"], c["x-ms-attestation-type"])
		}
		if len(asked) != 1 || !bytes.Equal(asked[0], q) {
			t.Errorf("%s: collateral asked for %d inputs, want the inner quote once", name, len(asked))
		}
	}
}
