package kbs

import (
	"context"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// Bad input to /auth is refused with a reason, and no session is made.
func TestAuthRefusals(t *testing.T) {
	e := newEnv(t)
	for _, tc := range []struct {
		name string
		body string
		code int
		typ  string
	}{
		{"not JSON", `{"version":`, 400, "SerdeError"},
		{"trailing data", `{"version":"0.4.0","tee":"sgx","extra-params":""} {}`, 400, "SerdeError"},
		{"duplicate member", `{"version":"0.4.0","tee":"sgx","tee":"tdx","extra-params":""}`, 400, "SerdeError"},
		{"old version", `{"version":"0.1.0","tee":"sgx","extra-params":""}`, 400, "SerdeError"},
		{"no version", `{"tee":"sgx","extra-params":""}`, 400, "SerdeError"},
		{"unknown tee", `{"version":"0.4.0","tee":"sample","extra-params":""}`, 400, "SerdeError"},
		{"no tee", `{"version":"0.4.0","extra-params":""}`, 400, "SerdeError"},
		{"no usable hash", `{"version":"0.4.0","tee":"sgx","extra-params":{"supported-hash-algorithms":["md5"]}}`, 400, "SerdeError"},
		{"oversized", `{"version":"0.4.0","tee":"sgx","extra-params":"` + strings.Repeat("a", MaxAuthBody) + `"}`, 413, "PayloadTooLarge"},
		{"tee-metadata names another primary", `{"version":"0.4.0","tee":"sgx","extra-params":{"tee-metadata":{"primary_tee":{"tee":"tdx"}}}}`, 400, "SerdeError"},
		{"tee-metadata lists device TEEs", `{"version":"0.4.0","tee":"tdx","extra-params":{"tee-metadata":{"primary_tee":{"tee":"tdx"},"additional_tees":[{"tee":"nvidia"}]}}}`, 400, "SerdeError"},
	} {
		code, body, resp := e.do("POST", Prefix+"/auth", []byte(tc.body), nil)
		wantError(t, tc.name, code, body, tc.code, tc.typ)
		if len(resp.Cookies()) != 0 {
			t.Errorf("%s: a refused /auth set a cookie", tc.name)
		}
	}
	if n := e.srv.sessions.len(); n != 0 {
		t.Errorf("%d sessions after refused /auth requests", n)
	}
	// Trustee's older clients send extra-params "" (no hash list): SHA-384;
	// tee-metadata naming the request's tee and no device is accepted.
	for _, body := range []string{`{"version":"0.4.0","tee":"sgx","extra-params":""}`,
		`{"version":"0.4.0","tee":"sgx","extra-params":{"tee-metadata":{"primary_tee":{"tee":"sgx","metadata":{}},"additional_tees":[]}}}`} {
		code, resp, _ := e.do("POST", Prefix+"/auth", []byte(body), nil)
		if code != 200 || !strings.Contains(string(resp), `"selected-hash-algorithm":"sha384"`) {
			t.Errorf("%s: %d %s", body, code, resp)
		}
	}
}

// Every bad /attest is a 4xx with a reason, never a token, and never a
// release afterwards on that session.
func TestAttestRefusals(t *testing.T) {
	e := newEnv(t)
	e.setPolicy("", `package cloister
allow := true`)
	e.adminDo("PUT", Prefix+"/resource/r/t/x", []byte("s"))

	type mk func(c *client) []byte
	good := func(c *client) []byte { return c.attestation(RuntimeData{Nonce: c.nonce, TeePubKey: c.pub}, c.plat) }
	otherKey := func(c *client) []byte {
		// The evidence binds key A; runtime-data claims key B.
		_, a := newECKey(t, elliptic.P256())
		digests, _ := BindingDigests(&RuntimeData{Nonce: c.nonce, TeePubKey: a}, "", c.hash)
		q, _ := c.plat.Evidence(context.Background(), digests[0])
		return attestationJSON(RuntimeData{Nonce: c.nonce, TeePubKey: c.pub}, map[string]any{"quote": base64.StdEncoding.EncodeToString(q)}, "")
	}
	otherHash := func(c *client) []byte {
		rd := RuntimeData{Nonce: c.nonce, TeePubKey: c.pub}
		digests, _ := BindingDigests(&rd, "", HashSHA256)
		q, _ := c.plat.Evidence(context.Background(), digests[0])
		return attestationJSON(rd, map[string]any{"quote": base64.StdEncoding.EncodeToString(q)}, "")
	}
	withPrimary := func(p any) mk {
		return func(c *client) []byte {
			return attestationJSON(RuntimeData{Nonce: c.nonce, TeePubKey: c.pub}, p, "")
		}
	}
	for _, tc := range []struct {
		name string
		tee  string
		body mk
		code int
		typ  string
	}{
		{"malformed JSON", TeeSGX, func(*client) []byte { return []byte(`{"runtime-data":`) }, 400, "SerdeError"},
		{"unknown member", TeeSGX, func(c *client) []byte {
			var m map[string]any
			json.Unmarshal(good(c), &m)
			m["extra"] = 1
			b, _ := json.Marshal(m)
			return b
		}, 400, "SerdeError"},
		{"wrong nonce", TeeSGX, func(c *client) []byte {
			rd := RuntimeData{Nonce: base64.StdEncoding.EncodeToString(make([]byte, 32)), TeePubKey: c.pub}
			return c.attestation(rd, c.plat)
		}, 401, "AttestationError"},
		{"evidence for another key", TeeSGX, otherKey, 401, "AttestationError"},
		{"binding with another hash than selected", TeeSGX, otherHash, 401, "AttestationError"},
		{"TDX quote in an sgx session", TeeSGX, func(c *client) []byte {
			return c.attestation(RuntimeData{Nonce: c.nonce, TeePubKey: c.pub}, e.tdx)
		}, 400, "SerdeError"},
		{"SGX quote in a tdx session", TeeTDX, func(c *client) []byte {
			return c.attestation(RuntimeData{Nonce: c.nonce, TeePubKey: c.pub}, e.sgx)
		}, 400, "SerdeError"},
		{"SNP report form in an sgx session", TeeSGX, withPrimary(map[string]any{"report": "AAAA", "vcek": "AAAA"}), 400, "SerdeError"},
		{"no evidence form", TeeSGX, withPrimary(map[string]any{}), 400, "SerdeError"},
		{"two evidence forms", TeeSGX, withPrimary(map[string]any{"quote": "AAAA", "tsm": "AAAA"}), 400, "SerdeError"},
		{"quote not base64", TeeSGX, withPrimary(map[string]any{"quote": "!!"}), 400, "SerdeError"},
		{"quote garbage", TeeSGX, withPrimary(map[string]any{"quote": base64.StdEncoding.EncodeToString([]byte("garbage"))}), 400, "SerdeError"},
		{"primary evidence not an object", TeeSGX, withPrimary("quote"), 400, "SerdeError"},
		{"device evidence", TeeSGX, func(c *client) []byte {
			return attestationJSON(RuntimeData{Nonce: c.nonce, TeePubKey: c.pub}, map[string]any{"quote": "AAAA"}, `{"nvidia":"x"}`)
		}, 400, "SerdeError"},
		{"RSA1_5 key", TeeSGX, func(c *client) []byte {
			_, k := newRSAKey(t)
			k.Alg = "RSA1_5"
			return attestationJSON(RuntimeData{Nonce: c.nonce, TeePubKey: k}, map[string]any{"quote": "AAAA"}, "")
		}, 400, "SerdeError"},
		{"RSA key of 1024 bits", TeeSGX, func(c *client) []byte {
			k, _ := rsa.GenerateKey(rand.Reader, 1024)
			pub := TeePubKey{Kty: "RSA", Alg: AlgRSAOAEP256, N: base64.RawURLEncoding.EncodeToString(k.N.Bytes()), E: "AQAB"}
			return attestationJSON(RuntimeData{Nonce: c.nonce, TeePubKey: pub}, map[string]any{"quote": "AAAA"}, "")
		}, 400, "SerdeError"},
		{"RSA exponent over 2^31-1 (no RSA-OAEP to it)", TeeSGX, func(c *client) []byte {
			// Properly bound by the evidence: the refusal must be the key's,
			// not a token whose every resource request then fails.
			_, k := newRSAKey(t)
			k.E = base64.RawURLEncoding.EncodeToString([]byte{0xff, 0xff, 0xff, 0xff})
			return c.attestation(RuntimeData{Nonce: c.nonce, TeePubKey: k}, c.plat)
		}, 400, "SerdeError"},
		{"tee-pubkey with an extra member", TeeSGX, func(c *client) []byte {
			b := string(c.attestation(RuntimeData{Nonce: c.nonce, TeePubKey: c.pub}, c.plat))
			return []byte(strings.Replace(b, `"kty":"EC"`, `"kty":"EC","use":"enc"`, 1))
		}, 400, "SerdeError"},
		{"EC point off the curve", TeeSGX, func(c *client) []byte {
			k := c.pub
			k.Y = k.X
			return attestationJSON(RuntimeData{Nonce: c.nonce, TeePubKey: k}, map[string]any{"quote": "AAAA"}, "")
		}, 400, "SerdeError"},
		{"oversized", TeeSGX, func(c *client) []byte {
			return attestationJSON(RuntimeData{Nonce: c.nonce, TeePubKey: c.pub}, map[string]any{"quote": strings.Repeat("A", MaxAttestBody)}, "")
		}, 413, "PayloadTooLarge"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := e.client(tc.tee)
			c.auth()
			code, body := c.attest(tc.body(c))
			wantError(t, tc.name, code, body, tc.code, tc.typ)
			if c.token != "" {
				t.Fatal("a token was issued")
			}
			code, body = c.get("r/t/x", false)
			wantError(t, tc.name+": resource after", code, body, 401, "TokenNotFound")
			// The challenge is spent: even good evidence now fails.
			code, body = c.attest(good(c))
			wantError(t, tc.name+": retry on the same session", code, body, 401, "AttestationError")
		})
	}
}

