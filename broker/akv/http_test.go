package akv

import (
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// trapBody fails the test if the handler reads it.
type trapBody struct{ t *testing.T }

func (b trapBody) Read([]byte) (int, error) {
	b.t.Error("the body was read before the request was authorized")
	return 0, io.EOF
}

func (trapBody) Close() error { return nil }

func call(t *testing.T, v *Vault, method, path, token string, body io.Reader) (*httptest.ResponseRecorder, map[string]any) {
	t.Helper()
	r := httptest.NewRequest(method, path, body)
	if token != "" {
		r.Header.Set("Authorization", "Bearer "+token)
	}
	w := httptest.NewRecorder()
	v.ServeHTTP(w, r)
	var out map[string]any
	_ = json.Unmarshal(w.Body.Bytes(), &out)
	return w, out
}

// errorOf returns Azure's {"error": {"code", "message"}} of a response.
func errorOf(t *testing.T, out map[string]any) (string, string) {
	t.Helper()
	e, ok := out["error"].(map[string]any)
	if !ok {
		t.Fatalf("no error object in %v", out)
	}
	code, _ := e["code"].(string)
	msg, _ := e["message"].(string)
	if code == "" || msg == "" {
		t.Fatalf("error without code or message: %v", out)
	}
	return code, msg
}

// The first request of an Azure client, without Authorization, gets 401
// with the challenge before its body is read; a wrong token gets 401.
func TestChallengeBeforeBody(t *testing.T) {
	v, _ := newVault(t)
	r := httptest.NewRequest(http.MethodPost, "/keys/k/create?api-version=2025-07-01", nil)
	r.Body = trapBody{t}
	w := httptest.NewRecorder()
	v.ServeHTTP(w, r)
	if w.Code != 401 {
		t.Fatalf("no token: %d", w.Code)
	}
	want := `Bearer authorization="https://vault.cloister.test:9443", resource="https://cloister.test"`
	if got := w.Header().Get("WWW-Authenticate"); got != want {
		t.Fatalf("challenge %q, want %q", got, want)
	}
	for _, tok := range []string{"wrong", testToken + "x", strings.ToUpper(testToken)} {
		w, out := call(t, v, http.MethodGet, "/keys/k?api-version=7.4", tok, nil)
		if code, _ := errorOf(t, out); w.Code != 401 || code != "Unauthorized" || w.Header().Get("WWW-Authenticate") == "" {
			t.Fatalf("token %q: %d %v", tok, w.Code, out)
		}
	}
	r = httptest.NewRequest(http.MethodGet, "/keys/k?api-version=7.4", nil)
	r.Header.Set("Authorization", "Basic "+testToken)
	w = httptest.NewRecorder()
	v.ServeHTTP(w, r)
	if w.Code != 401 {
		t.Fatalf("Basic auth: %d", w.Code)
	}
}

func TestDefaultResource(t *testing.T) {
	for vault, want := range map[string]string{
		"https://vault.cloister.test:9443": "https://cloister.test",
		"https://127.0.0.1:8443":           "https://127.0.0.1:8443",
		"https://localhost":                "https://localhost",
		"https://[::1]:8443":               "https://[::1]:8443",
	} {
		v, _ := newVault(t)
		v2, err := New(Config{Store: v.cfg.Store, VaultURL: vault, AccessToken: "t", Signer: signerKey})
		if err != nil {
			t.Fatal(err)
		}
		if v2.resource != want {
			t.Errorf("%s: resource %s, want %s", vault, v2.resource, want)
		}
	}
}

// The REST face end to end: create, get (with and without a version, with
// the trailing slash the SDK sends), release; and every malformed request
// gets a 4xx with Azure's error shape and a reason.
func TestREST(t *testing.T) {
	v, _ := newVault(t)
	create := `{"kty":"RSA","key_size":2048,"attributes":{"exportable":true},"release_policy":{"contentType":"application/json; charset=utf-8","data":"` +
		base64.RawURLEncoding.EncodeToString([]byte(testPolicy)) + `"}}`
	w, out := call(t, v, http.MethodPost, "/keys/rest-key/create?api-version=2025-07-01", testToken, strings.NewReader(create))
	if w.Code != 200 || w.Header().Get("Content-Type") != "application/json; charset=utf-8" {
		t.Fatalf("create: %d %s", w.Code, w.Body)
	}
	kid := out["key"].(map[string]any)["kid"].(string)
	version := kid[strings.LastIndexByte(kid, '/')+1:]
	for _, p := range []string{"/keys/rest-key", "/keys/rest-key/", "/keys/rest-key/" + version} {
		w, out := call(t, v, http.MethodGet, p+"?api-version=7.0", testToken, nil)
		if w.Code != 200 || out["key"].(map[string]any)["kid"] != kid || out["attributes"].(map[string]any)["exportable"] != true {
			t.Fatalf("GET %s: %d %s", p, w.Code, w.Body)
		}
	}
	rel := `{"target":"` + mint(t, sgxClaims(&enclaveKey.PublicKey)) + `","enc":"RSA_AES_KEY_WRAP_256"}`
	for _, p := range []string{"/keys/rest-key/release", "/keys/rest-key/" + version + "/release"} {
		w, out := call(t, v, http.MethodPost, p+"?api-version=7.4", testToken, strings.NewReader(rel))
		if w.Code != 200 {
			t.Fatalf("release %s: %d %s", p, w.Code, w.Body)
		}
		if _, err := OpenRelease(out["value"].(string), &signerKey.PublicKey, enclaveKey); err != nil {
			t.Fatal(err)
		}
	}
	denied := `{"target":"` + mint(t, sgxClaims(&enclaveKey.PublicKey)) + `","nonce":"not-the-tokens"}`
	for _, tc := range []struct {
		method, path, body string
		status             int
		code, why          string
	}{
		{"GET", "/keys/rest-key", "", 400, "BadParameter", "api-version"},
		{"GET", "/keys/rest-key?api-version=7.9", "", 400, "BadParameter", "api-version"},
		{"POST", "/keys/rest-key/release?api-version=7.2", rel, 400, "BadParameter", "7.3 or later"},
		{"GET", "/secrets/x?api-version=7.4", "", 404, "NotFound", "/keys"},
		{"GET", "/keys/rest-key/" + version + "/wrapkey?api-version=7.4", "", 404, "NotFound", "wrapkey"},
		{"GET", "/keys/missing?api-version=7.4", "", 404, "KeyNotFound", "missing"},
		{"GET", "/keys/rest-key/0123?api-version=7.4", "", 404, "KeyNotFound", "0123"},
		{"DELETE", "/keys/rest-key?api-version=7.4", "", 405, "MethodNotAllowed", "GET"},
		{"GET", "/keys/rest-key/create?api-version=7.4", "", 405, "MethodNotAllowed", "POST"},
		{"POST", "/keys/k2/create?api-version=7.4", "", 400, "BadParameter", "no body"},
		{"POST", "/keys/k2/create?api-version=7.4", "{", 400, "BadParameter", "JSON"},
		{"POST", "/keys/k2/create?api-version=7.4", `{"kty":"RSA"} {}`, 400, "BadParameter", "JSON"},
		{"POST", "/keys/k2/create?api-version=7.4", `{"kty":"RSA","bogus":1}`, 400, "BadParameter", "bogus"},
		{"POST", "/keys/k2/create?api-version=7.4", `{"kty":"RSA","kty":"EC"}`, 400, "BadParameter", "duplicate"},
		{"POST", "/keys/k2/create?api-version=7.4", `{"kty":7}`, 400, "BadParameter", "kty"},
		{"POST", "/keys/k2/create?api-version=7.4", `{"kty":"RSA","key_size":"big"}`, 400, "BadParameter", "key_size"},
		{"POST", "/keys/k2/create?api-version=7.4", `{"kty":"RSA","key_size":1000}`, 400, "BadParameter", "key_size"},
		{"POST", "/keys/k2/create?api-version=7.4", `{"kty":"RSA","release_policy":{"data":"e30"}}`, 400, "BadParameter", "release_policy"},
		{"POST", "/keys/k2/create?api-version=7.4", `{"kty":"RSA","key_size":2048` + strings.Repeat(" ", MaxBody) + `}`, 413, "BadParameter", "over"},
		{"POST", "/keys/rest-key/release?api-version=7.4", `{"target":""}`, 400, "BadParameter", "target"},
		{"POST", "/keys/rest-key/release?api-version=7.4", `{"target":"x","enc":"none"}`, 400, "BadParameter", "enc"},
		{"POST", "/keys/rest-key/release?api-version=7.4", `{"target":"x.y.z"}`, 403, "Forbidden", "invalid"},
		{"POST", "/keys/rest-key/release?api-version=7.4", denied, 403, "Forbidden", "nonce"},
	} {
		var body io.Reader
		if tc.body != "" {
			body = strings.NewReader(tc.body)
		}
		w, out := call(t, v, tc.method, tc.path, testToken, body)
		code, msg := errorOf(t, out)
		if w.Code != tc.status || code != tc.code || !strings.Contains(msg, tc.why) {
			t.Errorf("%s %s %.40s: %d %s %q; want %d %s naming %q", tc.method, tc.path, tc.body, w.Code, code, msg, tc.status, tc.code, tc.why)
		}
	}
}
