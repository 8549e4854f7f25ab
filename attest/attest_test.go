package attest

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/cloister-dev/cloister/evidence"
	"github.com/cloister-dev/cloister/evidence/pcs"
	"github.com/cloister-dev/cloister/tee"
	"github.com/cloister-dev/cloister/tee/sim"
)

var testNow = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)

type fixture struct {
	pki  *sim.PKI
	col  *pcs.Bundle
	plat tee.Platform
}

var (
	fixOnce sync.Once
	fix     fixture
	fixErr  error
)

// getFixture loads one sim PKI for the whole package: key generation is the
// slow part and the tests only read it.
func getFixture(t testing.TB) fixture {
	t.Helper()
	fixOnce.Do(func() {
		dir, err := makeTemp()
		if err != nil {
			fixErr = err
			return
		}
		if fix.pki, fixErr = sim.Load(dir, rand.Reader, testNow.Add(-time.Hour)); fixErr != nil {
			return
		}
		if fix.col, fixErr = fix.pki.Collateral(rand.Reader, testNow, false); fixErr != nil {
			return
		}
		fix.plat, fixErr = sim.NewPlatform(fix.pki, tee.KindSimSGX, sim.App{MRENCLAVE: [32]byte{0xaa}, MRSIGNER: [32]byte{0xbb}, ProductID: 1, SVN: 1}, rand.Reader)
	})
	if fixErr != nil {
		t.Fatal(fixErr)
	}
	return fix
}

func makeTemp() (string, error) {
	return osMkdirTemp()
}

func newService(t testing.TB, f fixture, stateDir string) *Service {
	t.Helper()
	s, err := New(Config{
		Platform: f.plat, Now: func() time.Time { return testNow }, TrustRoots: []*x509.Certificate{f.pki.Root},
		Collateral: func(context.Context, []byte) (*pcs.Bundle, error) { return f.col, nil },
		Alg:        "ES256", Issuer: "https://attest.test", StateDir: stateDir, MaxBody: 64 << 10,
		InsecureAdmin: true, // the admin-authentication tests are in compat_test.go
	})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func quote(t testing.TB, f fixture, runtime []byte, debug bool) []byte {
	t.Helper()
	var rd [64]byte
	sum := sha256.Sum256(runtime)
	copy(rd[:], sum[:])
	q, err := f.pki.QuoteSGX(rand.Reader, sim.SGXReport{MRENCLAVE: [32]byte{1, 2}, MRSIGNER: [32]byte{3, 4}, ISVProdID: 7, ISVSVN: 3, Debug: debug, ReportData: rd})
	if err != nil {
		t.Fatal(err)
	}
	return q
}

func do(t *testing.T, h http.Handler, method, path, body string) (int, map[string]any) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(method, path, strings.NewReader(body)))
	var out map[string]any
	_ = json.Unmarshal(rec.Body.Bytes(), &out)
	if rec.Code >= 500 {
		t.Errorf("%s %s: status %d: %s", method, path, rec.Code, rec.Body)
	}
	return rec.Code, out
}

func errMsg(out map[string]any) string {
	e, _ := out["error"].(map[string]any)
	m, _ := e["message"].(string)
	return m
}

const av = "?api-version=2022-08-01"

func attestBody(q, runtime []byte, extra string) string {
	b := fmt.Sprintf(`{"quote":%q`, base64.RawURLEncoding.EncodeToString(q))
	if runtime != nil {
		b += fmt.Sprintf(`,"runtimeData":{"data":%q,"dataType":"JSON"}`, base64.RawURLEncoding.EncodeToString(runtime))
	}
	return b + extra + "}"
}

