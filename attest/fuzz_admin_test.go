package attest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// FuzzManagementRequest sends arbitrary bodies, bare or as the JSON string
// literals @azure/attestation sends, to the management endpoints of an
// isolated service (authenticated caller): nothing panics or is a 5xx, and
// the trusted signer set never changes unless the body was signed by the
// trusted signer.
func FuzzManagementRequest(f *testing.F) {
	fx := getFixture(f)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		f.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "fuzz signer"},
		NotBefore: testNow.Add(-time.Hour), NotAfter: testNow.Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		f.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	const token = "fuzz-admin-token"
	s, err := New(Config{Platform: fx.plat, Now: func() time.Time { return testNow }, Alg: "ES256", Issuer: "https://attest.test",
		PolicySigners: []*x509.Certificate{cert}, AdminToken: token})
	if err != nil {
		f.Fatal(err)
	}
	signed := func(claims jwt.MapClaims) string {
		tok := jwt.NewWithClaims(jwt.SigningMethodES256, claims)
		tok.Header["x5c"] = []string{base64.StdEncoding.EncodeToString(der)}
		out, err := tok.SignedString(key)
		if err != nil {
			f.Fatal(err)
		}
		return out
	}
	literal := func(s string) string { b, _ := json.Marshal(s); return string(b) }
	policy := signed(jwt.MapClaims{"AttestationPolicy": base64.RawURLEncoding.EncodeToString([]byte("version=1.0; authorizationrules { => permit(); };"))})
	addSelf := signed(jwt.MapClaims{"policyCertificate": map[string]any{"kty": "EC", "x5c": []string{base64.StdEncoding.EncodeToString(der)}}})
	for _, seed := range []struct {
		route uint8
		body  string
	}{
		{0, policy}, {0, literal(policy)}, {0, UnsignedPolicy("version=1.0; authorizationrules { => permit(); };")},
		{1, signed(jwt.MapClaims{})}, {1, literal("eyJhbGciOiJub25lIn0..")},
		{2, addSelf}, {2, literal(addSelf)}, {3, literal(addSelf)},
		{2, `"\u0065yJ"`}, {2, `"` + addSelf}, {3, `""`}, {0, `"a.b.c" trailing`},
	} {
		f.Add(seed.route, seed.body)
	}
	routes := []string{"PUT /policies/SgxEnclave", "POST /policies/SgxEnclave:reset", "POST /certificates:add", "POST /certificates:remove"}
	f.Fuzz(func(t *testing.T, route uint8, body string) {
		method, path, _ := strings.Cut(routes[int(route)%len(routes)], " ")
		rec := httptest.NewRecorder()
		r := httptest.NewRequest(method, path+av, strings.NewReader(body))
		r.Header.Set("Authorization", "Bearer "+token)
		s.ServeHTTP(rec, r)
		if rec.Code >= 500 {
			t.Fatalf("%s: status %d: %s", path, rec.Code, rec.Body)
		}
		if got := s.signers.snapshot(); len(got) != 1 || !got[0].Equal(cert) {
			t.Fatalf("%s %q changed the signer set to %d certificates", path, body, len(got))
		}
	})
}
