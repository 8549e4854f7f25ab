package attest

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"
)

// exactPayload decodes a token's payload with numbers as json.Number, the
// way a relying party that cares about exact integers reads it.
func exactPayload(t *testing.T, out map[string]any) map[string]any {
	t.Helper()
	tok, _ := out["token"].(string)
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("token %q is not a compact JWS", tok)
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var m map[string]any
	if err := d.Decode(&m); err != nil {
		t.Fatal(err)
	}
	return m
}

// The token's x-ms-runtime and x-ms-inittime are the client's JSON, whose
// SHA-256 the evidence binds: their numbers must reach the token exactly.
// A uint64 counter or nonce above 2^53 used to pass through float64 and
// come out rounded (18446744073709551615 as 18446744073709552000), so the
// token asserted a value the TEE never bound.
func TestRuntimeAndInitTimeNumbersExact(t *testing.T) {
	f := getFixture(t)
	s := newService(t, f, "")
	defer s.Close()

	const big = "18446744073709551615" // 2^64-1
	const odd = "9007199254740993"     // 2^53+1: the first integer a float64 loses
	runtime := []byte(`{"counter":` + big + `,"n":` + odd + `,"neg":-9223372036854775807,"frac":0.1}`)
	initJSON := []byte(`{"epoch":` + odd + `}`)
	var id [64]byte
	sum := sha256.Sum256(initJSON)
	copy(id[:], sum[:])
	q := sgxKSSQuote(t, f, id, runtime)

	code, out := do(t, s, "POST", "/attest/SgxEnclave"+av, initTimeBody("quote", q, runtime, initJSON, "JSON"))
	if code != 200 {
		t.Fatalf("%d %v", code, out)
	}
	c := exactPayload(t, out)
	rt, _ := c["x-ms-runtime"].(map[string]any)
	for k, want := range map[string]string{"counter": big, "n": odd, "neg": "-9223372036854775807", "frac": "0.1"} {
		if got, _ := rt[k].(json.Number); string(got) != want {
			t.Errorf("x-ms-runtime.%s = %v, the client sent %s", k, rt[k], want)
		}
	}
	it, _ := c["x-ms-inittime"].(map[string]any)
	if got, _ := it["epoch"].(json.Number); string(got) != odd {
		t.Errorf("x-ms-inittime.epoch = %v, the client sent %s", it["epoch"], odd)
	}
}

// Policies on the real Milan report (reported_tcb 0x4405000000000002) see
// its SVNs as the report holds them, in both languages, and numbers a
// policy issues reach the token exactly, above 2^53 too. The token carries
// MAA's shape for the SNP TCB, one small integer per SVN
// (x-ms-sevsnpvm-bootloader-svn ...), never the packed uint64.
func TestSNPPolicyNumbersExact(t *testing.T) {
	f := getFixture(t)
	v := loadSNPVector(t)
	const tcb = "4901323769462652930" // 0x4405000000000002
	for _, tc := range []struct {
		name, policy string
		permit       bool
	}{
		{"rego", "package cloister\nallow if {\n\tinput[\"x-ms-sevsnpvm-bootloader-svn\"] == 2\n\tinput[\"x-ms-sevsnpvm-tee-svn\"] == 0\n\tinput[\"x-ms-sevsnpvm-snpfw-svn\"] == 5\n\tinput[\"x-ms-sevsnpvm-microcode-svn\"] == 68\n}\nclaims := {\"tcb\": " + tcb + "} if allow\n", true},
		{"rego, bootloader 3", "package cloister\nallow if input[\"x-ms-sevsnpvm-bootloader-svn\"] >= 3\n", false},
		{"maa", "version=1.0;\nauthorizationrules { [type==\"x-ms-sevsnpvm-bootloader-svn\", value==2] && [type==\"x-ms-sevsnpvm-microcode-svn\", value==68] => permit(); };\nissuancerules { => issue(type=\"tcb\", value=" + tcb + "); };\n", true},
		{"maa, bootloader 3", "version=1.0;\nauthorizationrules { [type==\"x-ms-sevsnpvm-bootloader-svn\", value>=3] => permit(); };\n", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newService(t, f, "")
			defer s.Close()
			if code, out := do(t, s, "PUT", "/policies/SevSnpVm"+av, UnsignedPolicy(tc.policy)); code != 200 {
				t.Fatalf("PUT: %d %v", code, out)
			}
			code, out := do(t, s, "POST", "/attest/SevSnpVm"+av, snpBody(maaSNPDoc(v.report, v.chainPEM(), ""), nil))
			if !tc.permit {
				if code != 400 || errCode(out) != "PolicyEvaluationError" {
					t.Fatalf("a policy wanting bootloader SVN 3 of a report with 2: %d %v", code, out)
				}
				return
			}
			if code != 200 {
				t.Fatalf("%d %v", code, out)
			}
			c := exactPayload(t, out)
			if got, _ := c["tcb"].(json.Number); string(got) != tcb {
				t.Errorf("issued tcb = %v, the policy issued %s", c["tcb"], tcb)
			}
			for k, want := range map[string]string{"x-ms-sevsnpvm-bootloader-svn": "2", "x-ms-sevsnpvm-tee-svn": "0",
				"x-ms-sevsnpvm-snpfw-svn": "5", "x-ms-sevsnpvm-microcode-svn": "68"} {
				if got, _ := c[k].(json.Number); string(got) != want {
					t.Errorf("%s = %v, want %s", k, c[k], want)
				}
			}
		})
	}
}