func TestAttestEndToEnd(t *testing.T) {
	f := getFixture(t)
	s := newService(t, f, "")
	srv := httptest.NewServer(s)
	defer srv.Close()
	runtime := []byte(`{"jwk":{"kty":"oct"}}`)
	q := quote(t, f, runtime, false)
	resp, err := http.Post(srv.URL+"/attest/SgxEnclave"+av, "application/json", strings.NewReader(attestBody(q, runtime, `,"nonce":"n-1"`)))
	if err != nil {
		t.Fatal(err)
	}
	var out struct{ Token string }
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != 200 {
		t.Fatalf("status %d err %v", resp.StatusCode, err)
	}
	resp.Body.Close()

	// Validate with the JWT library against the JWKS from /certs.
	kid, certs := fetchCerts(t, srv.URL)
	if len(certs) != 2 {
		t.Fatalf("x5c: %d certs, want the signing and the RA-TLS certificate", len(certs))
	}
	if err := certs[1].CheckSignature(certs[0].SignatureAlgorithm, certs[0].RawTBSCertificate, certs[0].Signature); err != nil {
		t.Fatalf("signing certificate not signed by the RA-TLS key: %v", err)
	}
	tok, err := jwt.Parse(out.Token, func(tk *jwt.Token) (any, error) {
		if tk.Header["kid"] != kid {
			return nil, fmt.Errorf("kid %v", tk.Header["kid"])
		}
		return certs[0].PublicKey, nil
	}, jwt.WithValidMethods([]string{"ES256"}), jwt.WithTimeFunc(func() time.Time { return testNow }))
	if err != nil {
		t.Fatal(err)
	}
	if tok.Header["jku"] != "https://attest.test/certs" {
		t.Errorf("jku %v", tok.Header["jku"])
	}
	c := tok.Claims.(jwt.MapClaims)
	ev, err := evidence.Verify(context.Background(), q, evidence.Options{Time: testNow, Collateral: f.col, TrustRoots: []*x509.Certificate{f.pki.Root}})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"x-ms-sgx-mrenclave": hex.EncodeToString(ev.MRENCLAVE), "x-ms-sgx-mrsigner": hex.EncodeToString(ev.MRSIGNER),
		"x-ms-sgx-product-id": float64(ev.ISVProdID), "x-ms-sgx-svn": float64(ev.ISVSVN), "x-ms-sgx-is-debuggable": ev.Debug,
		"tcb_status": ev.TCBStatus, "nonce": "n-1", "x-ms-attestation-type": "sim-sgx", "iss": "https://attest.test",
		"x-ms-ver": "1.0", "sgx-mrenclave": hex.EncodeToString(ev.MRENCLAVE), "x-ms-policy-hash": policyHash(defaultSGXPolicy),
		"x-ms-sgx-ehd": base64.RawURLEncoding.EncodeToString(runtime),
	}
	for k, v := range want {
		if c[k] != v {
			t.Errorf("claim %s = %v, want %v", k, c[k], v)
		}
	}
	if rt, _ := c["x-ms-runtime"].(map[string]any); rt["jwk"] == nil {
		t.Errorf("x-ms-runtime = %v", c["x-ms-runtime"])
	}
	if ev.TCBStatus != evidence.StatusUpToDate {
		t.Errorf("tcb status %s", ev.TCBStatus)
	}
}

