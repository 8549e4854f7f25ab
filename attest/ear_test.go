package attest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/cloister-dev/cloister/evidence"
)

// earToken posts q for an EAR token (query or Accept header) and validates
// it with golang-jwt against the key published at /certs.
func earToken(t *testing.T, base, query, accept string, q []byte) jwt.MapClaims {
	t.Helper()
	req, _ := http.NewRequest("POST", base+"/attest/SgxEnclave"+av+query, strings.NewReader(attestBody(q, nil, `,"nonce":"nonce-0123456789"`)))
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var out struct{ Token string }
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != 200 {
		t.Fatalf("status %d err %v", resp.StatusCode, err)
	}
	resp.Body.Close()
	kid, certs := fetchCerts(t, base)
	tok, err := jwt.Parse(out.Token, func(tk *jwt.Token) (any, error) {
		if tk.Header["kid"] != kid {
			return nil, fmt.Errorf("kid %v", tk.Header["kid"])
		}
		return certs[0].PublicKey, nil
	}, jwt.WithValidMethods([]string{"ES256"}), jwt.WithTimeFunc(func() time.Time { return testNow }))
	if err != nil {
		t.Fatal(err)
	}
	return tok.Claims.(jwt.MapClaims)
}

func submod(t *testing.T, c jwt.MapClaims) map[string]any {
	t.Helper()
	subs, _ := c["submods"].(map[string]any)
	sm, _ := subs["sim-sgx"].(map[string]any)
	if sm == nil {
		t.Fatalf("submods = %v, want a sim-sgx appraisal", c["submods"])
	}
	return sm
}

func TestEARToken(t *testing.T) {
	f := getFixture(t)
	s := newService(t, f, "")
	srv := httptest.NewServer(s)
	defer srv.Close()
	q := quote(t, f, nil, true)

	for _, sel := range []struct{ query, accept string }{{"&format=ear", ""}, {"", "application/eat-ear+jwt; q=1"}} {
		c := earToken(t, srv.URL, sel.query, sel.accept, q)
		if c["eat_profile"] != EARProfile || c["iat"] != float64(testNow.Unix()) || c["eat_nonce"] != "nonce-0123456789" {
			t.Errorf("%+v: top-level claims %v", sel, c)
		}
		vid, _ := c["ear.verifier-id"].(map[string]any)
		if vid["developer"] != EARDeveloper || vid["build"] == "" || vid["build"] == nil {
			t.Errorf("ear.verifier-id = %v", c["ear.verifier-id"])
		}
		sm := submod(t, c)
		if sm["ear.status"] != "affirming" {
			t.Errorf("ear.status = %v, want affirming (tcb UpToDate)", sm["ear.status"])
		}
		if tv, _ := sm["ear.trustworthiness-vector"].(map[string]any); tv["hardware"] != float64(tierAffirming) {
			t.Errorf("trustworthiness vector %v", tv)
		}
		ae, _ := sm["ear.veraison.annotated-evidence"].(map[string]any)
		if ae["x-ms-sgx-is-debuggable"] != true || ae["tcb_status"] != evidence.StatusUpToDate || ae["x-ms-sgx-mrenclave"] == nil {
			t.Errorf("annotated evidence %v", ae)
		}
	}

	// Without the selector the MAA shape is unchanged.
	if _, out := do(t, s, "POST", "/attest/SgxEnclave"+av, attestBody(q, nil, "")); out["token"] == nil {
		t.Fatalf("MAA token: %v", out)
	}

	// A policy denial is a signed contraindicated result in EAR form.
	if code, _ := do(t, s, "PUT", "/policies/SgxEnclave"+av, UnsignedPolicy(denyDebug)); code != 200 {
		t.Fatalf("PUT: %d", code)
	}
	if code, _ := do(t, s, "POST", "/attest/SgxEnclave"+av, attestBody(q, nil, "")); code != 400 {
		t.Errorf("MAA shape, denied: %d, want 400", code)
	}
	sm := submod(t, earToken(t, srv.URL, "&format=ear", "", q))
	if sm["ear.status"] != "contraindicated" {
		t.Errorf("denied: ear.status = %v, want contraindicated", sm["ear.status"])
	}
}

func TestEARStatus(t *testing.T) {
	for _, c := range []struct {
		tcb       string
		permitted bool
		want      string
	}{
		{evidence.StatusUpToDate, true, "affirming"},
		{evidence.StatusSWHardeningNeeded, true, "warning"},
		{evidence.StatusOutOfDate, true, "warning"},
		{evidence.StatusNotEvaluated, true, "warning"},
		{evidence.StatusRevoked, true, "contraindicated"},
		{evidence.StatusUpToDate, false, "contraindicated"},
	} {
		if got, _ := earStatus(c.tcb, c.permitted); got != c.want {
			t.Errorf("earStatus(%s, %v) = %s, want %s", c.tcb, c.permitted, got, c.want)
		}
	}
}
