package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const maaSamples = "../../policy/maa/testdata/"

func writeTemp(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func decodeVerdict(t *testing.T, s string) map[string]any {
	t.Helper()
	var v map[string]any
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		t.Fatalf("verdict is not JSON: %v\n%s", err, s)
	}
	return v
}

// TestPolicyTestMAAEvidence: 'verify evidence' output goes straight into
// 'policy test', mapped to MAA's names, and MAA's custom SGX sample permits
// the real quote.
func TestPolicyTestMAAEvidence(t *testing.T) {
	r := runCLI(t, "verify", "evidence", sgxQuote, "--collateral", sgxCollateral)
	if r.code != 0 {
		t.Fatal(r)
	}
	claims := writeTemp(t, "claims.json", r.stdout)

	r = runCLI(t, "policy", "test", maaSamples+"sgx_custom.policy", "--claims", claims)
	if r.code != 0 || r.stderr != "" {
		t.Fatal(r)
	}
	v := decodeVerdict(t, r.stdout)
	issued, _ := v["issued"].([]any)
	if v["language"] != "maa" || v["permitted"] != true || len(issued) != 1 {
		t.Fatalf("verdict %v", v)
	}
	if c := issued[0].(map[string]any); c["type"] != "custom-mrsigner" || c["value"] != sgxMRSIGNER || c["issuer"] != "AttestationPolicy" {
		t.Errorf("issued %v", c)
	}

	// The default policy issues the identity, integers as JSON numbers.
	r = runCLI(t, "policy", "test", maaSamples+"sgx_default_v1_1.policy", "--claims", claims)
	if r.code != 0 || !strings.Contains(r.stdout, `"type": "product-id",`+"\n      \"value\": 0,") {
		t.Fatal(r)
	}
}

// TestPolicyTestDenied: exit 1, nothing on stdout, the verdict and reason
// on stderr.
func TestPolicyTestDenied(t *testing.T) {
	claims := writeTemp(t, "c.json", `{"$is-debuggable": true, "$tee": "sgx"}`)
	r := runCLI(t, "policy", "test", maaSamples+"sgx_signed_jwt.policy", "--claims", claims)
	if r.code != 1 || r.stdout != "" || !strings.Contains(r.stderr, `"permitted": false`) ||
		!strings.Contains(r.stderr, "cloister policy test: denied by the deny() rule at line 1") {
		t.Fatal(r)
	}
	// Nothing permits: the documented default is a denial.
	r = runCLI(t, "policy", "test", maaSamples+"signer_rotation_during.policy", "--claims", claims)
	if r.code != 1 || !strings.Contains(r.stderr, "no authorization rule permitted") {
		t.Fatal(r)
	}
}

// TestPolicyTestClaimsObject: an MAA-named object; arrays are claim sets.
func TestPolicyTestClaimsObject(t *testing.T) {
	policy := writeTemp(t, "p.txt", `// leading comment
version=1.0;
authorizationrules { [type=="x-ms-sgx-svn", value>=2] && [type=="tag", value=="b"] => permit(); };
issuancerules { c:[type=="tag"] => issue(type="t", value=c.value); };`)
	claims := writeTemp(t, "c.json", `{"x-ms-sgx-svn": 3, "tag": ["a", "b"]}`)
	r := runCLI(t, "policy", "test", policy, "--claims", claims)
	if r.code != 0 {
		t.Fatal(r)
	}
	if v := decodeVerdict(t, r.stdout); len(v["issued"].([]any)) != 2 {
		t.Errorf("verdict %v", v)
	}
	r = runCLI(t, "policy", "test", policy, "--claims", writeTemp(t, "c.json", `{"x-ms-sgx-svn": 1, "tag": "b"}`))
	if r.code != 1 {
		t.Fatal(r)
	}
}