func TestBadInputs(t *testing.T) {
	f := getFixture(t)
	s := newService(t, f, "")
	runtime := []byte(`{"a":1}`)
	q := quote(t, f, runtime, false)
	good := base64.RawURLEncoding.EncodeToString(q)
	for _, tc := range []struct {
		name, method, path, body string
		code                     int
		msg                      string
	}{
		{"no api-version", "POST", "/attest/SgxEnclave", attestBody(q, nil, ""), 400, "api-version"},
		{"bad api-version", "POST", "/attest/SgxEnclave?api-version=1999", attestBody(q, nil, ""), 400, "2022-08-01"},
		{"unknown type", "POST", "/attest/Tpm" + av, "{}", 404, "unknown attestation type"},
		{"wrong method", "GET", "/attest/SgxEnclave" + av, "", 405, "not allowed"},
		{"bad json", "POST", "/attest/SgxEnclave" + av, "{", 400, "not a JSON object"},
		{"missing quote", "POST", "/attest/SgxEnclave" + av, "{}", 400, `missing "quote"`},
		{"duplicate member", "POST", "/attest/SgxEnclave" + av, fmt.Sprintf(`{"quote":%q,"quote":"AAAA"}`, good), 400, "duplicate"},
		{"trailing data", "POST", "/attest/SgxEnclave" + av, fmt.Sprintf(`{"quote":%q} {}`, good), 400, "not a JSON object"},
		{"invalid utf-8", "POST", "/attest/SgxEnclave" + av, fmt.Sprintf(`{"quote":%q,"nonce":"`, good) + "\xff\"}", 400, "UTF-8"},
		{"quote not a string", "POST", "/attest/SgxEnclave" + av, `{"quote":5}`, 400, "quote"},
		// Names match ignoring case only, as encoding/json: "runtime_data"
		// is not runtimeData (so no binding is attempted) and "q_u_o_t_e"
		// is not the quote.
		{"delimiters are not ignored", "POST", "/attest/SgxEnclave" + av, `{"q_u_o_t_e":"AAAA"}`, 400, `missing "quote"`},
		{"bad base64", "POST", "/attest/SgxEnclave" + av, `{"quote":"!!!"}`, 400, "bad base64"},
		{"garbage quote", "POST", "/attest/SgxEnclave" + av, `{"quote":"AAAA"}`, 400, "evidence"},
		{"truncated quote", "POST", "/attest/SgxEnclave" + av, fmt.Sprintf(`{"quote":%q}`, good[:len(good)/2]), 400, "evidence rejected"},
		{"wrong type for quote", "POST", "/attest/TdxVm" + av, attestBody(q, nil, ""), 400, "does not take"},
		{"runtime mismatch", "POST", "/attest/SgxEnclave" + av, attestBody(q, []byte(`{"a":2}`), ""), 400,
			fmt.Sprintf("but report_data[0:32] = %x", sha256.Sum256(runtime))},
		{"runtime not json", "POST", "/attest/SgxEnclave" + av, fmt.Sprintf(`{"quote":%q,"runtimeData":{"data":"eA","dataType":"JSON"}}`, good), 400, "not JSON"},
		{"bad dataType", "POST", "/attest/SgxEnclave" + av, fmt.Sprintf(`{"quote":%q,"runtimeData":{"data":"eA","dataType":"XML"}}`, good), 400, "dataType"},
		{"bad draft policy", "POST", "/attest/SgxEnclave" + av, attestBody(q, nil, `,"draftPolicyForAttestation":"version=1.0; nonsense"`), 400, "draftPolicyForAttestation"},
		{"too large", "POST", "/attest/SgxEnclave" + av, `{"quote":"` + strings.Repeat("A", 70<<10) + `"}`, 413, "larger than"},
		{"policy unknown type", "GET", "/policies/Foo" + av, "", 404, "unknown attestation type"},
		{"policy not jws", "PUT", "/policies/SgxEnclave" + av, "hello", 400, "JWS"},
		{"policy bad text", "PUT", "/policies/SgxEnclave" + av, UnsignedPolicy("version=1.0; authorizationrules { => permitt(); };"), 400, "maa: "},
		{"policy bad rego", "PUT", "/policies/SgxEnclave" + av, UnsignedPolicy("package cloister\nallow if { http.send({}) }"), 400, "rego"},
		{"policy no payload", "PUT", "/policies/SgxEnclave" + av, "eyJhbGciOiJub25lIn0.e30.", 400, "AttestationPolicy"},
		{"reset bad body", "POST", "/policies/SgxEnclave:reset" + av, "x", 400, "empty payload"},
		{"unknown path", "GET", "/nope", "", 404, "no such endpoint"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out := do(t, s, tc.method, tc.path, tc.body)
			if code != tc.code || !strings.Contains(errMsg(out), tc.msg) {
				t.Errorf("got %d %q, want %d containing %q", code, errMsg(out), tc.code, tc.msg)
			}
		})
	}
}

const denyDebug = `version= 1.0;
authorizationrules {
	[type=="x-ms-sgx-is-debuggable", value==true] => deny();
	=> permit();
};
issuancerules {
	c:[type=="x-ms-sgx-svn"] => issue(type="svn-seen", value=c.value);
};
`

