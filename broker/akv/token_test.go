package akv

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

func auths() map[string]Authority {
	return map[string]Authority{mustNormalize(testIssuer): testAuthority()}
}

func TestVerifyTokenAccepts(t *testing.T) {
	testKeys(t)
	tok, err := verifyToken(context.Background(), mint(t, sgxClaims(&enclaveKey.PublicKey)), auths(), testNow)
	if err != nil {
		t.Fatal(err)
	}
	if tok.issuer != testIssuer || tok.claims["x-ms-attestation-type"] != "sim-sgx" {
		t.Fatalf("verified %+v", tok)
	}
}

// Every refusal is typed: untrusted issuer, bad token, expired.
func TestVerifyTokenRefuses(t *testing.T) {
	testKeys(t)
	ctx := context.Background()
	with := func(mod func(jwt.MapClaims)) jwt.MapClaims {
		c := sgxClaims(&enclaveKey.PublicKey)
		mod(c)
		return c
	}
	signed := func(m jwt.SigningMethod, key any, hdr map[string]any, c jwt.MapClaims) string {
		tk := jwt.NewWithClaims(m, c)
		tk.Header["kid"] = testKid
		for k, v := range hdr {
			tk.Header[k] = v
		}
		s, err := tk.SignedString(key)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	pubDER, _ := x509.MarshalPKIXPublicKey(&authorityKey.PublicKey)
	for _, tc := range []struct {
		name  string
		token string
		want  error
	}{
		{"untrusted issuer", mint(t, with(func(c jwt.MapClaims) { c["iss"] = "https://evil.test" })), ErrUntrustedIssuer},
		{"issuer lookalike", mint(t, with(func(c jwt.MapClaims) { c["iss"] = "https://attest.test:8443.evil" })), ErrUntrustedIssuer},
		{"no issuer", mint(t, with(func(c jwt.MapClaims) { delete(c, "iss") })), ErrUntrustedIssuer},
		{"expired", mint(t, with(func(c jwt.MapClaims) { c["exp"] = testNow.Add(-time.Second).Unix() })), ErrTokenExpired},
		{"expires now", mint(t, with(func(c jwt.MapClaims) { c["exp"] = testNow.Unix() })), ErrTokenExpired},
		{"not yet valid", mint(t, with(func(c jwt.MapClaims) { c["nbf"] = testNow.Add(time.Minute).Unix() })), ErrTokenExpired},
		{"no exp", mint(t, with(func(c jwt.MapClaims) { delete(c, "exp") })), ErrTokenExpired},
		{"unknown kid", signed(jwt.SigningMethodRS256, authorityKey, map[string]any{"kid": "other"}, sgxClaims(&enclaveKey.PublicKey)), ErrBadToken},
		{"no kid", signed(jwt.SigningMethodRS256, authorityKey, map[string]any{"kid": nil}, sgxClaims(&enclaveKey.PublicKey)), ErrBadToken},
		{"crit", signed(jwt.SigningMethodRS256, authorityKey, map[string]any{"crit": []string{"exp"}}, sgxClaims(&enclaveKey.PublicKey)), ErrBadToken},
		{"another key", signed(jwt.SigningMethodRS256, otherKey, nil, sgxClaims(&enclaveKey.PublicKey)), ErrBadToken},
		{"EC key under the RSA kid", signed(jwt.SigningMethodES256, ec, nil, sgxClaims(&enclaveKey.PublicKey)), ErrBadToken},
		{"HMAC with the public key", signed(jwt.SigningMethodHS256, pubDER, nil, sgxClaims(&enclaveKey.PublicKey)), ErrBadToken},
		{"alg none", signed(jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, nil, sgxClaims(&enclaveKey.PublicKey)), ErrBadToken},
		{"not a JWT", "not.a.jwt", ErrBadToken},
		{"empty", "", ErrBadToken},
		{"oversized", strings.Repeat("a", MaxToken+1), ErrBadToken},
	} {
		_, err := verifyToken(ctx, tc.token, auths(), testNow)
		if !errors.Is(err, tc.want) {
			t.Errorf("%s: got %v, want %v", tc.name, err, tc.want)
		}
	}
}

// Byte flips: any changed byte of the header, payload or signature of a
// valid token makes it refused (never accepted with other claims).
func TestVerifyTokenByteFlips(t *testing.T) {
	testKeys(t)
	tok := mint(t, sgxClaims(&enclaveKey.PublicKey))
	parts := strings.Split(tok, ".")
	sig, _ := base64.RawURLEncoding.DecodeString(parts[2])
	for i := range sig {
		flipped := append([]byte(nil), sig...)
		flipped[i] ^= 0x01
		bad := parts[0] + "." + parts[1] + "." + base64.RawURLEncoding.EncodeToString(flipped)
		if _, err := verifyToken(context.Background(), bad, auths(), testNow); !errors.Is(err, ErrBadToken) {
			t.Fatalf("signature byte %d flipped: %v", i, err)
		}
	}
	for p := range 2 {
		raw, _ := base64.RawURLEncoding.DecodeString(parts[p])
		for i := range raw {
			flipped := append([]byte(nil), raw...)
			flipped[i] ^= 0x01
			mod := append([]string(nil), parts...)
			mod[p] = base64.RawURLEncoding.EncodeToString(flipped)
			if _, err := verifyToken(context.Background(), strings.Join(mod, "."), auths(), testNow); err == nil {
				t.Fatalf("part %d byte %d flipped: accepted", p, i)
			}
		}
	}
}

// RemoteKeys fetches the JWKS over TLS, refetches on an unknown kid (key
// rotation) at most once per MinRefresh, and fails closed when the
// authority is unreachable.
func TestRemoteKeysAndDiscovery(t *testing.T) {
	testKeys(t)
	der, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{SerialNumber: bigOne(), NotAfter: testNow.Add(time.Hour)},
		&x509.Certificate{SerialNumber: bigOne()}, &authorityKey.PublicKey, authorityKey)
	if err != nil {
		t.Fatal(err)
	}
	jwks := `{"keys":[{"kid":"` + testKid + `","kty":"RSA","use":"sig","x5c":["` + base64.StdEncoding.EncodeToString(der) + `"]}]}`
	fetches := 0
	var srv *httptest.Server
	srv = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/.well-known/openid-configuration":
			w.Write([]byte(`{"issuer":"` + srv.URL + `","jwks_uri":"` + srv.URL + `/certs"}`))
		case "/certs":
			fetches++
			w.Write([]byte(jwks))
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	now := testNow
	clock := func() time.Time { return now }
	a, err := DiscoveredAuthority(srv.URL, srv.Client(), clock)
	if err != nil {
		t.Fatal(err)
	}
	claims := sgxClaims(&enclaveKey.PublicKey)
	claims["iss"] = srv.URL
	tok := mint(t, claims)
	m := map[string]Authority{mustNormalize(srv.URL): a}
	for range 3 {
		if _, err := verifyToken(context.Background(), tok, m, now); err != nil {
			t.Fatal(err)
		}
	}
	if fetches != 1 {
		t.Fatalf("%d JWKS fetches for three tokens of one kid, want 1", fetches)
	}
	if _, err := a.Keys.Key(context.Background(), "rotated"); !errors.Is(err, ErrUnknownKey) || fetches != 1 {
		t.Fatalf("unknown kid within MinRefresh: %v, %d fetches", err, fetches)
	}
	now = now.Add(time.Minute)
	if _, err := a.Keys.Key(context.Background(), "rotated"); !errors.Is(err, ErrUnknownKey) || fetches != 2 {
		t.Fatalf("unknown kid after MinRefresh: %v, %d fetches (want a refetch)", err, fetches)
	}
	// A client that does not trust the authority's certificate gets no keys.
	b, _ := DiscoveredAuthority(srv.URL, http.DefaultClient, clock)
	if _, err := b.Keys.Key(context.Background(), testKid); err == nil {
		t.Fatal("keys fetched over TLS the client does not trust")
	}
	// http and a discovery document naming another issuer are refused.
	if _, err := DiscoveredAuthority("http://attest.test", nil, clock); err == nil {
		t.Fatal("http authority accepted")
	}
	if _, err := discover(context.Background(), srv.Client(), "https://other.test"); err == nil {
		t.Fatal("discovery of an unreachable issuer succeeded")
	}
}

