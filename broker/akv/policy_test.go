package akv

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

// cvmPolicy is the shape of Azure's default confidential VM release
// policy (Microsoft's documentation), with an authority written as a URL
// with a trailing slash.
const cvmPolicy = `{
  "anyOf": [
    {
      "allOf": [
        {"claim": "x-ms-attestation-type", "equals": "sevsnpvm"},
        {"claim": "x-ms-compliance-status", "equals": "azure-compliant-cvm"}
      ],
      "authority": "https://sharedeus.eus.attest.azure.net/"
    },
    {
      "allOf": [
        {"claim": "x-ms-isolation-tee.x-ms-attestation-type", "equals": "sevsnpvm"},
        {"claim": "x-ms-isolation-tee.x-ms-compliance-status", "equals": "azure-compliant-cvm"}
      ],
      "authority": "https://sharedweu.weu.attest.azure.net/"
    }
  ],
  "version": "1.0.0"
}`

// policyDocs are real-shaped documents, also the fuzz seeds.
var policyDocs = []string{cvmPolicy, testPolicy,
	`{"version":"1.2.0","anyOf":[{"authority":"sharedeus.eus.attest.azure.net","anyOf":[{"claim":"a.b.c","exists":true},{"allOf":[{"claim":"n","less":10},{"claim":"n","notEquals":3}]}]}]}`,
	`{"Version":"1.0.0","AnyOf":[{"Authority":"https://x","ALLOF":[{"Claim":"c","Equals":1.5e2}]}]}`,
}

func TestParsePolicyReal(t *testing.T) {
	for i, doc := range policyDocs {
		p, err := ParsePolicy([]byte(doc))
		if err != nil {
			t.Fatalf("doc %d: %v", i, err)
		}
		if len(p.Authorities) == 0 || p.Authorities[0].Cond.Op == "" {
			t.Fatalf("doc %d: parsed to %+v", i, p)
		}
	}
	p, _ := ParsePolicy([]byte(cvmPolicy))
	if p.Version != "1.0.0" || len(p.Authorities) != 2 || p.Authorities[1].Cond.Sub[0].Claim != "x-ms-isolation-tee.x-ms-attestation-type" ||
		len(p.Authorities[1].Cond.Sub[0].path) != 2 {
		t.Fatalf("cvm policy parsed to %+v", p)
	}
}