// TestPolicyTestRego: the same claims through a Rego module.
func TestPolicyTestRego(t *testing.T) {
	module := writeTemp(t, "p.rego", `# a Rego policy
package cloister

default allow := false

allow if {
	input["x-ms-sgx-is-debuggable"] == false
	input["x-ms-sgx-svn"] >= 0
}

claims := {"mrsigner": input["x-ms-sgx-mrsigner"]} if allow
`)
	r := runCLI(t, "verify", "evidence", sgxQuote, "--collateral", sgxCollateral)
	claims := writeTemp(t, "claims.json", r.stdout)
	r = runCLI(t, "policy", "test", module, "--claims", claims)
	if r.code != 0 {
		t.Fatal(r)
	}
	v := decodeVerdict(t, r.stdout)
	if v["language"] != "rego" || v["permitted"] != true || v["claims"].(map[string]any)["mrsigner"] != sgxMRSIGNER {
		t.Fatalf("verdict %v", v)
	}
	r = runCLI(t, "policy", "test", module, "--claims", writeTemp(t, "c.json", `{"x-ms-sgx-is-debuggable": true, "x-ms-sgx-svn": 1}`))
	if r.code != 1 || !strings.Contains(r.stderr, "denied: data.cloister.allow is not true") {
		t.Fatal(r)
	}
	net := writeTemp(t, "net.rego", "package cloister\nallow if http.send({\"method\": \"get\", \"url\": \"http://127.0.0.1:9/\"}).status_code == 200\n")
	r = runCLI(t, "policy", "test", net, "--claims", claims)
	if r.code != 1 || !strings.Contains(r.stderr, "http.send") {
		t.Fatal(r)
	}
}

// TestPolicyTestErrors: usage errors exit 2; bad inputs exit 1 with a
// message that locates the problem.
func TestPolicyTestErrors(t *testing.T) {
	claims := writeTemp(t, "c.json", `{}`)
	policy := maaSamples + "sgx_custom.policy"
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"policy", "test"}, 2, "missing policy FILE"},
		{[]string{"policy", "test", policy}, 2, "missing --claims"},
		{[]string{"policy", "test", policy, policy, "--claims", claims}, 2, "want one policy FILE"},
		{[]string{"policy", "test", "-", "--claims", "-"}, 2, "cannot both be standard input"},
		{[]string{"policy", "test", policy, "--claims", claims, "--bogus"}, 2, "flag provided but not defined"},
		{[]string{"policy", "test", "/nonexistent/p", "--claims", claims}, 1, "reading policy"},
		{[]string{"policy", "test", policy, "--claims", writeTemp(t, "bad.json", "[1]")}, 1, "want a JSON object"},
		{[]string{"policy", "test", policy, "--claims", writeTemp(t, "two.json", "{} {}")}, 1, "trailing data"},
		{[]string{"policy", "test", policy, "--claims", writeTemp(t, "f.json", `{"n": 1.5}`)}, 1, "number 1.5 is not a 64-bit integer"},
		{[]string{"policy", "test", writeTemp(t, "x", "hello"), "--claims", claims}, 1, "cannot tell the policy language"},
		{[]string{"policy", "test", writeTemp(t, "bad.policy", "version=1.0;\nauthorizationrules { => permit() ;\n"), "--claims", claims}, 1, "maa: 3:1: expected '}' to close authorizationrules"},
		{[]string{"policy", "test", writeTemp(t, "bad.rego", "package other\n"), "--claims", claims}, 1, "want package cloister"},
	} {
		r := runCLI(t, tc.args...)
		if r.code != tc.code || !strings.Contains(r.stderr, tc.want) || r.stdout != "" {
			t.Errorf("%v: %s\nwant exit %d and ...%s...", tc.args, r, tc.code, tc.want)
		}
	}
	if r := runCLI(t, "help", "policy", "test"); r.code != 0 || !strings.Contains(r.stdout, "--claims") {
		t.Errorf("help: %s", r)
	}
	if r := runCLI(t, "help"); !strings.Contains(r.stdout, "policy test") {
		t.Errorf("command list lacks policy test: %s", r)
	}
}

// TestPolicyTestStdin: the policy may come from standard input.
func TestPolicyTestStdin(t *testing.T) {
	claims := writeTemp(t, "c.json", `{"secureBootEnabled": true}`)
	src, err := os.ReadFile(maaSamples + "author_issue.policy")
	if err != nil {
		t.Fatal(err)
	}
	r := runCLIStdin(t, fixedNow, strings.NewReader(string(src)), "policy", "test", "-", "--claims", claims)
	if r.code != 0 || !strings.Contains(r.stdout, `"SecurityLevelValue"`) {
		t.Fatal(r)
	}
}