// A replayed Attestation (the same body again, on the same session or on
// a new one) gets no second token, and a session's challenge expires.
func TestAttestReplayAndExpiry(t *testing.T) {
	e := newEnv(t)
	c := e.client(TeeSGX)
	c.auth()
	body := c.attestation(RuntimeData{Nonce: c.nonce, TeePubKey: c.pub}, c.plat)
	if code, b := c.attest(body); code != 200 {
		t.Fatalf("%d %s", code, b)
	}
	code, b := c.attest(body)
	wantError(t, "replay on the same session", code, b, 401, "AttestationError")
	c2 := e.client(TeeSGX)
	c2.auth()
	code, b = c2.attest(body) // the nonce is the first session's
	wantError(t, "replay on a new session", code, b, 401, "AttestationError")

	c3 := e.client(TeeSGX)
	c3.auth()
	late := c3.attestation(RuntimeData{Nonce: c3.nonce, TeePubKey: c3.pub}, c3.plat)
	e.clock.advance(DefaultSessionLifetime)
	code, b = c3.attest(late)
	wantError(t, "expired session", code, b, 401, "AttestationError")

	noCookie := e.client(TeeSGX)
	code, b, _ = e.do("POST", Prefix+"/attest", body, nil)
	wantError(t, "no cookie", code, b, 401, "AttestationError")
	noCookie.cookie = "00112233445566778899aabbccddeeff"
	code, b = noCookie.attest(body)
	wantError(t, "unknown cookie", code, b, 401, "AttestationError")
}