// Every departure from the grammar is refused with ErrPolicy and a message
// that says where.
func TestParsePolicyRefuses(t *testing.T) {
	deep := `{"claim":"c","equals":1}`
	for range MaxPolicyDepth + 1 {
		deep = `{"allOf":[` + deep + `]}`
	}
	for _, tc := range []struct{ doc, want string }{
		{``, "empty"},
		{`[]`, "JSON object"},
		{`null`, "null"},
		{`{"version":"1.0.0"}`, "no anyOf"},
		{`{"anyOf":[]}`, "no version"},
		{`{"version":"2.0.0","anyOf":[]}`, `version "2.0.0"`},
		{`{"version":1,"anyOf":[]}`, "version: want a string"},
		{`{"version":"1.0.0","anyOf":[]}`, "empty"},
		{`{"version":"1.0.0","anyOf":{}}`, "JSON array"},
		{`{"version":"1.0.0","anyOf":[{"allOf":[{"claim":"c","equals":1}]}]}`, "no authority"},
		{`{"version":"1.0.0","anyOf":[{"authority":"","allOf":[{"claim":"c","equals":1}]}]}`, "non-empty string"},
		{`{"version":"1.0.0","anyOf":[{"authority":"ftp://x","allOf":[{"claim":"c","equals":1}]}]}`, "scheme"},
		{`{"version":"1.0.0","anyOf":[{"authority":"https://x?q=1","allOf":[{"claim":"c","equals":1}]}]}`, "scheme://host"},
		{`{"version":"1.0.0","anyOf":[{"authority":"x"}]}`, "exactly one of anyOf and allOf"},
		{`{"version":"1.0.0","anyOf":[{"authority":"x","allOf":[{"claim":"c","equals":1}],"anyOf":[{"claim":"c","equals":1}]}]}`, "exactly one of anyOf and allOf"},
		{`{"version":"1.0.0","anyOf":[{"authority":"x","allOf":[]}]}`, "empty"},
		{`{"version":"1.0.0","anyOf":[{"authority":"x","allOf":[{"claim":"c"}]}]}`, "no operator"},
		{`{"version":"1.0.0","anyOf":[{"authority":"x","allOf":[{"claim":"c","equals":1,"notEquals":2}]}]}`, "two operators"},
		{`{"version":"1.0.0","anyOf":[{"authority":"x","allOf":[{"claim":"c","equals":{"a":1}}]}]}`, "no null, object or array"},
		{`{"version":"1.0.0","anyOf":[{"authority":"x","allOf":[{"claim":"c","equals":[1]}]}]}`, "no null, object or array"},
		{`{"version":"1.0.0","anyOf":[{"authority":"x","allOf":[{"claim":"c","equals":null}]}]}`, "no null, object or array"},
		{`{"version":"1.0.0","anyOf":[{"authority":"x","allOf":[{"claim":"c","less":"9"}]}]}`, "want a number"},
		{`{"version":"1.0.0","anyOf":[{"authority":"x","allOf":[{"claim":"c","exists":"yes"}]}]}`, "true or false"},
		{`{"version":"1.0.0","anyOf":[{"authority":"x","allOf":[{"claim":"a..b","equals":1}]}]}`, "empty segment"},
		{`{"version":"1.0.0","anyOf":[{"authority":"x","allOf":[{"claim":"","equals":1}]}]}`, "1 to 256 bytes"},
		{`{"version":"1.0.0","anyOf":[{"authority":"x","allOf":[{"claim":1,"equals":1}]}]}`, "claim: want a string"},
		{`{"version":"1.0.0","anyOf":[{"authority":"x","allOf":[{"claim":"c","equals":1,"bogus":1}]}]}`, `unknown member "bogus"`},
		{`{"version":"1.0.0","anyOf":[{"authority":"x","allOf":[{"claim":"c","equals":1}]}],"extra":1}`, `unknown member "extra"`},
		{`{"version":"1.0.0","version":"1.0.0","anyOf":[]}`, "duplicate"},
		{`{"version":"1.0.0","Version":"1.0.0","anyOf":[]}`, "twice"},
		{`{"version":"1.0.0","anyOf":[{"authority":"x","allOf":[{"allOf":[{"claim":"c","equals":1}],"equals":1}]}]}`, "no other member"},
		{`{"version":"1.0.0","anyOf":[{"authority":"x","allOf":[{"claim":"c","allOf":[]}]}]}`, "exactly one of claim"},
		{`{"version":"1.0.0","anyOf":[{"authority":"x","allOf":[` + deep + `]}]}`, "nested deeper"},
		{"{\"version\":\"1.0.0\",\"anyOf\":[{\"authority\":\"x\",\"allOf\":[{\"claim\":\"\xff\",\"equals\":1}]}]}", "UTF-8"},
		{`{"version":"1.0.0","anyOf":[{"authority":"x","allOf":[{"claim":"c","equals":1}]}]} trailing`, "JSON object"},
		{`{"version":"1.0.0","anyOf":[{"authority":"x","allOf":[{"claim":"c","equals":1e999999999}]}]}`, "out of range"},
		{`{"version":"1.0.0","anyOf":[{"authority":"x","allOf":[{"claim":"c","equals":1` + strings.Repeat("0", 70) + `}]}]}`, "out of range"},
		{strings.Repeat(" ", MaxPolicySize+1), "limit"},
	} {
		_, err := ParsePolicy([]byte(tc.doc))
		if !errors.Is(err, ErrPolicy) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%.80s: got %v, want ErrPolicy naming %q", tc.doc, err, tc.want)
		}
	}
	many := `{"version":"1.0.0","anyOf":[{"authority":"x","anyOf":[` + strings.Repeat(`{"claim":"c","equals":1},`, MaxPolicyConditions) + `{"claim":"c","equals":1}]}]}`
	if _, err := ParsePolicy([]byte(many)); !errors.Is(err, ErrPolicy) || !strings.Contains(err.Error(), "conditions") {
		t.Errorf("%d conditions: %v", MaxPolicyConditions+1, err)
	}
}

