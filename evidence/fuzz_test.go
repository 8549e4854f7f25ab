package evidence

import (
	"context"
	"testing"

	"github.com/cloister-dev/cloister/evidence/sgx"
	"github.com/cloister-dev/cloister/evidence/tdx"
	"github.com/cloister-dev/cloister/evidence/tsmreport"
)

func signedRegion(raw []byte) []byte {
	switch Detect(raw) {
	case KindSGXQuote:
		return sgx.SignedRegion(raw)
	case KindTDXQuote:
		return tdx.SignedRegion(raw)
	case KindSNPReport:
		return raw[:0x2A0] // abi.SignedComponent
	case KindTSMReport:
		// The envelope is not signed: what counts is the report inside.
		if r, err := tsmreport.Parse(raw); err == nil {
			return signedRegion(r.OutBlob)
		}
	}
	return raw
}

// FuzzVerify runs the whole verifier, with collateral, on arbitrary input
// seeded with every real quote. Nothing may panic, and nothing but the
// signed regions of the real quotes may verify.
func FuzzVerify(f *testing.F) {
	sgxCol := bundleVector(f, "sgx/dcap-qvl_sgx_quote_v3_collateral.json")
	tdxCol := bundleVector(f, "tdx/dcap-qvl_tdx_quote_v4_collateral.json")
	seeds := map[string]bool{}
	for _, p := range []string{"sgx/dcap-qvl_sgx_quote_v3.bin", "tdx/dcap-qvl_tdx_quote_v4.bin", "tdx/tdx_prod_quote_SPR_E4.dat", "snp/attestation.bin", "snp/veraison-sevsnp-tsm-report.json"} {
		raw := readVector(f, p)
		seeds[string(signedRegion(raw))] = true
		f.Add(raw, false)
		f.Add(raw, true)
	}
	v := NewVerifier()
	f.Fuzz(func(t *testing.T, raw []byte, tdxCollateral bool) {
		opts := Options{Time: dcapQVLTime, Collateral: sgxCol}
		if tdxCollateral {
			opts.Collateral = tdxCol
		}
		c, err := v.Verify(context.Background(), raw, opts)
		if err == nil && c == nil {
			t.Fatal("nil claims without an error")
		}
		if err == nil && !seeds[string(signedRegion(raw))] {
			t.Fatalf("a quote with a changed signed region verified: %x", raw)
		}
	})
}