// Evidence from a root the broker was not told to trust (the simulator's)
// never verifies.
func TestAttestUntrustedSimRoot(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.TrustRoots = nil; c.Collateral = nil })
	c := e.client(TeeSGX)
	c.auth()
	code, b := c.attest(c.attestation(RuntimeData{Nonce: c.nonce, TeePubKey: c.pub}, c.plat))
	wantError(t, "sim evidence without the sim root", code, b, 401, "AttestationError")
	if !strings.Contains(string(b), "untrusted root") {
		t.Errorf("the refusal does not say why: %s", b)
	}
}

// Resource requests: no credential, a bad or expired token, a session
// that expired, a denial, a missing resource, a bad path.
func TestResourceRefusals(t *testing.T) {
	e := newEnv(t)
	e.setPolicy("", allowTestApp)
	e.adminDo("PUT", Prefix+"/resource/r/t/x", []byte("s"))
	e.setPolicy("r/t/denied", "package cloister\nallow := false")
	e.adminDo("PUT", Prefix+"/resource/r/t/denied", []byte("s"))
	c := e.client(TeeSGX)
	c.handshake()

	code, b, _ := e.do("GET", Prefix+"/resource/r/t/x", nil, nil)
	wantError(t, "no credential", code, b, 401, "TokenNotFound")
	code, b, _ = e.do("GET", Prefix+"/resource/r/t/x", nil, map[string]string{"Authorization": "Basic abc"})
	wantError(t, "not a bearer", code, b, 401, "TokenVerifierError")
	tampered := c.token[:len(c.token)-4] + "AAAA"
	code, b, _ = e.do("GET", Prefix+"/resource/r/t/x", nil, map[string]string{"Authorization": "Bearer " + tampered})
	wantError(t, "tampered token", code, b, 401, "TokenVerifierError")
	code, b = c.get("r/t/denied", false)
	wantError(t, "policy denial", code, b, 403, "PolicyDeny")
	code, b = c.get("r/t/missing", false)
	wantError(t, "missing resource", code, b, 404, "ResourceNotFound")
	code, b = c.get("r/t/a%20b", false)
	wantError(t, "bad path", code, b, 400, "InvalidRequestPath")

	// Another broker's token (its own key) is refused.
	other := newEnv(t)
	oc := other.client(TeeSGX)
	oc.handshake()
	code, b, _ = e.do("GET", Prefix+"/resource/r/t/x", nil, map[string]string{"Authorization": "Bearer " + oc.token})
	wantError(t, "another broker's token", code, b, 401, "TokenVerifierError")

	e.clock.advance(DefaultTokenLifetime + time.Second)
	code, b = c.get("r/t/x", true)
	wantError(t, "expired token", code, b, 401, "TokenVerifierError")
	code, b = c.get("r/t/x", false)
	wantError(t, "expired session", code, b, 401, "TokenNotFound")
}

