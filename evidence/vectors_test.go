package evidence

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cloister-dev/cloister/evidence/pcs"
	"github.com/cloister-dev/cloister/evidence/sgx"
)

// Vector times, from testdata/README.md.
var (
	// dcapQVLTime is inside the validity window of both dcap-qvl bundles.
	dcapQVLTime = time.Unix(1751328000, 0) // 2025-07-01T00:00:00Z
	// goTDXGuestTime is the time go-tdx-guest's tests use.
	goTDXGuestTime = time.Date(2023, time.July, 1, 1, 0, 0, 0, time.UTC)
)

func readVector(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "testdata", path))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func bundleVector(t testing.TB, path string) *pcs.Bundle {
	t.Helper()
	b, err := pcs.ParseBundle(readVector(t, path))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// goTDXGuestBundle assembles a bundle from go-tdx-guest's saved PCS responses.
func goTDXGuestBundle(t testing.TB) *pcs.Bundle {
	t.Helper()
	chain := readVector(t, "tdx/sample_tcbInfo_issuer_chain.pem")
	b, err := pcs.AssembleBundle(pcs.BundleFiles{
		TCBInfoResponse:       readVector(t, "tdx/sample_tcbInfo_response"),
		TCBInfoIssuerChain:    chain,
		QEIdentityResponse:    readVector(t, "tdx/sample_qeIdentity_response"),
		QEIdentityIssuerChain: chain,
		PCKCRL:                readVector(t, "tdx/pckcrl"),
		PCKCRLIssuerChain:     readVector(t, "tdx/pckcrl_issuer_chain.pem"),
		RootCACRL:             readVector(t, "tdx/rootcrl.der"),
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func unhex(s string) HexBytes {
	b, err := hex.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}

// TestVectors checks every real vector against the outcome testdata/README.md
// lists for it.
func TestVectors(t *testing.T) {
	sgxQuote := readVector(t, "sgx/dcap-qvl_sgx_quote_v3.bin")
	tdxQuote := readVector(t, "tdx/dcap-qvl_tdx_quote_v4.bin")
	sprQuote := readVector(t, "tdx/tdx_prod_quote_SPR_E4.dat")
	tests := []struct {
		name       string
		raw        []byte
		opts       Options
		wantReason Reason
		check      func(t *testing.T, c *Claims)
	}{
		{
			name: "dcap-qvl SGX v3 with collateral",
			raw:  sgxQuote,
			opts: Options{Time: dcapQVLTime, Collateral: bundleVector(t, "sgx/dcap-qvl_sgx_quote_v3_collateral.json")},
			check: func(t *testing.T, c *Claims) {
				want := &Claims{TEE: TEESGX, TCBStatus: StatusConfigurationAndSWHardeningNeeded,
					AdvisoryIDs: []string{"INTEL-SA-00289", "INTEL-SA-00615"}}
				checkCommon(t, c, want)
				eq(t, "mrenclave", c.MRENCLAVE, unhex("33d8736db756ed4997e04ba358d27833188f1932ff7b1d156904d3f560452fbb"))
				eq(t, "mrsigner", c.MRSIGNER, unhex("815f42f11cf64430c30bab7816ba596a1da0130c3b028b673133a66cf9a3e0e6"))
				eq(t, "report_data", c.ReportData[:13], HexBytes("Hello, world!"))
				eq(t, "fmspc", c.FMSPC, unhex("00a067110000"))
				if c.Debug || c.PCESVN != 13 || c.QESVN != 10 || c.ISVProdID != 0 || c.ISVSVN != 0 || c.TCBDate != "2024-03-13T00:00:00Z" {
					t.Errorf("debug %v pce_svn %d qe_svn %d isv %d/%d tcb_date %s", c.Debug, c.PCESVN, c.QESVN, c.ISVProdID, c.ISVSVN, c.TCBDate)
				}
				// A Processor CA PCK certificate: standard, no instance ID or configuration.
				if c.SGXType != "standard" || c.PlatformInstanceID != nil || c.SMTEnabled != nil {
					t.Errorf("sgx_type %q, instance %x, smt %v", c.SGXType, c.PlatformInstanceID, c.SMTEnabled)
				}
			},
		},
		{
			name: "dcap-qvl SGX v3 at dcap-qvl's own test time",
			raw:  sgxQuote,
			opts: Options{Time: time.Unix(1752919277, 0), Collateral: bundleVector(t, "sgx/dcap-qvl_sgx_quote_v3_collateral.json")},
			check: func(t *testing.T, c *Claims) {
				checkCommon(t, c, &Claims{TEE: TEESGX, TCBStatus: StatusConfigurationAndSWHardeningNeeded,
					AdvisoryIDs: []string{"INTEL-SA-00289", "INTEL-SA-00615"}})
			},
		},
		{
			name:       "dcap-qvl SGX v3 before the collateral was issued",
			raw:        sgxQuote,
			opts:       Options{Time: time.Unix(1750320802, 0), Collateral: bundleVector(t, "sgx/dcap-qvl_sgx_quote_v3_collateral.json")},
			wantReason: Expired,
		},
		{
			name: "dcap-qvl TDX v4 with collateral",
			raw:  tdxQuote,
			opts: Options{Time: dcapQVLTime, Collateral: bundleVector(t, "tdx/dcap-qvl_tdx_quote_v4_collateral.json")},
			check: func(t *testing.T, c *Claims) {
				checkCommon(t, c, &Claims{TEE: TEETDX, TCBStatus: StatusUpToDate, AdvisoryIDs: []string{}})
				eq(t, "mrtd", c.MRTD, unhex("91eb2b44d141d4ece09f0c75c2c53d247a3c68edd7fafe8a3520c942a604a407de03ae6dc5f87f27428b2538873118b7"))
				eq(t, "rtmr0", c.RTMR0, unhex("44c0197b39157fdd7a4dcc44767f9d6b0bb3977c7a8e347b8492f827fe9d9e5c48aca29b220b80b6a540cf994b9bc9c0"))
				eq(t, "mr_seam", c.MRSEAM, unhex("5b38e33a6487958b72c3c12a938eaa5e3fd4510c51aeeab58c7d5ecee41d7c436489d6c8e4f92f160b7cad34207b00c1"))
				eq(t, "report_data", c.ReportData, unhex("9a9d48e7f6799642d3d1b34e1e5e1742d4bb02dd6ddd551862c1211d35c304f9eca3efdbb481601c163cf52493d6e44aed55d51ec39b7e518fadb92c2b523f20"))
				eq(t, "fmspc", c.FMSPC, unhex("b0c06f000000"))
				if c.Debug || c.QESVN != 6 {
					t.Errorf("debug %v qe_svn %d", c.Debug, c.QESVN)
				}
				// The PCK certificate is the Platform CA's: SGX type and configuration (openssl asn1parse).
				eq(t, "platform_instance_id", c.PlatformInstanceID, unhex("07828474603e7019dc930775ffe8cdd2"))
				if c.SGXType != "scalable" || c.SMTEnabled == nil || !*c.SMTEnabled || !*c.DynamicPlatform || !*c.CachedKeys {
					t.Errorf("sgx_type %q, configuration %v %v %v", c.SGXType, c.DynamicPlatform, c.CachedKeys, c.SMTEnabled)
				}
				if len(c.Warnings) != 1 || !strings.Contains(c.Warnings[0], "70 bytes") {
					t.Errorf("warnings %q, want one about the 70 padding bytes", c.Warnings)
				}
			},
		},
		{
			name: "dcap-qvl TDX v4 at dcap-qvl's own test time",
			raw:  tdxQuote,
			opts: Options{Time: time.Unix(1752919234, 0), Collateral: bundleVector(t, "tdx/dcap-qvl_tdx_quote_v4_collateral.json")},
			check: func(t *testing.T, c *Claims) {
				checkCommon(t, c, &Claims{TEE: TEETDX, TCBStatus: StatusUpToDate, AdvisoryIDs: []string{}})
			},
		},
		{
			name:       "go-tdx-guest SPR quote: no TCB level matches",
			raw:        sprQuote,
			opts:       Options{Time: goTDXGuestTime, Collateral: goTDXGuestBundle(t)},
			wantReason: TCBNotSupported,
		},
		{
			name:       "go-tdx-guest SPR quote in 2053: chain expired",
			raw:        sprQuote,
			opts:       Options{Time: time.Date(2053, time.July, 1, 1, 0, 0, 0, time.UTC), Collateral: goTDXGuestBundle(t)},
			wantReason: Expired,
		},
		{
			name: "go-tdx-guest SPR quote without collateral",
			raw:  sprQuote,
			opts: Options{Time: goTDXGuestTime, SkipTCBEvaluation: true},
			check: func(t *testing.T, c *Claims) {
				checkCommon(t, c, &Claims{TEE: TEETDX, TCBStatus: StatusNotEvaluated, AdvisoryIDs: []string{}})
				eq(t, "mrtd", c.MRTD[:4], unhex("6363b804"))
				eq(t, "fmspc", c.FMSPC, unhex("50806f000000"))
				eq(t, "report_data", c.ReportData, unhex("6c62dec1b8191749a31dab490be532a35944dea47caef1f980863993d9899545eb7406a38d1eed313b987a467dacead6f0c87a6d766c66f6f29f8acb281f1113"))
			},
		},
		{
			name:       "SGX quote without collateral and without opting out",
			raw:        sgxQuote,
			opts:       Options{Time: dcapQVLTime},
			wantReason: MissingCollateral,
		},
		{
			name:       "TDX quote with SGX collateral",
			raw:        tdxQuote,
			opts:       Options{Time: dcapQVLTime, Collateral: bundleVector(t, "sgx/dcap-qvl_sgx_quote_v3_collateral.json")},
			wantReason: CollateralMismatch,
		},
		{
			name:       "SGX quote with TDX collateral",
			raw:        sgxQuote,
			opts:       Options{Time: dcapQVLTime, Collateral: bundleVector(t, "tdx/dcap-qvl_tdx_quote_v4_collateral.json")},
			wantReason: CollateralMismatch,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := NewVerifier().Verify(context.Background(), tc.raw, tc.opts)
			if tc.wantReason != 0 {
				if err == nil {
					t.Fatalf("verified; want failure with reason %v", tc.wantReason)
				}
				if r, _ := ReasonOf(err); r != tc.wantReason {
					t.Fatalf("reason %v (%v); want %v", r, err, tc.wantReason)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, c)
		})
	}
}

func checkCommon(t *testing.T, got, want *Claims) {
	t.Helper()
	if got.TEE != want.TEE || got.TCBStatus != want.TCBStatus || strings.Join(got.AdvisoryIDs, ",") != strings.Join(want.AdvisoryIDs, ",") {
		t.Errorf("tee %q status %q advisories %q; want %q %q %q", got.TEE, got.TCBStatus, got.AdvisoryIDs, want.TEE, want.TCBStatus, want.AdvisoryIDs)
	}
	if got.AdvisoryIDs == nil {
		t.Error("advisory_ids is nil; it must print as []")
	}
}

func eq(t *testing.T, what string, got, want HexBytes) {
	t.Helper()
	if got.String() != want.String() {
		t.Errorf("%s = %s; want %s", what, got, want)
	}
}

// The real SGX vector's enclave predates Key Separation and Sharing: its
// report has no KSS attribute and all-zero KSS fields, so the claims carry
// no SGXKSSClaims and the JSON has none of their names (MAA likewise issues
// x-ms-sgx-config-id only for KSS enclaves).
func TestSGXVectorHasNoKSSClaims(t *testing.T) {
	raw := readVector(t, "sgx/dcap-qvl_sgx_quote_v3.bin")
	q, err := sgx.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	r := q.Report
	if r.KSS() || r.ConfigID != ([64]byte{}) || r.ConfigSVN != 0 || r.ISVExtProdID != ([16]byte{}) || r.ISVFamilyID != ([16]byte{}) {
		t.Fatalf("vector report: kss %v config_id %x config_svn %d isv_ext_prod_id %x isv_family_id %x; want all zero",
			r.KSS(), r.ConfigID, r.ConfigSVN, r.ISVExtProdID, r.ISVFamilyID)
	}
	c, err := Verify(context.Background(), raw, Options{Time: dcapQVLTime, Collateral: bundleVector(t, "sgx/dcap-qvl_sgx_quote_v3_collateral.json")})
	if err != nil {
		t.Fatal(err)
	}
	if c.SGXKSSClaims != nil {
		t.Errorf("KSS claims %+v for an enclave without KSS", c.SGXKSSClaims)
	}
	out, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"config_id", "config_svn", "isv_ext_prod_id", "isv_family_id"} {
		if strings.Contains(string(out), `"`+name+`"`) {
			t.Errorf("JSON has %s: %s", name, out)
		}
	}
}

// TestExpiryNamesWhat checks that a time outside a window names the item.
func TestExpiryNamesWhat(t *testing.T) {
	raw := readVector(t, "sgx/dcap-qvl_sgx_quote_v3.bin")
	col := bundleVector(t, "sgx/dcap-qvl_sgx_quote_v3_collateral.json")
	for _, tc := range []struct {
		at   time.Time
		want string
	}{
		{time.Date(2025, 6, 19, 10, 30, 0, 0, time.UTC), "TCB info"},           // before the TCB info issueDate
		{time.Date(2025, 7, 19, 10, 5, 0, 0, time.UTC), "QE identity"},         // after the QE identity's nextUpdate
		{time.Date(2031, 1, 1, 0, 0, 0, 0, time.UTC), "PCK certificate chain"}, // after the PCK leaf's notAfter
		{time.Date(2017, 1, 1, 0, 0, 0, 0, time.UTC), "PCK certificate chain"}, // before anything was issued
	} {
		_, err := NewVerifier().Verify(context.Background(), raw, Options{Time: tc.at, Collateral: col})
		if r, _ := ReasonOf(err); r != Expired || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("at %s: %v; want Expired naming %q", tc.at, err, tc.want)
		}
	}
}

func TestZeroTimeIsAnError(t *testing.T) {
	raw := readVector(t, "sgx/dcap-qvl_sgx_quote_v3.bin")
	if _, err := Verify(context.Background(), raw, Options{SkipTCBEvaluation: true}); err == nil {
		t.Fatal("verified with a zero time")
	}
}

func TestUnrecognisedEvidence(t *testing.T) {
	for _, raw := range [][]byte{nil, []byte("hello"), make([]byte, 5000)} {
		_, err := Verify(context.Background(), raw, Options{Time: dcapQVLTime})
		if r, _ := ReasonOf(err); r != Malformed || !strings.Contains(err.Error(), "tried SGX quote") {
			t.Errorf("%d bytes: %v; want Malformed saying what was tried", len(raw), err)
		}
	}
}