func TestPolicyRoundTripAndPersistence(t *testing.T) {
	f := getFixture(t)
	dir := t.TempDir()
	s := newService(t, f, dir)
	code, _ := do(t, s, "PUT", "/policies/SgxEnclave"+av, UnsignedPolicy(denyDebug))
	if code != 200 {
		t.Fatalf("PUT: %d", code)
	}
	dbg := quote(t, f, nil, true)
	code, out := do(t, s, "POST", "/attest/SgxEnclave"+av, attestBody(dbg, nil, ""))
	if code != 400 || !strings.Contains(errMsg(out), "denied") {
		t.Errorf("debug enclave: %d %v", code, out)
	}
	code, out = do(t, s, "POST", "/attest/SgxEnclave"+av, attestBody(quote(t, f, nil, false), nil, ""))
	if code != 200 {
		t.Fatalf("production enclave: %d %v", code, out)
	}
	tok, _, err := jwt.NewParser().ParseUnverified(out["token"].(string), jwt.MapClaims{})
	if err != nil {
		t.Fatal(err)
	}
	if c := tok.Claims.(jwt.MapClaims); c["svn-seen"] != float64(3) || c["x-ms-policy-hash"] != policyHash(denyDebug) {
		t.Errorf("claims %v", c)
	}

	// A new service on the same state dir has the policy.
	s2 := newService(t, f, dir)
	code, out = do(t, s2, "GET", "/policies/SgxEnclave"+av, "")
	if code != 200 {
		t.Fatal(code)
	}
	tok, _, _ = jwt.NewParser().ParseUnverified(out["token"].(string), jwt.MapClaims{})
	if got := tok.Claims.(jwt.MapClaims)["x-ms-policy"]; got != UnsignedPolicy(denyDebug) {
		t.Errorf("GET after restart: %v", got)
	}
	if code, _ = do(t, s2, "POST", "/attest/SgxEnclave"+av, attestBody(dbg, nil, "")); code != 400 {
		t.Errorf("restarted service permitted a debug enclave: %d", code)
	}
	// Reset brings the default back, also across restarts.
	if code, _ = do(t, s2, "POST", "/policies/SgxEnclave:reset"+av, "eyJhbGciOiJub25lIn0.."); code != 200 {
		t.Fatal(code)
	}
	s3 := newService(t, f, dir)
	if code, out = do(t, s3, "POST", "/attest/SgxEnclave"+av, attestBody(dbg, nil, "")); code != 200 {
		t.Errorf("after reset: %d %v", code, out)
	}
}

func TestRegoPolicy(t *testing.T) {
	f := getFixture(t)
	s := newService(t, f, "")
	pol := "package cloister\n\ndefault allow := false\nallow if input[\"x-ms-sgx-is-debuggable\"] == false\nclaims := {\"tier\": \"gold\"} if allow\n"
	if code, out := do(t, s, "PUT", "/policies/SgxEnclave"+av, UnsignedPolicy(pol)); code != 200 {
		t.Fatalf("PUT: %d %v", code, out)
	}
	if code, _ := do(t, s, "POST", "/attest/SgxEnclave"+av, attestBody(quote(t, f, nil, true), nil, "")); code != 400 {
		t.Errorf("debug: %d", code)
	}
	code, out := do(t, s, "POST", "/attest/SgxEnclave"+av, attestBody(quote(t, f, nil, false), nil, ""))
	if code != 200 {
		t.Fatalf("%d %v", code, out)
	}
	tok, _, _ := jwt.NewParser().ParseUnverified(out["token"].(string), jwt.MapClaims{})
	if tok.Claims.(jwt.MapClaims)["tier"] != "gold" {
		t.Errorf("claims %v", tok.Claims)
	}
}

func TestConcurrentPolicyUpdates(t *testing.T) {
	f := getFixture(t)
	dir := t.TempDir()
	s := newService(t, f, dir)
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range 5 {
				text := fmt.Sprintf("version=1.0;\nauthorizationrules { => permit(); };\n// %d-%d\n", i, j)
				if code, out := do(t, s, "PUT", "/policies/SgxEnclave"+av, UnsignedPolicy(text)); code != 200 {
					t.Errorf("PUT: %d %v", code, out)
				}
				do(t, s, "GET", "/policies/SgxEnclave"+av, "")
			}
		}()
	}
	wg.Wait()
	// Whatever won is what a restarted service reads.
	s2 := newService(t, f, dir)
	if s.policies.get(TypeSgxEnclave).jws != s2.policies.get(TypeSgxEnclave).jws {
		t.Error("stored policy differs from the last published one")
	}
}

