package kbs

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/cloister-dev/cloister/kv/kvtest"
	"github.com/cloister-dev/cloister/tee"
	"github.com/cloister-dev/cloister/tee/sim"
)

// Flipping any bit of any byte of an admin token's signature makes it
// fail, and a refused request changes nothing.
func TestAdminTokenSignatureByteFlips(t *testing.T) {
	e := newEnv(t)
	tok := e.adminToken(time.Hour)
	dot := strings.LastIndexByte(tok, '.')
	sig, err := base64.RawURLEncoding.DecodeString(tok[dot+1:])
	if err != nil || len(sig) != ed25519.SignatureSize {
		t.Fatalf("signature: %v, %d bytes", err, len(sig))
	}
	keys := e.srv.cfg.AdminKeys
	for i := range sig {
		for _, bit := range []byte{0x01, 0x80} {
			bad := append([]byte(nil), sig...)
			bad[i] ^= bit
			flipped := tok[:dot+1] + base64.RawURLEncoding.EncodeToString(bad)
			if err := checkAdminToken(flipped, keys, e.clock.now()); err == nil {
				t.Fatalf("byte %d bit %#x flipped: accepted", i, bit)
			}
		}
	}
	// One through HTTP: refused, and the resource is not stored.
	bad := []byte(tok)
	bad[dot+5] ^= 'A' ^ 'B'
	if bad[dot+5] == tok[dot+5] {
		bad[dot+5] = 'C'
	}
	code, b, _ := e.do("PUT", Prefix+"/resource/r/t/x", []byte("v"), map[string]string{"Authorization": "Bearer " + string(bad)})
	wantError(t, "flipped signature", code, b, 401, "AdminAuth")
	if _, err := e.store.Get(context.Background(), resourcePrefix+"r/t/x"); err == nil {
		t.Error("a refused PUT stored the resource")
	}
	if err := checkAdminToken(tok, keys, e.clock.now()); err != nil {
		t.Errorf("the unflipped token: %v", err)
	}
}