// claimsOf decodes a token payload as verifyToken leaves it (json.Number).
func claimsOf(t *testing.T, s string) map[string]any {
	t.Helper()
	d := json.NewDecoder(strings.NewReader(s))
	d.UseNumber()
	var m map[string]any
	if err := d.Decode(&m); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestEvaluate(t *testing.T) {
	claims := claimsOf(t, `{"s":"Abc","b":true,"n":42,"f":1.5,"big":123456789012345678901234567890,
		"obj":{"inner":{"deep":"x"}},"arr":[{"a":1}],"str_num":"42","dotted.name":"flat"}`)
	pol := func(cond string) string {
		return `{"version":"1.2.0","anyOf":[{"authority":"https://attest.test:8443","allOf":[` + cond + `]}]}`
	}
	for _, tc := range []struct {
		cond string
		ok   bool
	}{
		{`{"claim":"s","equals":"Abc"}`, true},
		{`{"claim":"s","equals":"abc"}`, false}, // exact: case matters
		{`{"claim":"b","equals":true}`, true},
		{`{"claim":"b","equals":"true"}`, false}, // no coercion
		{`{"claim":"n","equals":42}`, true},
		{`{"claim":"n","equals":42.0}`, true}, // numbers by value
		{`{"claim":"n","equals":4.2e1}`, true},
		{`{"claim":"str_num","equals":42}`, false},
		{`{"claim":"n","equals":"42"}`, false},
		{`{"claim":"big","equals":123456789012345678901234567890}`, true},
		{`{"claim":"big","equals":123456789012345678901234567891}`, false}, // no float rounding
		{`{"claim":"obj.inner.deep","equals":"x"}`, true},
		{`{"claim":"obj.inner","equals":"x"}`, false},
		{`{"claim":"arr.0.a","equals":1}`, false}, // arrays are not walked
		{`{"claim":"dotted.name","equals":"flat"}`, false},
		{`{"claim":"missing","equals":"x"}`, false},
		{`{"claim":"missing","notEquals":"x"}`, false}, // absent meets nothing: fail closed
		{`{"claim":"s","notEquals":"x"}`, true},
		{`{"claim":"s","notEquals":"Abc"}`, false},
		{`{"claim":"missing","exists":false}`, true},
		{`{"claim":"missing","exists":true}`, false},
		{`{"claim":"obj.inner","exists":true}`, true},
		{`{"claim":"n","greater":41}`, true},
		{`{"claim":"n","greater":42}`, false},
		{`{"claim":"n","greaterOrEquals":42}`, true},
		{`{"claim":"n","less":42.5}`, true},
		{`{"claim":"n","lessOrEquals":41.99}`, false},
		{`{"claim":"f","less":1.50001}`, true},
		{`{"claim":"s","greater":1}`, false}, // not a number
		{`{"claim":"str_num","greater":1}`, false},
		{`{"anyOf":[{"claim":"s","equals":"no"},{"claim":"n","equals":42}]}`, true},
		{`{"anyOf":[{"claim":"s","equals":"no"},{"claim":"n","equals":41}]}`, false},
		{`{"allOf":[{"claim":"s","equals":"Abc"},{"anyOf":[{"claim":"b","equals":false},{"allOf":[{"claim":"n","less":100},{"claim":"f","greater":1}]}]}]}`, true},
		{`{"allOf":[{"claim":"s","equals":"Abc"},{"anyOf":[{"claim":"b","equals":false},{"allOf":[{"claim":"n","less":100},{"claim":"f","greater":2}]}]}]}`, false},
	} {
		p, err := ParsePolicy([]byte(pol(tc.cond)))
		if err != nil {
			t.Fatalf("%s: %v", tc.cond, err)
		}
		err = p.Evaluate(testIssuer, claims)
		if tc.ok != (err == nil) || (err != nil && !errors.Is(err, ErrPolicyNotMet)) {
			t.Errorf("%s: got %v, want ok=%v", tc.cond, err, tc.ok)
		}
	}
}

// The authority must be the token's issuer; URLs compare without regard to
// host case, a default port or a trailing slash, and nothing else.
func TestEvaluateAuthority(t *testing.T) {
	claims := claimsOf(t, `{"c":1}`)
	for _, tc := range []struct {
		authority, issuer string
		ok                bool
	}{
		{"https://attest.test:8443", "https://attest.test:8443", true},
		{"https://ATTEST.test:8443/", "https://attest.test:8443", true},
		{"attest.example", "https://attest.example", true},
		{"https://attest.example:443", "https://attest.example/", true},
		{"https://attest.test:8443", "https://attest.test:8444", false},
		{"https://attest.test:8443", "http://attest.test:8443", false},
		{"https://attest.test:8443", "https://evil.test:8443", false},
		{"https://attest.test", "https://attest.test.evil", false},
		{"https://attest.test/tenant", "https://attest.test", false},
	} {
		p, err := ParsePolicy([]byte(`{"version":"1.0.0","anyOf":[{"authority":"` + tc.authority + `","allOf":[{"claim":"c","equals":1}]}]}`))
		if err != nil {
			t.Fatal(err)
		}
		err = p.Evaluate(tc.issuer, claims)
		if tc.ok != (err == nil) {
			t.Errorf("authority %s, issuer %s: got %v, want ok=%v", tc.authority, tc.issuer, err, tc.ok)
		}
	}
	// The second authority matches when the first is another issuer.
	p, _ := ParsePolicy([]byte(cvmPolicy))
	cvm := claimsOf(t, `{"x-ms-isolation-tee":{"x-ms-attestation-type":"sevsnpvm","x-ms-compliance-status":"azure-compliant-cvm"}}`)
	if err := p.Evaluate("https://sharedweu.weu.attest.azure.net", cvm); err != nil {
		t.Errorf("cvm policy, second authority: %v", err)
	}
	if err := p.Evaluate("https://sharedeus.eus.attest.azure.net", cvm); !errors.Is(err, ErrPolicyNotMet) ||
		!strings.Contains(err.Error(), "x-ms-attestation-type is absent") {
		t.Errorf("cvm policy, first authority without top-level claims: %v", err)
	}
}