// Sessions are bounded: when the table is full and nothing has expired,
// /auth answers 503; once they expire, new sessions are made again.
func TestSessionTableBounded(t *testing.T) {
	e := newEnv(t)
	e.srv.sessions.max = 3
	for i := 0; i < 3; i++ {
		e.client(TeeSGX).auth()
	}
	code, b, _ := e.do("POST", Prefix+"/auth", authBody(TeeSGX), nil)
	wantError(t, "full table", code, b, 503, "ServiceUnavailable")
	e.clock.advance(DefaultSessionLifetime)
	e.client(TeeSGX).auth()
	if n := e.srv.sessions.len(); n != 1 {
		t.Errorf("%d sessions, want the expired ones dropped", n)
	}
}

// Liveness under overload: with every attestation slot taken, an /attest
// waits at most QueueWait and is refused with 503 and Retry-After (no
// token); once a slot frees, attestation works again.
func TestAttestAtCapacity(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.MaxInFlight = 1; c.QueueWait = time.Millisecond })
	e.srv.slots <- struct{}{} // an attestation in progress
	c := e.client(TeeSGX)
	c.auth()
	code, b, resp := e.do("POST", Prefix+"/attest", c.attestation(RuntimeData{Nonce: c.nonce, TeePubKey: c.pub}, c.plat),
		map[string]string{"Cookie": SessionCookie + "=" + c.cookie})
	wantError(t, "at capacity", code, b, 503, "ServiceUnavailable")
	if resp.Header.Get("Retry-After") == "" {
		t.Error("no Retry-After")
	}
	<-e.srv.slots
	c.handshake()
}