// Admin tokens other than a fresh EdDSA one from an admin key are refused.
func TestAdminTokenRefusals(t *testing.T) {
	e := newEnv(t)
	now := e.clock.now()
	_, stranger, _ := ed25519.GenerateKey(rand.Reader)
	sign := func(method jwt.SigningMethod, key any, claims jwt.MapClaims, hdr map[string]any) string {
		tk := jwt.NewWithClaims(method, claims)
		for k, v := range hdr {
			tk.Header[k] = v
		}
		s, err := tk.SignedString(key)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	ok := jwt.MapClaims{"iat": now.Unix(), "exp": now.Add(time.Hour).Unix()}
	for _, tc := range []struct {
		name string
		tok  string
	}{
		{"another key", sign(jwt.SigningMethodEdDSA, stranger, ok, nil)},
		{"HS256 with the public key as secret", sign(jwt.SigningMethodHS256, []byte(e.srv.cfg.AdminKeys[0]), ok, nil)},
		{"alg none", sign(jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, ok, nil)},
		{"expired", sign(jwt.SigningMethodEdDSA, e.admin, jwt.MapClaims{"iat": now.Add(-2 * time.Hour).Unix(), "exp": now.Add(-time.Hour).Unix()}, nil)},
		{"not yet valid", sign(jwt.SigningMethodEdDSA, e.admin, jwt.MapClaims{"iat": now.Unix(), "nbf": now.Add(time.Hour).Unix(), "exp": now.Add(2 * time.Hour).Unix()}, nil)},
		{"no exp", sign(jwt.SigningMethodEdDSA, e.admin, jwt.MapClaims{"iat": now.Unix()}, nil)},
		{"no iat", sign(jwt.SigningMethodEdDSA, e.admin, jwt.MapClaims{"exp": now.Add(time.Hour).Unix()}, nil)},
		{"lifetime too long", sign(jwt.SigningMethodEdDSA, e.admin, jwt.MapClaims{"iat": now.Unix(), "exp": now.Add(MaxAdminTokenLifetime + time.Hour).Unix()}, nil)},
		{"crit", sign(jwt.SigningMethodEdDSA, e.admin, ok, map[string]any{"crit": []string{"x"}})},
		{"garbage", "not.a.token"},
	} {
		code, b, _ := e.do("PUT", Prefix+"/resource/r/t/x", []byte("v"), map[string]string{"Authorization": "Bearer " + tc.tok})
		wantError(t, tc.name, code, b, 401, "AdminAuth")
	}
	for _, h := range []map[string]string{nil, {"Authorization": "Bearer"}, {"Authorization": "Token abc"}} {
		code, b, _ := e.do("PUT", Prefix+"/resource-policy", []byte(`{"policy":"eA"}`), h)
		wantError(t, "no or malformed Authorization", code, b, 401, "AdminAuth")
	}
	// Without admin keys, management is off.
	off := newEnv(t, func(c *Config) { c.AdminKeys = nil })
	code, b, _ := off.do("PUT", Prefix+"/resource/r/t/x", []byte("v"), map[string]string{"Authorization": "Bearer " + e.adminToken(time.Hour)})
	wantError(t, "management disabled", code, b, 401, "AdminAuth")
}

// Admin API: bad paths and policies are refused; a policy that does not
// compile never replaces the one in force.
func TestAdminRequestRefusals(t *testing.T) {
	e := newEnv(t)
	auth := map[string]string{"Authorization": "Bearer " + e.adminToken(time.Hour)}
	policy := func(s string) []byte {
		b, _ := json.Marshal(map[string]string{"policy": base64.StdEncoding.EncodeToString([]byte(s))})
		return b
	}
	for _, tc := range []struct {
		name, method, path string
		body               []byte
		code               int
		typ                string
	}{
		{"resource path with dot-dot", "PUT", "/resource/r/../x", []byte("v"), 404, "InvalidRequestPath"},
		{"resource path segment too long", "PUT", "/resource/r/t/" + strings.Repeat("a", MaxPathSegment+1), []byte("v"), 400, "InvalidRequestPath"},
		{"resource too large", "PUT", "/resource/r/t/x", make([]byte, MaxResourceSize+1), 413, "PayloadTooLarge"},
		{"policy not JSON", "PUT", "/resource-policy", []byte("{"), 400, "SerdeError"},
		{"policy not base64", "PUT", "/resource-policy", []byte(`{"policy":"!!"}`), 400, "SerdeError"},
		{"policy empty", "PUT", "/resource-policy", []byte(`{"policy":""}`), 400, "SerdeError"},
		{"policy unknown member", "PUT", "/resource-policy", []byte(`{"policy":"eA","x":1}`), 400, "SerdeError"},
		{"policy does not compile", "PUT", "/resource-policy", policy("package cloister\nallow if {"), 400, "PolicyEngine"},
		{"policy in another package", "PUT", "/resource-policy/r/t/x", policy("package policy\nallow := true"), 400, "PolicyEngine"},
		{"policy calls http.send", "PUT", "/resource-policy", policy("package cloister\nallow if { http.send({}) }"), 400, "PolicyEngine"},
		{"delete missing resource", "DELETE", "/resource/r/t/none", nil, 404, "ResourceNotFound"},
		{"get missing own policy", "GET", "/resource-policy/r/t/none", nil, 404, "PolicyNotFound"},
		{"unknown endpoint", "GET", "/nothing", nil, 404, "InvalidRequestPath"},
	} {
		code, b, _ := e.do(tc.method, Prefix+tc.path, tc.body, auth)
		if tc.code == 404 && tc.typ == "InvalidRequestPath" && code == 404 {
			continue // the mux may answer a cleaned path itself
		}
		wantError(t, tc.name, code, b, tc.code, tc.typ)
	}
	code, b, _ := e.do("GET", Prefix+"/resource-policy", nil, auth)
	var pb policyBody
	if code != 200 || json.Unmarshal(b, &pb) != nil {
		t.Fatalf("GET default policy: %d %s", code, b)
	}
	if text, _ := base64.StdEncoding.DecodeString(pb.Policy); string(text) != DefaultPolicy {
		t.Errorf("the default policy changed after refused uploads: %q", text)
	}
}

// Policies: the default one governs resources without their own; a
// resource's own overrides it; deleting it falls back; and a change takes
// effect for a session already attested (cached decisions are dropped).
func TestPolicyDefaultPerResourceAndChanges(t *testing.T) {
	e := newEnv(t)
	e.adminDo("PUT", Prefix+"/resource/r/t/a", []byte("A"))
	e.adminDo("PUT", Prefix+"/resource/r/t/b", []byte("B"))
	c := e.client(TeeSGX)
	c.handshake()
	get := func(path string) int { code, _ := c.get(path, false); return code }

	if get("r/t/a") != 403 {
		t.Error("the built-in default policy released a resource")
	}
	e.setPolicy("", allowTestApp)
	if get("r/t/a") != 200 || get("r/t/b") != 200 {
		t.Error("the default policy set by the admin does not govern")
	}
	e.setPolicy("r/t/b", `package cloister
allow if input.resource.path == "r/t/b"
allow if input.claims.tee == "sgx"`)
	if get("r/t/a") != 200 {
		t.Error("r/t/a: another resource's policy changed its outcome")
	}
	if get("r/t/b") != 200 {
		t.Error("r/t/b: its own policy allows by path")
	}
	e.setPolicy("r/t/b", "package cloister\nallow if input.claims.tee == \"sgx\"") // hardware only
	if get("r/t/b") != 403 {
		t.Error("r/t/b: its own policy (hardware only) did not override the default for a sim")
	}
	e.adminDo("DELETE", Prefix+"/resource-policy/r/t/b", nil)
	if get("r/t/b") != 200 {
		t.Error("r/t/b: after deleting its own policy the default does not govern")
	}
	e.setPolicy("", DefaultPolicy)
	if get("r/t/a") != 403 {
		t.Error("a cached allow outlived the policy change")
	}
	e.setPolicy("", allowTestApp)
	e.adminDo("DELETE", Prefix+"/resource/r/t/a", nil)
	if get("r/t/a") != 404 {
		t.Error("a deleted resource is still served")
	}
}

// The token key is kept in the sealed store: a restarted broker over the
// same store honours tokens issued before the restart.
func TestTokenKeySurvivesRestart(t *testing.T) {
	e := newEnv(t)
	e.setPolicy("", allowTestApp)
	e.adminDo("PUT", Prefix+"/resource/r/t/x", []byte("v"))
	c := e.client(TeeSGX)
	c.handshake()
	srv2, err := New(context.Background(), e.srv.cfg)
	if err != nil {
		t.Fatal(err)
	}
	if srv2.signer.kid != e.srv.signer.kid {
		t.Fatalf("kid %s after restart, was %s", srv2.signer.kid, e.srv.signer.kid)
	}
	e.srv.signer = srv2.signer
	code, body := c.get("r/t/x", true)
	if code != 200 {
		t.Fatalf("%d %s", code, body)
	}
	code, b, _ := e.do("GET", Prefix+"/token-jwks", nil, nil)
	var set struct{ Keys []map[string]string }
	if code != 200 || json.Unmarshal(b, &set) != nil || len(set.Keys) != 1 || set.Keys[0]["kid"] != srv2.signer.kid || set.Keys[0]["alg"] != "ES256" {
		t.Errorf("token-jwks: %d %s", code, b)
	}
}

// Cached decisions are shared only by grants with the same attested
// facts: once the test app's allow is cached, another app (another
// MRENCLAVE), a debug build of the same app, and the same app on another
// TEE are each decided on their own.
func TestDecisionCacheIsPerWorkload(t *testing.T) {
	e := newEnv(t)
	e.setPolicy("", allowTestApp)
	e.adminDo("PUT", Prefix+"/resource/r/t/x", []byte("v"))
	good := e.client(TeeSGX)
	good.handshake()
	if code, b := good.get("r/t/x", false); code != 200 {
		t.Fatalf("%d %s", code, b)
	}
	other := testApp
	other.MRENCLAVE[31] ^= 1
	debug := testApp
	debug.Debug = true
	for name, app := range map[string]sim.App{"another MRENCLAVE": other, "debug build": debug} {
		plat, err := sim.NewPlatform(e.pki, tee.KindSimSGX, app, nil)
		if err != nil {
			t.Fatal(err)
		}
		c := e.client(TeeSGX)
		c.plat = plat
		c.handshake()
		code, b := c.get("r/t/x", false)
		wantError(t, name, code, b, 403, "PolicyDeny")
		code, b = c.get("r/t/x", true)
		wantError(t, name+" (bearer)", code, b, 403, "PolicyDeny")
	}
	// A second session of the good app shares the decision and is served.
	again := e.client(TeeSGX)
	again.handshake()
	if code, b := again.get("r/t/x", true); code != 200 {
		t.Fatalf("%d %s", code, b)
	}
}

// Crash at each step of a management write: the host drops the commit
// before applying it, or applies it and then fails the call (the outcome
// is unknown to the broker). The request is refused (500), the broker
// reopens its store and keeps serving, and what it serves is a state the
// host holds durably: the new resource or policy if it landed, the old
// one if not, never a mix; a later write succeeds.
func TestManagementWriteCrashes(t *testing.T) {
	for _, tc := range []struct {
		name   string
		fault  kvtest.Fault
		landed bool
	}{
		{"dropped before", kvtest.FaultDropBefore, false},
		{"applied, then the call failed", kvtest.FaultDropAfter, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			e.setPolicy("", allowTestApp)
			e.adminDo("PUT", Prefix+"/resource/r/t/x", []byte("v1"))
			c := e.client(TeeSGX)
			c.handshake()

			e.backnd.FailNext(tc.fault)
			code, b, _ := e.do("PUT", Prefix+"/resource/r/t/x", []byte("v2"), map[string]string{"Authorization": "Bearer " + e.adminToken(time.Hour)})
			wantError(t, "PUT during the crash", code, b, 500, "Internal")
			want := "v1"
			if tc.landed {
				want = "v2"
			}
			code, body := c.get("r/t/x", false)
			if code != 200 {
				t.Fatalf("after the crash: %d %s", code, body)
			}
			if got := decryptJWE(t, body, c.priv); string(got) != want {
				t.Errorf("after the crash: %q, want %q", got, want)
			}

			e.backnd.FailNext(tc.fault)
			pb, _ := json.Marshal(map[string]string{"policy": base64.StdEncoding.EncodeToString([]byte(DefaultPolicy))})
			code, b, _ = e.do("PUT", Prefix+"/resource-policy", pb, map[string]string{"Authorization": "Bearer " + e.adminToken(time.Hour)})
			if code != 500 {
				t.Errorf("policy PUT during the crash: %d %s", code, b)
			}
			wantCode := 200
			if tc.landed {
				wantCode = 403 // the deny-all policy landed
			}
			if code, body := c.get("r/t/x", true); code != wantCode {
				t.Errorf("after the policy crash: %d %s, want %d", code, body, wantCode)
			}
			e.adminDo("PUT", Prefix+"/resource/r/t/x", []byte("v3"))
			e.setPolicy("", allowTestApp)
			if code, body := c.get("r/t/x", false); code != 200 || string(decryptJWE(t, body, c.priv)) != "v3" {
				t.Errorf("a write after recovery: %d", code)
			}
		})
	}
}

// MaxResourceSize is the limit the admin API states: a resource of exactly
// that size is stored and released whole (it fits one sealed kv record),
// one byte more is 413.
func TestResourceOfMaxSizeIsStoredAndReleased(t *testing.T) {
	e := newEnv(t)
	e.setPolicy("", allowTestApp)
	big := bytes.Repeat([]byte{0x5a}, MaxResourceSize)
	auth := map[string]string{"Authorization": "Bearer " + e.adminToken(time.Hour)}
	if code, b, _ := e.do("PUT", Prefix+"/resource/r/t/big", big, auth); code != 200 {
		t.Fatalf("PUT of %d bytes: %d %s", len(big), code, b)
	}
	c := e.client(TeeSGX)
	c.handshake()
	code, body := c.get("r/t/big", false)
	if code != 200 {
		t.Fatalf("GET: %d %.200s", code, body)
	}
	if got := decryptJWE(t, body, c.priv); !bytes.Equal(got, big) {
		t.Fatalf("released %d bytes, want the %d stored", len(got), len(big))
	}
	code, b, _ := e.do("PUT", Prefix+"/resource/r/t/big", append(big, 0), auth)
	wantError(t, "one byte over", code, b, 413, "PayloadTooLarge")
}
