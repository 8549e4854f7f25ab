package maa

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/cloister-dev/cloister/evidence"
	"github.com/cloister-dev/cloister/evidence/pcs"
)

// The shared vectors (repository testdata/README.md), verified at a time
// inside their validity, give real claims to run MAA's samples against.
const (
	sgxQuote      = "../../testdata/sgx/dcap-qvl_sgx_quote_v3.bin"
	sgxCollateral = "../../testdata/sgx/dcap-qvl_sgx_quote_v3_collateral.json"
	tdxQuote      = "../../testdata/tdx/dcap-qvl_tdx_quote_v4.bin"
	tdxCollateral = "../../testdata/tdx/dcap-qvl_tdx_quote_v4_collateral.json"
	snpReport     = "../../testdata/snp/attestation.bin"
	snpVCEK       = "../../testdata/snp/vcek.testcer"

	sgxMRENCLAVE = "33d8736db756ed4997e04ba358d27833188f1932ff7b1d156904d3f560452fbb"
	sgxMRSIGNER  = "815f42f11cf64430c30bab7816ba596a1da0130c3b028b673133a66cf9a3e0e6"
)

var vectorTime = time.Date(2025, 7, 1, 0, 0, 0, 0, time.UTC)

func readFile(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func verifyVector(t *testing.T, quote, collateral, vcek string) *evidence.Claims {
	t.Helper()
	opts := evidence.Options{Time: vectorTime}
	if collateral != "" {
		b, err := pcs.ParseBundle(readFile(t, collateral))
		if err != nil {
			t.Fatal(err)
		}
		opts.Collateral = b
	}
	if vcek != "" {
		opts.VCEK = readFile(t, vcek)
	}
	c, err := evidence.Verify(context.Background(), readFile(t, quote), opts)
	if err != nil {
		t.Fatalf("verify %s: %v", quote, err)
	}
	return c
}

func sgxClaims(t *testing.T) []Claim {
	return ClaimsFromEvidence(verifyVector(t, sgxQuote, sgxCollateral, ""))
}

// withClaim returns claims with the value of every claim of type typ
// replaced (the real vector is not debuggable, so the debuggable cases
// override it).
func withClaim(claims []Claim, typ string, v any) []Claim {
	out := append([]Claim(nil), claims...)
	for i := range out {
		if out[i].Type == typ {
			out[i].Value = v
		}
	}
	return out
}

func parseFile(t *testing.T, name string) *Policy {
	t.Helper()
	p, err := Parse(string(readFile(t, filepath.Join("testdata", name))))
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return p
}

func issuedMap(cs []Claim) map[string]any {
	m := map[string]any{}
	for _, c := range cs {
		m[c.Type] = c.Value
	}
	return m
}

// TestSamplesSGX runs MAA's documented SGX policies (policy-examples.md,
// claim-sets.md) over the claims of the real SGX vector.
func TestSamplesSGX(t *testing.T) {
	real := sgxClaims(t)
	debuggable := withClaim(withClaim(real, "x-ms-sgx-is-debuggable", true), "$is-debuggable", true)
	tests := []struct {
		file   string
		claims []Claim
		permit bool
		issued map[string]any
	}{
		// "Sample custom policy": not debuggable, product 0, svn ≥ 0, the
		// vector's signer → permitted, mrsigner issued under a custom name.
		{"sgx_custom.policy", real, true, map[string]any{"custom-mrsigner": sgxMRSIGNER}},
		{"sgx_custom.policy", debuggable, false, nil},
		{"sgx_custom.policy", withClaim(real, "x-ms-sgx-mrsigner", strings.Repeat("00", 32)), false, nil},
		{"sgx_custom.policy", withClaim(real, "x-ms-sgx-svn", int64(-1)), false, nil},
		// Default policy: permits everything and issues the identity.
		{"sgx_default_v1_1.policy", real, true, map[string]any{
			"is-debuggable": false, "sgx-mrsigner": sgxMRSIGNER, "sgx-mrenclave": sgxMRENCLAVE,
			"product-id": int64(0), "svn": int64(0), "tee": "sgx",
		}},
		// Legacy default (the unsigned JWT sample) reads the $ names.
		{"sgx_default_v1_0_unsigned_jwt.policy", real, true, map[string]any{
			"is-debuggable": false, "sgx-mrsigner": sgxMRSIGNER, "sgx-mrenclave": sgxMRENCLAVE,
			"product-id": int64(0), "svn": int64(0), "tee": "sgx",
		}},
		// The signed JWT sample denies debuggable enclaves, else permits.
		{"sgx_signed_jwt.policy", real, true, map[string]any{
			"NotDebuggable": false, "is-debuggable": false, "sgx-mrsigner": sgxMRSIGNER,
			"sgx-mrenclave": sgxMRENCLAVE, "product-id": int64(0), "svn": int64(0), "tee": "sgx",
		}},
		{"sgx_signed_jwt.policy", debuggable, false, nil},
		// Multiple enclaves: either signer, debuggable required (as written).
		{"sgx_multiple_enclaves.policy", withClaim(debuggable, "x-ms-sgx-mrsigner", "mrsigner2"), true, map[string]any{}},
		{"sgx_multiple_enclaves.policy", withClaim(debuggable, "x-ms-sgx-mrsigner", "mrsigner3"), false, nil},
		{"sgx_multiple_enclaves.policy", withClaim(real, "x-ms-sgx-mrsigner", "mrsigner1"), false, nil},
		// Key rotation: both signers accepted, debug refused.
		{"signer_rotation_during.policy", withClaim(real, "x-ms-sgx-mrsigner", "mrsigner1"), true, map[string]any{}},
		{"signer_rotation_during.policy", withClaim(real, "x-ms-sgx-mrsigner", "mrsigner2"), true, map[string]any{}},
		{"signer_rotation_during.policy", withClaim(debuggable, "x-ms-sgx-mrsigner", "mrsigner2"), false, nil},
	}
	for _, tc := range tests {
		p := parseFile(t, tc.file)
		res, err := p.Evaluate(tc.claims)
		if err != nil {
			t.Fatalf("%s: %v", tc.file, err)
		}
		if res.Permitted != tc.permit {
			t.Errorf("%s: permitted = %v, want %v (%s)", tc.file, res.Permitted, tc.permit, res.Reason)
			continue
		}
		if tc.permit && !reflect.DeepEqual(issuedMap(res.Issued), tc.issued) {
			t.Errorf("%s: issued %v, want %v", tc.file, issuedMap(res.Issued), tc.issued)
		}
		if !tc.permit && len(res.Issued) != 0 {
			t.Errorf("%s: denied but issued %v", tc.file, res.Issued)
		}
	}
}

// TestSampleDefaultConfiguration: the default SGX policy's configuration
// rule is accepted, type-checked and reported.
func TestSampleDefaultConfiguration(t *testing.T) {
	p := parseFile(t, "sgx_default_v1_1.policy")
	want := []Claim{{Type: "x-ms-sgx-tcbidentifier", Value: "azuredefault", Issuer: IssuerPolicy}}
	if got := p.Configuration(); !reflect.DeepEqual(got, want) || p.Version() != "1.1" {
		t.Errorf("configuration %v version %s, want %v 1.1", got, p.Version(), want)
	}
}

// TestSampleUnsignedJWT: the documented unsigned policy JWT carries the
// policy text as base64url in its AttestationPolicy claim (the shape
// docs/maa-contract.md describes), and that text is our testdata file.
func TestSampleUnsignedJWT(t *testing.T) {
	parts := strings.Split(strings.TrimSpace(string(readFile(t, "testdata/sgx_default_v1_0_unsigned.jwt"))), ".")
	if len(parts) != 3 || parts[2] != "" {
		t.Fatalf("want header.payload. (empty signature), got %d parts", len(parts))
	}
	hdr, err := base64.RawURLEncoding.DecodeString(parts[0])
	if err != nil || string(hdr) != `{"alg":"none"}` {
		t.Fatalf("header %q, %v", hdr, err)
	}
	body, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var payload struct{ AttestationPolicy string }
	if err := json.Unmarshal(body, &payload); err != nil {
		t.Fatal(err)
	}
	text, err := base64.RawURLEncoding.DecodeString(payload.AttestationPolicy)
	if err != nil {
		t.Fatal(err)
	}
	if want := readFile(t, "testdata/sgx_default_v1_0_unsigned_jwt.policy"); string(text) != string(want) {
		t.Errorf("policy in JWT:\n%s\nwant:\n%s", text, want)
	}
}

// TestSamplesTPM: MAA's TPM samples parse and evaluate as documented,
// although Cloister produces no TPM claims; the claims here are made up.
func TestSamplesTPM(t *testing.T) {
	good := []Claim{
		{Type: "aikValidated", Value: true, Issuer: IssuerService},
		{Type: "secureBootEnabled", Value: true, Issuer: IssuerService},
		{Type: "bootDebuggingDisabled", Value: true, Issuer: IssuerService},
		{Type: "notSafeMode", Value: true, Issuer: IssuerService},
	}
	noAIK := withClaim(good, "aikValidated", false)
	for _, tc := range []struct {
		file   string
		claims []Claim
		issued map[string]any
	}{
		{"tpm_v1_0.policy", good, map[string]any{"PlatformAttested": true}},
		{"tpm_v1_0.policy", noAIK, map[string]any{}},
		{"tpm_v1_1.policy", good, map[string]any{"PlatformAttested": true}},
		{"tpm_v1_1.policy", noAIK, map[string]any{"PlatformAttested": false}},
	} {
		res, err := parseFile(t, tc.file).Evaluate(tc.claims)
		if err != nil || !res.Permitted {
			t.Fatalf("%s: %v %+v", tc.file, err, res)
		}
		if got := issuedMap(res.Issued); !reflect.DeepEqual(got, tc.issued) {
			t.Errorf("%s: issued %v, want %v", tc.file, got, tc.issued)
		}
	}
	p := parseFile(t, "tpm_v1_1.policy")
	want := []Claim{
		{Type: "required_pcr_mask", Value: int64(15), Issuer: IssuerPolicy},
		{Type: "require_valid_aik_cert", Value: false, Issuer: IssuerPolicy},
	}
	if got := p.Configuration(); !reflect.DeepEqual(got, want) {
		t.Errorf("configuration %v, want %v", got, want)
	}
}

// TestSampleJmesPathRefused: the version 1.2 sample needs JmesPath, which
// we refuse by name at its position rather than mis-evaluating it.
func TestSampleJmesPathRefused(t *testing.T) {
	_, err := Parse(string(readFile(t, "testdata/tpm_v1_2_jmespath.policy")))
	var se *SyntaxError
	if !errors.As(err, &se) || se.Pos != (Pos{11, 96}) || !strings.Contains(se.Msg, "JmesPath is not supported") {
		t.Fatalf("got %v, want a SyntaxError at 11:96 naming JmesPath", err)
	}
}

// TestSamplesAuthoring: the samples of "How to author an attestation
// policy", including its lenient syntax (one '=' in conditions, no ';'
// after rules).
func TestSamplesAuthoring(t *testing.T) {
	sb := Claim{Type: "secureBootEnabled", Value: true, Issuer: IssuerService}
	nsm := Claim{Type: "notSafeMode", Value: true, Issuer: IssuerService}

	res, err := parseFile(t, "author_sample.policy").Evaluate([]Claim{sb, nsm})
	if err != nil || !res.Permitted || !reflect.DeepEqual(res.Issued, []Claim{sb, nsm}) {
		t.Errorf("author_sample: %v %+v", err, res)
	}
	res, err = parseFile(t, "author_sample.policy").Evaluate([]Claim{nsm})
	if err != nil || res.Permitted {
		t.Errorf("author_sample without secureBootEnabled: %v %+v", err, res)
	}

	res, err = parseFile(t, "author_deny.policy").Evaluate([]Claim{sb, nsm})
	if err != nil || res.Permitted || !strings.Contains(res.Reason, "deny() rule at line 4") {
		t.Errorf("author_deny: %v %+v", err, res)
	}

	// The guide's expected output: SecurityLevelValue=100, an Integer,
	// issuer AttestationPolicy.
	res, err = parseFile(t, "author_issue.policy").Evaluate([]Claim{sb})
	want := []Claim{{Type: "SecurityLevelValue", Value: int64(100), Issuer: IssuerPolicy}}
	if err != nil || !res.Permitted || !reflect.DeepEqual(res.Issued, want) || valueTypeOf(res.Issued[0].Value) != "Integer" {
		t.Errorf("author_issue: %v %+v", err, res)
	}
	// secureBootEnabled from the client (CustomClaim) does not count.
	res, err = parseFile(t, "author_issue.policy").Evaluate([]Claim{{Type: "secureBootEnabled", Value: true, Issuer: "CustomClaim"}})
	if err != nil || res.Permitted {
		t.Errorf("author_issue with a CustomClaim: %v %+v", err, res)
	}
}

// TestTypographicQuotes: the older policy-examples.md page renders the
// default SGX policy with typographic quotes; that text must fail with a
// hint, not parse into something else.
func TestTypographicQuotes(t *testing.T) {
	_, err := Parse("Version= 1.0;\nauthorizationrules\n{\n\tc:[type==”$is-debuggable”] => permit();\n};")
	var se *SyntaxError
	if !errors.As(err, &se) || se.Pos != (Pos{4, 11}) || !strings.Contains(se.Msg, "typographic quote") {
		t.Fatalf("got %v", err)
	}
}
