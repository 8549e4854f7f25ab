package sim

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/cloister-dev/cloister/evidence"
	"github.com/cloister-dev/cloister/evidence/tdx"
)

var testNow = time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)

func testPKI(t *testing.T) *PKI {
	t.Helper()
	p, err := Load(filepath.Join(t.TempDir(), "sim"), rand.Reader, testNow)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestPKIPersistsWithOwnerOnlyPermissions(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "sim")
	p1, err := Load(dir, rand.Reader, testNow)
	if err != nil {
		t.Fatal(err)
	}
	p2, err := Load(dir, rand.Reader, testNow.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if !p1.Root.Equal(p2.Root) {
		t.Error("second Load made a new root")
	}
	st, err := os.Stat(dir)
	if err != nil || st.Mode().Perm() != 0o700 {
		t.Errorf("dir mode %v %v; want 0700", st.Mode().Perm(), err)
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		info, _ := e.Info()
		if info.Mode().Perm() != 0o600 {
			t.Errorf("%s mode %v; want 0600", e.Name(), info.Mode().Perm())
		}
	}
	p3, err := Reset(dir, rand.Reader, testNow)
	if err != nil {
		t.Fatal(err)
	}
	if p3.Root.Equal(p1.Root) {
		t.Error("Reset kept the old root")
	}
}

// Sim quotes verify through the production verifier only when the sim root
// is named, and then as sim kinds.
func TestSimQuotesVerify(t *testing.T) {
	p := testPKI(t)
	var rd [64]byte
	copy(rd[:], "report data")
	sgxQuote, err := p.QuoteSGX(rand.Reader, SGXReport{MRENCLAVE: [32]byte{1}, MRSIGNER: [32]byte{2}, ISVProdID: 7, ISVSVN: 3, ReportData: rd})
	if err != nil {
		t.Fatal(err)
	}
	var body tdx.Body
	body.MRTD[0], body.ReportData = 9, rd
	tdxQuote, err := p.QuoteTDX(rand.Reader, body)
	if err != nil {
		t.Fatal(err)
	}
	at := testNow.Add(time.Hour)
	for _, tc := range []struct {
		name  string
		quote []byte
		tdx   bool
		kind  string
	}{{"sgx", sgxQuote, false, evidence.TEESimSGX}, {"tdx", tdxQuote, true, evidence.TEESimTDX}} {
		t.Run(tc.name, func(t *testing.T) {
			col, err := p.Collateral(rand.Reader, testNow, tc.tdx)
			if err != nil {
				t.Fatal(err)
			}
			opts := evidence.Options{Time: at, Collateral: col, TrustRoots: []*x509.Certificate{p.Root}}
			c, err := evidence.NewVerifier().Verify(context.Background(), tc.quote, opts)
			if err != nil {
				t.Fatal(err)
			}
			if c.TEE != tc.kind || c.TCBStatus != evidence.StatusUpToDate || string(c.ReportData[:11]) != "report data" {
				t.Errorf("tee %q status %q report data %q", c.TEE, c.TCBStatus, c.ReportData[:11])
			}
			if tc.tdx && c.MRTD[0] != 9 || !tc.tdx && (c.MRENCLAVE[0] != 1 || c.ISVProdID != 7 || c.ISVSVN != 3 || c.Debug) {
				t.Errorf("claims: %+v", c)
			}
			// Under the default (Intel) root the same evidence fails.
			opts.TrustRoots = nil
			_, err = evidence.NewVerifier().Verify(context.Background(), tc.quote, opts)
			if r, _ := evidence.ReasonOf(err); r != evidence.UntrustedRoot {
				t.Errorf("under the Intel root: %v; want UntrustedRoot", err)
			}
			// Collateral expires.
			opts.TrustRoots = []*x509.Certificate{p.Root}
			opts.Time = testNow.Add(CollateralValidity + time.Hour)
			if _, err := evidence.NewVerifier().Verify(context.Background(), tc.quote, opts); err == nil {
				t.Error("verified after the sim collateral's nextUpdate")
			}
		})
	}
}