func TestParseJWKS(t *testing.T) {
	testKeys(t)
	n := base64.RawURLEncoding.EncodeToString(authorityKey.N.Bytes())
	for _, tc := range []struct {
		doc string
		ok  bool
	}{
		{`{"keys":[{"kid":"a","kty":"RSA","n":"` + n + `","e":"AQAB"}]}`, true},
		{`{"keys":[{"kid":"a","kty":"RSA","use":"enc","n":"` + n + `","e":"AQAB"}]}`, false}, // no signing key
		{`{"keys":[{"kty":"RSA","n":"` + n + `","e":"AQAB"}]}`, false},
		{`{"keys":[{"kid":"a","kty":"RSA","n":"` + n + `","e":"AQAB"},{"kid":"a","kty":"RSA","n":"` + n + `","e":"AQAB"}]}`, false},
		{`{"keys":[{"kid":"a","kty":"RSA","n":"` + n + `","e":"AAAC"}]}`, false},
		{`{"keys":[{"kid":"a","kty":"EC","crv":"P-256","x":"AA","y":"AA"}]}`, false},
		{`{"keys":[{"kid":"a","kty":"RSA","x5c":["bm90IGEgY2VydA=="]}]}`, false},
		{`{"keys":[]}`, false},
		{`not json`, false},
	} {
		_, err := ParseJWKS([]byte(tc.doc))
		if tc.ok != (err == nil) {
			t.Errorf("%.70s: %v, want ok=%v", tc.doc, err, tc.ok)
		}
	}
}
