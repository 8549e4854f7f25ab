package attest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"math/big"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// policySigner is a policy-signing certificate and its key.
type policySigner struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func newPolicySigner(t *testing.T, cn string) policySigner {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn},
		NotBefore: testNow.Add(-time.Hour), NotAfter: testNow.Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return policySigner{cert: cert, key: key}
}

// sign returns a compact ES256 JWS of claims with the signer in x5c.
func (p policySigner) sign(t *testing.T, claims jwt.Claims) string {
	t.Helper()
	tok := jwt.NewWithClaims(jwt.SigningMethodES256, claims)
	tok.Header["x5c"] = []string{base64.StdEncoding.EncodeToString(p.cert.Raw)}
	s, err := tok.SignedString(p.key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// In isolated mode only policy documents and resets signed by a configured
// signer are accepted; unsigned ones and other signers get 403.
func TestIsolatedMode(t *testing.T) {
	f := getFixture(t)
	good, other := newPolicySigner(t, "policy signer"), newPolicySigner(t, "someone else")
	s, err := New(Config{
		Platform: f.plat, Now: func() time.Time { return testNow }, Alg: "ES256", Issuer: "https://attest.test",
		PolicySigners: []*x509.Certificate{good.cert}, InsecureAdmin: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	av := "?api-version=2022-08-01"
	text := "version=1.0; authorizationrules { => permit(); }; issuancerules { };"
	doc := func(p policySigner) string {
		return p.sign(t, jwt.MapClaims{"AttestationPolicy": base64.RawURLEncoding.EncodeToString([]byte(text))})
	}
	for _, tc := range []struct {
		name, method, path, body string
		want                     int
	}{
		{"unsigned policy", "PUT", "/policies/SgxEnclave" + av, UnsignedPolicy(text), 403},
		{"policy of another signer", "PUT", "/policies/SgxEnclave" + av, doc(other), 403},
		{"policy of the configured signer", "PUT", "/policies/SgxEnclave" + av, doc(good), 200},
		{"unsigned reset", "POST", "/policies/SgxEnclave:reset" + av, "eyJhbGciOiJub25lIn0..", 403},
		{"reset by another signer", "POST", "/policies/SgxEnclave:reset" + av, other.sign(t, jwt.MapClaims{}), 403},
		{"reset by the configured signer", "POST", "/policies/SgxEnclave:reset" + av, good.sign(t, jwt.MapClaims{}), 200},
	} {
		if code, out := do(t, s, tc.method, tc.path, tc.body); code != tc.want {
			t.Errorf("%s: %d %v; want %d", tc.name, code, out, tc.want)
		}
	}
}

// Trusted signers are managed through /certificates with requests signed
// by a signer already trusted, and the set survives a restart.
func TestPolicySignerManagement(t *testing.T) {
	f := getFixture(t)
	good, other, stranger := newPolicySigner(t, "first"), newPolicySigner(t, "second"), newPolicySigner(t, "stranger")
	state := t.TempDir()
	newSvc := func() *Service {
		s, err := New(Config{
			Platform: f.plat, Now: func() time.Time { return testNow }, Alg: "ES256", Issuer: "https://attest.test",
			PolicySigners: []*x509.Certificate{good.cert}, StateDir: state, InsecureAdmin: true,
		})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	s := newSvc()
	certReq := func(by policySigner, c *x509.Certificate) string {
		return by.sign(t, jwt.MapClaims{"policyCertificate": map[string]any{"kty": "EC", "x5c": []string{base64.StdEncoding.EncodeToString(c.Raw)}}})
	}
	text := "version=1.0; authorizationrules { => permit(); }; issuancerules { };"
	doc := func(p policySigner) string {
		return p.sign(t, jwt.MapClaims{"AttestationPolicy": base64.RawURLEncoding.EncodeToString([]byte(text))})
	}
	steps := []struct {
		name, method, path, body string
		want                     int
	}{
		{"list", "GET", "/certificates" + av, "", 200},
		{"add by a stranger", "POST", "/certificates:add" + av, certReq(stranger, stranger.cert), 403},
		{"add unsigned", "POST", "/certificates:add" + av, UnsignedPolicy(text), 403},
		{"policy by the second signer, not yet trusted", "PUT", "/policies/SgxEnclave" + av, doc(other), 403},
		{"add the second signer", "POST", "/certificates:add" + av, certReq(good, other.cert), 200},
		{"policy by the second signer", "PUT", "/policies/SgxEnclave" + av, doc(other), 200},
		{"the second removes the first", "POST", "/certificates:remove" + av, certReq(other, good.cert), 200},
		{"policy by the removed signer", "PUT", "/policies/SgxEnclave" + av, doc(good), 403},
		{"removing the last signer", "POST", "/certificates:remove" + av, certReq(other, other.cert), 400},
		{"payload without a certificate", "POST", "/certificates:add" + av, other.sign(t, jwt.MapClaims{}), 400},
	}
	for _, st := range steps {
		if code, out := do(t, s, st.method, st.path, st.body); code != st.want {
			t.Errorf("%s: %d %v; want %d", st.name, code, out, st.want)
		}
	}
	// After a restart the second signer is the only trusted one.
	s2 := newSvc()
	if code, _ := do(t, s2, "PUT", "/policies/SgxEnclave"+av, doc(other)); code != 200 {
		t.Errorf("after restart, the added signer: %d", code)
	}
	if code, _ := do(t, s2, "PUT", "/policies/SgxEnclave"+av, doc(good)); code != 403 {
		t.Errorf("after restart, the removed signer: %d", code)
	}
	// Outside isolated mode there is nothing to manage.
	plain, err := New(Config{Platform: f.plat, Now: func() time.Time { return testNow }, Alg: "ES256", Issuer: "https://attest.test", InsecureAdmin: true})
	if err != nil {
		t.Fatal(err)
	}
	if code, _ := do(t, plain, "POST", "/certificates:add"+av, certReq(good, good.cert)); code != 400 {
		t.Errorf("add outside isolated mode: %d", code)
	}
}
