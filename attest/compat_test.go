package attest

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// @azure/attestation sends the signed certificate request of
// certificates:add / :remove as a JSON string literal ("eyJ…", Content-Type
// application/json, as MAA's REST spec has it); curl users send the bare
// JWS. Both must work, and the JSON form must not open a way around the
// signature: a literal holding a stranger's request is still refused.
func TestCertificateRequestAsJSONString(t *testing.T) {
	f := getFixture(t)
	good, other, stranger := newPolicySigner(t, "first"), newPolicySigner(t, "second"), newPolicySigner(t, "stranger")
	s, err := New(Config{
		Platform: f.plat, Now: func() time.Time { return testNow }, Alg: "ES256", Issuer: "https://attest.test",
		PolicySigners: []*x509.Certificate{good.cert}, InsecureAdmin: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	certReq := func(by policySigner, c *x509.Certificate) string {
		return by.sign(t, jwt.MapClaims{"policyCertificate": map[string]any{"kty": "EC", "x5c": []string{base64.StdEncoding.EncodeToString(c.Raw)}}})
	}
	literal := func(jws string) string {
		b, err := json.Marshal(jws)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	for _, st := range []struct {
		name, path, body string
		want             int
		result           string
	}{
		{"add as a JSON string", "/certificates:add", literal(certReq(good, other.cert)), 200, "IsPresent"},
		{"remove as a JSON string", "/certificates:remove", literal(certReq(good, other.cert)), 200, "IsAbsent"},
		{"add as a bare JWS", "/certificates:add", certReq(good, other.cert), 200, "IsPresent"},
		{"remove as a bare JWS", "/certificates:remove", certReq(good, other.cert), 200, "IsAbsent"},
		{"a stranger's request as a JSON string", "/certificates:add", literal(certReq(stranger, stranger.cert)), 403, ""},
		{"a JSON string with trailing data", "/certificates:add", literal(certReq(good, other.cert)) + ` "x"`, 400, ""},
		{"a JSON number", "/certificates:add", `42`, 400, ""},
		{"an unterminated JSON string", "/certificates:add", `"` + certReq(good, other.cert), 400, ""},
	} {
		code, out := do(t, s, "POST", st.path+av, st.body)
		if code != st.want {
			t.Errorf("%s: %d %v; want %d", st.name, code, out, st.want)
			continue
		}
		if st.result == "" {
			continue
		}
		claims := jwt.MapClaims{}
		if _, _, err := jwt.NewParser().ParseUnverified(out["token"].(string), claims); err != nil {
			t.Fatal(err)
		}
		if claims["x-ms-policycertificates-result"] != st.result {
			t.Errorf("%s: result %v, want %s", st.name, claims["x-ms-policycertificates-result"], st.result)
		}
	}
}

// Policy and signer management need an authenticated caller, as MAA's do:
// a bearer token when one is configured, and nobody at all when neither a
// token nor the development opt-in is; attestation stays open.
func TestAdminAuthentication(t *testing.T) {
	f := getFixture(t)
	q := quote(t, f, []byte(`{}`), false)
	policyDoc := UnsignedPolicy("version=1.0; authorizationrules { => permit(); };")
	newSvc := func(token string, insecure bool) *Service {
		s, err := New(Config{
			Platform: f.plat, Now: func() time.Time { return testNow }, Alg: "ES256", Issuer: "https://attest.test",
			TrustRoots: []*x509.Certificate{f.pki.Root}, AdminToken: token, InsecureAdmin: insecure,
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	call := func(s *Service, method, path, body, auth string) int {
		rec := httptest.NewRecorder()
		r := httptest.NewRequest(method, path, strings.NewReader(body))
		if auth != "" {
			r.Header.Set("Authorization", auth)
		}
		s.ServeHTTP(rec, r)
		if rec.Code == http.StatusUnauthorized && rec.Header().Get("WWW-Authenticate") == "" {
			t.Errorf("%s %s: 401 without WWW-Authenticate", method, path)
		}
		return rec.Code
	}
	admin := []struct{ method, path, body string }{
		{"PUT", "/policies/SgxEnclave" + av, policyDoc},
		{"GET", "/policies/SgxEnclave" + av, ""},
		{"POST", "/policies/SgxEnclave:reset" + av, "eyJhbGciOiJub25lIn0.."},
		{"GET", "/certificates" + av, ""},
		{"POST", "/certificates:add" + av, "x.y.z"},
		{"POST", "/certificates:remove" + av, "x.y.z"},
	}
	const token = "correct horse battery staple 42"
	withToken, closed, open := newSvc(token, false), newSvc("", false), newSvc("", true)
	for _, a := range admin {
		for _, tc := range []struct {
			name string
			s    *Service
			auth string
			want func(int) bool
		}{
			{"token mode, no header", withToken, "", is(401)},
			{"token mode, wrong token", withToken, "Bearer " + token + "x", is(401)},
			{"token mode, token prefix", withToken, "Bearer " + token[:len(token)-1], is(401)},
			{"token mode, not a bearer", withToken, "Basic " + token, is(401)},
			{"token mode, right token", withToken, "Bearer " + token, not(401)},
			{"token mode, scheme in lower case", withToken, "bearer " + token, not(401)},
			{"nothing configured, no header", closed, "", is(401)},
			{"nothing configured, any token", closed, "Bearer " + token, is(401)},
			{"insecure opt-in, no header", open, "", not(401)},
		} {
			if code := call(tc.s, a.method, a.path, a.body, tc.auth); !tc.want(code) {
				t.Errorf("%s %s, %s: status %d", a.method, a.path, tc.name, code)
			}
		}
	}
	// Attestation needs no caller authentication, in any mode.
	for _, s := range []*Service{withToken, closed, open} {
		if code := call(s, "POST", "/attest/SgxEnclave"+av, attestBody(q, []byte(`{}`), ""), ""); code != 200 {
			t.Errorf("attest without authentication: %d", code)
		}
	}
	if _, err := New(Config{Platform: f.plat, Issuer: "https://attest.test", AdminToken: token, InsecureAdmin: true}); err == nil {
		t.Error("New accepted an admin token together with InsecureAdmin")
	}
}

func is(code int) func(int) bool  { return func(c int) bool { return c == code } }
func not(code int) func(int) bool { return func(c int) bool { return c != code } }

// x-ms-sgx-collateral carries SHA-256 digests of exactly the collateral the
// verdict used (docs/maa-contract.md §6 defines each member), so a relying
// party can tell which TCB info and QE identity its token rests on.
func TestSGXCollateralClaim(t *testing.T) {
	f := getFixture(t)
	s := newService(t, f, "")
	runtime := []byte(`{"k":1}`)
	q := quote(t, f, runtime, false)
	oe := append([]byte{1, 0, 0, 0, 2, 0, 0, 0}, make([]byte, 8)...)
	for i := range 8 {
		oe[8+i] = byte(uint64(len(q)) >> (8 * i))
	}
	oe = append(oe, q...)

	hexSum := func(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }
	chainDER := func(p string) []byte {
		var der []byte
		for rest := []byte(p); ; {
			var b *pem.Block
			if b, rest = pem.Decode(rest); b == nil {
				return der
			}
			der = append(der, b.Bytes...)
		}
	}
	rootCRL, err := hex.DecodeString(f.col.RootCACRL)
	if err != nil || len(rootCRL) == 0 {
		t.Fatalf("fixture root CA CRL: %v", err)
	}
	common := map[string]any{
		"tcbinfohash":      hexSum([]byte(f.col.TCBInfo)),
		"tcbinfocertshash": hexSum(chainDER(f.col.TCBInfoIssuerChain)),
		"tcbinfocrlhash":   hexSum(rootCRL),
		"qeidhash":         hexSum([]byte(f.col.QEIdentity)),
		"qeidcertshash":    hexSum(chainDER(f.col.QEIdentityIssuerChain)),
		"qeidcrlhash":      hexSum(rootCRL),
	}
	for _, tc := range []struct {
		name, path, body string
		evidence         []byte
	}{
		{"SgxEnclave", "/attest/SgxEnclave", attestBody(q, runtime, ""), q},
		{"OpenEnclave", "/attest/OpenEnclave", `{"report":"` + base64.RawURLEncoding.EncodeToString(oe) + `"}`, oe},
	} {
		code, out := do(t, s, "POST", tc.path+av, tc.body)
		if code != 200 {
			t.Fatalf("%s: %d %v", tc.name, code, out)
		}
		claims := jwt.MapClaims{}
		if _, _, err := jwt.NewParser().ParseUnverified(out["token"].(string), claims); err != nil {
			t.Fatal(err)
		}
		got, ok := claims["x-ms-sgx-collateral"].(map[string]any)
		if !ok {
			t.Fatalf("%s: x-ms-sgx-collateral = %v", tc.name, claims["x-ms-sgx-collateral"])
		}
		want := map[string]any{"quotehash": hexSum(tc.evidence)}
		for k, v := range common {
			want[k] = v
		}
		for k, v := range want {
			if got[k] != v {
				t.Errorf("%s: %s = %v, want %v", tc.name, k, got[k], v)
			}
		}
		if len(got) != len(want) {
			t.Errorf("%s: members %v, want exactly %v", tc.name, got, want)
		}
	}

	// Without a collateral source nothing was evaluated against collateral:
	// only the quote's digest is stated.
	bare, err := New(Config{Platform: f.plat, Now: func() time.Time { return testNow }, Alg: "ES256", Issuer: "https://attest.test",
		TrustRoots: []*x509.Certificate{f.pki.Root}})
	if err != nil {
		t.Fatal(err)
	}
	defer bare.Close()
	code, out := do(t, bare, "POST", "/attest/SgxEnclave"+av, attestBody(q, runtime, ""))
	if code != 200 {
		t.Fatalf("no collateral: %d %v", code, out)
	}
	claims := jwt.MapClaims{}
	if _, _, err := jwt.NewParser().ParseUnverified(out["token"].(string), claims); err != nil {
		t.Fatal(err)
	}
	if got, _ := claims["x-ms-sgx-collateral"].(map[string]any); len(got) != 1 || got["quotehash"] != hexSum(q) {
		t.Errorf("no collateral: x-ms-sgx-collateral = %v, want only quotehash", claims["x-ms-sgx-collateral"])
	}
}

// In isolated mode a policy signed by a trusted signer still needs an
// authenticated caller: the signature authorises the document, the token
// the caller.
func TestIsolatedModeNeedsAdminToo(t *testing.T) {
	f := getFixture(t)
	good := newPolicySigner(t, "policy signer")
	const token = "isolated-admin-token"
	s, err := New(Config{
		Platform: f.plat, Now: func() time.Time { return testNow }, Alg: "ES256", Issuer: "https://attest.test",
		PolicySigners: []*x509.Certificate{good.cert}, AdminToken: token,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	doc := good.sign(t, jwt.MapClaims{"AttestationPolicy": base64.RawURLEncoding.EncodeToString([]byte("version=1.0; authorizationrules { => permit(); };"))})
	put := func(auth string) int {
		rec := httptest.NewRecorder()
		r := httptest.NewRequest("PUT", "/policies/SgxEnclave"+av, strings.NewReader(doc))
		if auth != "" {
			r.Header.Set("Authorization", auth)
		}
		s.ServeHTTP(rec, r)
		return rec.Code
	}
	if c := put(""); c != 401 {
		t.Errorf("signed policy, no caller authentication: %d", c)
	}
	if c := put("Bearer " + token); c != 200 {
		t.Errorf("signed policy, authenticated caller: %d", c)
	}
}

// Other spellings of the management routes (HEAD, an escaped colon, a
// doubled or dotted path, another api-version) reach the admin check or
// no handler at all: none of them reaches a policy or signer handler
// without the token.
func TestAdminAuthenticationPathVariants(t *testing.T) {
	f := getFixture(t)
	s, err := New(Config{Platform: f.plat, Now: func() time.Time { return testNow }, Alg: "ES256", Issuer: "https://attest.test",
		TrustRoots: []*x509.Certificate{f.pki.Root}, AdminToken: "the-admin-token"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	// The stored policy, as the payload of GET's token (the clock is fixed,
	// so the payload changes only if the policy does).
	stored := func() string {
		rec := httptest.NewRecorder()
		r := httptest.NewRequest("GET", "/policies/SgxEnclave"+av, nil)
		r.Header.Set("Authorization", "Bearer the-admin-token")
		s.ServeHTTP(rec, r)
		var out struct{ Token string }
		if rec.Code != 200 || json.Unmarshal(rec.Body.Bytes(), &out) != nil || strings.Count(out.Token, ".") != 2 {
			t.Fatalf("GET with the token: %d %s", rec.Code, rec.Body)
		}
		return strings.Split(out.Token, ".")[1]
	}
	before := stored()
	policyDoc := UnsignedPolicy("version=1.0; authorizationrules { => permit(); };")
	for _, tc := range []struct{ method, path, body string }{
		{"HEAD", "/policies/SgxEnclave" + av, ""},
		{"GET", "/policies/SgxEnclave?api-version=2020-10-01", ""},
		{"GET", "/policies/SgxEnclave", ""},
		{"PUT", "/policies/SgxEnclave%3Areset" + av, policyDoc},
		{"POST", "/policies/SgxEnclave%3Areset" + av, ""},
		{"PUT", "//policies/SgxEnclave" + av, policyDoc},
		{"PUT", "/x/../policies/SgxEnclave" + av, policyDoc},
		{"PUT", "/policies/SgxEnclave/" + av, policyDoc},
		{"PUT", "/Policies/SgxEnclave" + av, policyDoc},
		{"PUT", "/policies/sgxenclave" + av, policyDoc},
		{"PUT", "/policies/..%2Fcertificates:add" + av, "x.y.z"},
		{"POST", "/certificates%3Aadd" + av, "x.y.z"},
		{"POST", "/certificates:add/" + av, "x.y.z"},
		{"OPTIONS", "/policies/SgxEnclave" + av, ""},
		{"DELETE", "/policies/SgxEnclave" + av, ""},
		{"PATCH", "/certificates" + av, ""},
	} {
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, httptest.NewRequest(tc.method, tc.path, strings.NewReader(tc.body)))
		if rec.Code < 300 {
			t.Errorf("%s %s without the token: %d %s", tc.method, tc.path, rec.Code, rec.Body)
		}
	}
	if stored() != before {
		t.Error("a request without the token changed the stored policy")
	}
}
