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
		PolicySigners: []*x509.Certificate{good.cert},
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
