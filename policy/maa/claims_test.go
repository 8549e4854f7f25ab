package maa

import (
	"testing"

	"github.com/cloister-dev/cloister/evidence"
)

func claimValue(t *testing.T, cs []Claim, typ string) any {
	t.Helper()
	var found []any
	for _, c := range cs {
		if c.Type == typ {
			if c.Issuer != IssuerService {
				t.Errorf("%s: issuer %q", typ, c.Issuer)
			}
			found = append(found, c.Value)
		}
	}
	if len(found) != 1 {
		t.Fatalf("%s: %d claims, want 1", typ, len(found))
	}
	return found[0]
}

// TestClaimsFromEvidence maps the real SGX, TDX and SEV-SNP vectors and
// checks the names and types MAA documents (docs/maa-contract.md).
func TestClaimsFromEvidence(t *testing.T) {
	type want map[string]any
	tests := []struct {
		name   string
		claims *evidence.Claims
		want   want
		absent []string
	}{
		{"sgx", verifyVector(t, sgxQuote, sgxCollateral, ""), want{
			"x-ms-attestation-type":  "sgx",
			"x-ms-ver":               "1.0",
			"tcb_status":             "ConfigurationAndSWHardeningNeeded",
			"x-ms-sgx-is-debuggable": false,
			"x-ms-sgx-mrenclave":     sgxMRENCLAVE,
			"x-ms-sgx-mrsigner":      sgxMRSIGNER,
			"x-ms-sgx-product-id":    int64(0),
			"x-ms-sgx-svn":           int64(0),
			"x-ms-sgx-report-data":   "48656c6c6f2c20776f726c6421" + zeros(51),
			"$is-debuggable":         false,
			"$sgx-mrenclave":         sgxMRENCLAVE,
			"$sgx-mrsigner":          sgxMRSIGNER,
			"$product-id":            int64(0),
			"$svn":                   int64(0),
			"$tee":                   "sgx",
			// The vector's enclave has no KSS attribute and zero KSS fields,
			// so, as in MAA, no config-id claims.
		}, []string{"tdx_mrtd", "x-ms-sevsnpvm-launchmeasurement", "x-ms-sgx-config-id", "x-ms-sgx-config-svn",
			"x-ms-sgx-isv-extended-product-id", "x-ms-sgx-isv-family-id"}},
		{"tdx", verifyVector(t, tdxQuote, tdxCollateral, ""), want{
			"x-ms-attestation-type":             "tdxvm",
			"tcb_status":                        "UpToDate",
			"attester_tcb_status":               "UpToDate",
			"tdx_mrtd":                          "91eb2b44d141d4ece09f0c75c2c53d247a3c68edd7fafe8a3520c942a604a407de03ae6dc5f87f27428b2538873118b7",
			"tdx_rtmr3":                         zeros(48),
			"tdx_mrseam":                        "5b38e33a6487958b72c3c12a938eaa5e3fd4510c51aeeab58c7d5ecee41d7c436489d6c8e4f92f160b7cad34207b00c1",
			"tdx_mrconfigid":                    zeros(48),
			"tdx_td_attributes":                 "0000001000000000",
			"tdx_xfam":                          "e702060000000000",
			"tdx_tee_tcb_svn":                   "06010300000000000000000000000000",
			"tdx_td_attributes_debug":           false,
			"tdx_td_attributes_septve_disable":  true, // byte 3 = 0x10: bit 28
			"tdx_td_attributes_protection_keys": false,
			"tdx_td_attributes_key_locker":      false,
			"tdx_td_attributes_perfmon":         false,
		}, []string{"x-ms-sgx-mrenclave", "$tee"}},
		{"snp", verifyVector(t, snpReport, "", snpVCEK), want{
			"x-ms-attestation-type": "sevsnpvm",
			"tcb_status":            "NotEvaluated",
		}, []string{"x-ms-sgx-mrenclave", "tdx_mrtd"}},
	}
	for _, tc := range tests {
		cs := ClaimsFromEvidence(tc.claims)
		for typ, v := range tc.want {
			if got := claimValue(t, cs, typ); got != v {
				t.Errorf("%s: %s = %#v, want %#v", tc.name, typ, got, v)
			}
		}
		for _, typ := range tc.absent {
			for _, c := range cs {
				if c.Type == typ {
					t.Errorf("%s: unexpected claim %s", tc.name, typ)
				}
			}
		}
	}

	// SNP fields come straight from the verified report.
	snp := verifyVector(t, snpReport, "", snpVCEK)
	cs := ClaimsFromEvidence(snp)
	s := snp.SNPClaims
	for typ, v := range map[string]any{
		// The test guest runs with the debug bit (policy bit 19) set.
		"x-ms-sevsnpvm-is-debuggable":     s.Policy&(1<<19) != 0,
		"x-ms-sevsnpvm-launchmeasurement": s.Measurement.String(),
		"x-ms-sevsnpvm-hostdata":          s.HostData.String(),
		"x-ms-sevsnpvm-idkeydigest":       s.IDKeyDigest.String(),
		"x-ms-sevsnpvm-authorkeydigest":   s.AuthorKeyDigest.String(),
		"x-ms-sevsnpvm-reportid":          s.ReportID.String(),
		"x-ms-sevsnpvm-reportdata":        snp.ReportData.String(),
		"x-ms-sevsnpvm-vmpl":              int64(s.VMPL),
		"x-ms-sevsnpvm-guestsvn":          int64(s.GuestSVN),
		"x-ms-sevsnpvm-migration-allowed": s.Policy&(1<<18) != 0,
		"x-ms-sevsnpvm-smt-allowed":       s.Policy&(1<<16) != 0,
		"x-ms-sevsnpvm-bootloader-svn":    int64(s.ReportedTCB & 0xff),
		"x-ms-sevsnpvm-microcode-svn":     int64(s.ReportedTCB >> 56),
	} {
		if got := claimValue(t, cs, typ); got != v {
			t.Errorf("snp: %s = %#v, want %#v", typ, got, v)
		}
	}

	// A KSS enclave gets MAA's four KSS claims, hex and integer as in MAA's
	// sample SGX token (docs/maa-contract.md §2).
	cfg := make([]byte, 64)
	for i := range cfg {
		cfg[i] = byte(i)
	}
	kss := &evidence.Claims{TEE: evidence.TEESGX, SGXClaims: &evidence.SGXClaims{SGXKSSClaims: &evidence.SGXKSSClaims{
		ConfigID: cfg, ConfigSVN: 3451,
		ISVExtProdID: evidence.HexBytes{0x87, 0x65, 0x43, 0x21, 15: 0x56}, ISVFamilyID: evidence.HexBytes{0x12, 0x34, 15: 0xab},
	}}}
	kcs := ClaimsFromEvidence(kss)
	for typ, v := range map[string]any{
		"x-ms-sgx-config-id":               evidence.HexBytes(cfg).String(),
		"x-ms-sgx-config-svn":              int64(3451),
		"x-ms-sgx-isv-extended-product-id": "87654321" + zeros(11) + "56",
		"x-ms-sgx-isv-family-id":           "1234" + zeros(13) + "ab",
	} {
		if got := claimValue(t, kcs, typ); got != v {
			t.Errorf("kss: %s = %#v, want %#v", typ, got, v)
		}
	}

	if ClaimsFromEvidence(nil) != nil {
		t.Error("nil claims mapped to something")
	}
	sim := &evidence.Claims{TEE: evidence.TEESimSGX, SGXClaims: &evidence.SGXClaims{}}
	if got := claimValue(t, ClaimsFromEvidence(sim), "x-ms-attestation-type"); got != "sim-sgx" {
		t.Errorf("sim-sgx attestation type %v: simulator evidence must not pass as sgx", got)
	}
}

func zeros(n int) string {
	b := make([]byte, 2*n)
	for i := range b {
		b[i] = '0'
	}
	return string(b)
}