func TestDiscoveryAndHealth(t *testing.T) {
	f := getFixture(t)
	s := newService(t, f, "")
	code, out := do(t, s, "GET", "/.well-known/openid-configuration", "")
	if code != 200 || out["jwks_uri"] != "https://attest.test/certs" {
		t.Errorf("%d %v", code, out)
	}
	rec := httptest.NewRecorder()
	s.ServeHTTP(rec, httptest.NewRequest("GET", "/healthz", nil))
	if rec.Code != 200 {
		t.Error(rec.Code)
	}
	rec = httptest.NewRecorder()
	s.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if b, _ := io.ReadAll(rec.Body); !strings.Contains(string(b), "cloister_attest_requests_total") {
		t.Errorf("metrics: %s", b)
	}
}

// RS256 is the default (MAA's choice); its token validates with the x5c leaf.
func TestRS256Default(t *testing.T) {
	f := getFixture(t)
	s, err := New(Config{Platform: f.plat, Now: func() time.Time { return testNow }, TrustRoots: []*x509.Certificate{f.pki.Root}, Issuer: "https://a.test"})
	if err != nil {
		t.Fatal(err)
	}
	code, out := do(t, s, "POST", "/attest/SgxEnclave"+av, attestBody(quote(t, f, nil, false), nil, ""))
	if code != 200 {
		t.Fatalf("%d %v", code, out)
	}
	certs, err := s.Certificates()
	if err != nil {
		t.Fatal(err)
	}
	tok, err := jwt.Parse(out["token"].(string), func(*jwt.Token) (any, error) { return certs[0].PublicKey, nil },
		jwt.WithValidMethods([]string{"RS256"}), jwt.WithTimeFunc(func() time.Time { return testNow }))
	if err != nil {
		t.Fatal(err)
	}
	if c := tok.Claims.(jwt.MapClaims); c["tcb_status"] != evidence.StatusNotEvaluated {
		t.Errorf("without collateral tcb_status = %v", c["tcb_status"])
	}
	if _, err := New(Config{Platform: f.plat, Issuer: "x", Alg: "HS256"}); err == nil {
		t.Error("HS256 accepted")
	}
}

// A draft policy decides this one request, and its token is unsigned.
func TestDraftPolicyAndOpenEnclave(t *testing.T) {
	f := getFixture(t)
	s := newService(t, f, "")
	dbg := quote(t, f, nil, true)
	draft, _ := json.Marshal(denyDebug)
	if code, out := do(t, s, "POST", "/attest/SgxEnclave"+av, attestBody(dbg, nil, `,"draftPolicyForAttestation":`+string(draft))); code != 400 {
		t.Errorf("draft deny: %d %v", code, out)
	}
	code, out := do(t, s, "POST", "/attest/SgxEnclave"+av, attestBody(quote(t, f, nil, false), nil, `,"draftPolicyForAttestation":`+string(draft)))
	if code != 200 {
		t.Fatalf("draft permit: %d %v", code, out)
	}
	tok, _, err := jwt.NewParser().ParseUnverified(out["token"].(string), jwt.MapClaims{})
	if err != nil || tok.Header["alg"] != "none" {
		t.Errorf("draft token alg %v err %v", tok.Header["alg"], err)
	}
	// OpenEnclave: the same quote behind OE's 16-byte header, under "report".
	oe := append([]byte{1, 0, 0, 0, 2, 0, 0, 0}, make([]byte, 8)...)
	n := len(dbg)
	for i := range 8 {
		oe[8+i] = byte(uint64(n) >> (8 * i))
	}
	oe = append(oe, dbg...)
	body := fmt.Sprintf(`{"report":%q}`, base64.StdEncoding.EncodeToString(oe))
	if code, out := do(t, s, "POST", "/attest/OpenEnclave"+av, body); code != 200 {
		t.Errorf("OpenEnclave: %d %v", code, out)
	}
}

// Attestations racing policy updates always see a whole policy.
func TestAttestDuringPolicyUpdates(t *testing.T) {
	f := getFixture(t)
	s := newService(t, f, t.TempDir())
	q := quote(t, f, nil, false)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		for i := range 10 {
			pol := denyDebug
			if i%2 == 1 {
				pol = defaultSGXPolicy
			}
			do(t, s, "PUT", "/policies/SgxEnclave"+av, UnsignedPolicy(pol))
		}
	}()
	go func() {
		defer wg.Done()
		for range 10 {
			if code, out := do(t, s, "POST", "/attest/SgxEnclave"+av, attestBody(q, nil, "")); code != 200 {
				t.Errorf("%d %v", code, out)
			}
		}
	}()
	wg.Wait()
}

// TestMemberNamesIgnoreCaseOnly: "Quote" is the quote, but a member whose
// name differs by '_' or '-' is ignored, as encoding/json did: a request
// with "runtime_data" gets a token without any runtime binding.
func TestMemberNamesIgnoreCaseOnly(t *testing.T) {
	f := getFixture(t)
	s := newService(t, f, "")
	q := quote(t, f, []byte(`{"a":1}`), false)
	body := fmt.Sprintf(`{"Quote":%q,"runtime_data":{"data":"eA","data_type":"JSON"},"draft-policy-for-attestation":"x"}`,
		base64.RawURLEncoding.EncodeToString(q))
	code, out := do(t, s, "POST", "/attest/SgxEnclave"+av, body)
	if code != 200 {
		t.Fatalf("status %d: %v", code, out)
	}
	tok, _ := out["token"].(string)
	claims := jwt.MapClaims{}
	pt, _, err := jwt.NewParser().ParseUnverified(tok, claims)
	if err != nil {
		t.Fatal(err)
	}
	if pt.Method.Alg() != "ES256" || claims["x-ms-runtime"] != nil || claims["x-ms-sgx-ehd"] != nil {
		t.Errorf("alg %s, x-ms-runtime %v, x-ms-sgx-ehd %v: a delimiter-variant name was taken for a member", pt.Method.Alg(), claims["x-ms-runtime"], claims["x-ms-sgx-ehd"])
	}
}

// TestAtCapacity: with every attestation slot taken, a request waits
// QueueWait and is refused with 503 and Retry-After; once the slot frees,
// requests are served again.
func TestAtCapacity(t *testing.T) {
	f := getFixture(t)
	entered, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	s, err := New(Config{
		Platform: f.plat, Now: func() time.Time { return testNow }, TrustRoots: []*x509.Certificate{f.pki.Root},
		Collateral: func(context.Context, []byte) (*pcs.Bundle, error) {
			once.Do(func() { close(entered); <-release }) // the first attestation holds its slot
			return f.col, nil
		},
		Alg: "ES256", Issuer: "https://attest.test", MaxInFlight: 1, QueueWait: 20 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	body := attestBody(quote(t, f, nil, false), nil, "")
	first := make(chan int, 1)
	go func() {
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, httptest.NewRequest("POST", "/attest/SgxEnclave"+av, strings.NewReader(body)))
		first <- rec.Code
	}()
	<-entered
	rec := httptest.NewRecorder()
	s.ServeHTTP(rec, httptest.NewRequest("POST", "/attest/SgxEnclave"+av, strings.NewReader(body)))
	if rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Retry-After") == "" || !strings.Contains(rec.Body.String(), "capacity") {
		t.Errorf("at capacity: %d, Retry-After %q: %s", rec.Code, rec.Header().Get("Retry-After"), rec.Body)
	}
	close(release)
	if code := <-first; code != 200 {
		t.Errorf("the request holding the slot: %d", code)
	}
	if code, out := do(t, s, "POST", "/attest/SgxEnclave"+av, body); code != 200 {
		t.Errorf("after the slot freed: %d %v", code, out)
	}
}
