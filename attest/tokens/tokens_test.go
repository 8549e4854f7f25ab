package tokens

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/cloister-dev/cloister/attest"
	"github.com/cloister-dev/cloister/tee"
	"github.com/cloister-dev/cloister/tee/sim"
)

var testNow = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)

// issued is a real token of a Cloister attestation service and its /certs.
type issued struct {
	token string
	jwks  []byte
}

var (
	issuedOnce sync.Once
	issuedBy   map[string]issued
	issuedErr  error
)

// serviceTokens runs the attestation service (sim-sgx) once per algorithm
// and keeps a policy-result token (a service-signed JWT like any other) and
// the service's JWKS.
func serviceTokens(t testing.TB) map[string]issued {
	t.Helper()
	issuedOnce.Do(func() {
		dir, err := os.MkdirTemp("", "tokens-sim-*")
		if err != nil {
			issuedErr = err
			return
		}
		defer os.RemoveAll(dir)
		pki, err := sim.Load(dir, rand.Reader, testNow.Add(-time.Hour))
		if err != nil {
			issuedErr = err
			return
		}
		plat, err := sim.NewPlatform(pki, tee.KindSimSGX, sim.App{MRENCLAVE: [32]byte{1}}, rand.Reader)
		if err != nil {
			issuedErr = err
			return
		}
		issuedBy = map[string]issued{}
		for _, alg := range []string{"RS256", "ES256"} {
			s, err := attest.New(attest.Config{Platform: plat, Now: func() time.Time { return testNow }, Alg: alg,
				Issuer: "https://attest.test", InsecureAdmin: true})
			if err != nil {
				issuedErr = err
				return
			}
			srv := httptest.NewServer(s)
			get := func(path string) []byte {
				resp, err := http.Get(srv.URL + path)
				if err != nil {
					issuedErr = err
					return nil
				}
				defer resp.Body.Close()
				b, _ := io.ReadAll(resp.Body)
				return b
			}
			var out struct{ Token string }
			_ = json.Unmarshal(get("/policies/SgxEnclave?api-version=2022-08-01"), &out)
			issuedBy[alg] = issued{token: out.Token, jwks: get("/certs")}
			srv.Close()
			s.Close()
		}
	})
	if issuedErr != nil {
		t.Fatal(issuedErr)
	}
	return issuedBy
}

func mustKeys(t testing.TB, jwks []byte) *KeySet {
	t.Helper()
	ks, err := ParseJWKS(jwks)
	if err != nil {
		t.Fatal(err)
	}
	return ks
}

func TestVerifyServiceTokens(t *testing.T) {
	for alg, is := range serviceTokens(t) {
		c, err := Verify(is.token, mustKeys(t, is.jwks), Options{Time: testNow, Issuer: "https://attest.test"})
		if err != nil {
			t.Fatalf("%s: %v", alg, err)
		}
		if c["x-ms-policy"] == nil || c["iss"] != "https://attest.test" {
			t.Errorf("%s: claims %v", alg, c)
		}
	}
}

// Flipping any bit of any byte of the header, payload or signature makes
// the token invalid.
func TestVerifyByteFlips(t *testing.T) {
	for alg, is := range serviceTokens(t) {
		ks := mustKeys(t, is.jwks)
		parts := strings.Split(is.token, ".")
		for p := range parts {
			raw, err := base64.RawURLEncoding.DecodeString(parts[p])
			if err != nil {
				t.Fatal(err)
			}
			for i := range raw {
				for _, bit := range []byte{0x01, 0x80} {
					flipped := append([]byte(nil), raw...)
					flipped[i] ^= bit
					q := append([]string(nil), parts...)
					q[p] = base64.RawURLEncoding.EncodeToString(flipped)
					if _, err := Verify(strings.Join(q, "."), ks, Options{Time: testNow}); err == nil {
						t.Fatalf("%s: part %d byte %d bit %#x flipped: accepted", alg, p, i, bit)
					}
				}
			}
		}
		// Non-canonical base64url (padding bits set in the last character)
		// is refused too, so one token has one encoding.
		sig := parts[2]
		last := strings.IndexByte("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_", sig[len(sig)-1])
		alt := sig[:len(sig)-1] + string("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"[last|1])
		if alt != sig {
			if _, err := Verify(parts[0]+"."+parts[1]+"."+alt, ks, Options{Time: testNow}); err == nil {
				t.Errorf("%s: non-canonical signature encoding accepted", alg)
			}
		}
	}
}

func TestVerifyRefusals(t *testing.T) {
	es := serviceTokens(t)["ES256"]
	rs := serviceTokens(t)["RS256"]
	esKeys, rsKeys := mustKeys(t, es.jwks), mustKeys(t, rs.jwks)
	kid := esKeys.Keys[0].ID
	header, _, _ := jwt.NewParser().ParseUnverified(es.token, jwt.MapClaims{})
	claims := header.Claims.(jwt.MapClaims)

	// alg none, and HS256 keyed with the public key's encodings: the
	// classic algorithm-confusion forgeries.
	none := jwt.NewWithClaims(jwt.SigningMethodNone, claims)
	none.Header["kid"] = kid
	noneTok, err := none.SignedString(jwt.UnsafeAllowNoneSignatureType)
	if err != nil {
		t.Fatal(err)
	}
	cert := esKeys.Keys[0].Certificate
	var hmacs []string
	for _, secret := range [][]byte{cert.Raw, cert.RawSubjectPublicKeyInfo, []byte(base64.StdEncoding.EncodeToString(cert.Raw))} {
		h := jwt.NewWithClaims(jwt.SigningMethodHS256, claims)
		h.Header["kid"] = kid
		s, err := h.SignedString(secret)
		if err != nil {
			t.Fatal(err)
		}
		hmacs = append(hmacs, s)
	}
	// A token signed by a stranger's RSA key under the EC key's kid, and
	// an ES384 token under the P-256 key's kid.
	stranger, _ := rsa.GenerateKey(rand.Reader, 2048)
	rsOther := jwt.NewWithClaims(jwt.SigningMethodRS256, claims)
	rsOther.Header["kid"] = kid
	rsOtherTok, _ := rsOther.SignedString(stranger)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	es384 := jwt.NewWithClaims(jwt.SigningMethodES384, claims)
	es384.Header["kid"] = kid
	es384Tok, _ := es384.SignedString(p384)
	// Unknown and missing kid.
	unknown := jwt.NewWithClaims(jwt.SigningMethodRS256, claims)
	unknown.Header["kid"] = "no-such-key"
	unknownTok, _ := unknown.SignedString(stranger)
	noKid, _ := jwt.NewWithClaims(jwt.SigningMethodRS256, claims).SignedString(stranger)

	exp := time.Unix(int64(claims["exp"].(float64)), 0)
	for _, tc := range []struct {
		name  string
		token string
		ks    *KeySet
		opts  Options
		want  error
	}{
		{"alg none", noneTok, esKeys, Options{Time: testNow}, jwt.ErrTokenSignatureInvalid},
		{"HS256 keyed with the certificate", hmacs[0], esKeys, Options{Time: testNow}, jwt.ErrTokenSignatureInvalid},
		{"HS256 keyed with the SPKI", hmacs[1], esKeys, Options{Time: testNow}, jwt.ErrTokenSignatureInvalid},
		{"HS256 keyed with the x5c text", hmacs[2], esKeys, Options{Time: testNow}, jwt.ErrTokenSignatureInvalid},
		{"RS256 under an EC key's kid", rsOtherTok, esKeys, Options{Time: testNow}, ErrKeyMismatch},
		{"ES384 under a P-256 key's kid", es384Tok, esKeys, Options{Time: testNow}, ErrKeyMismatch},
		{"unknown kid", unknownTok, rsKeys, Options{Time: testNow}, ErrUnknownKey},
		{"no kid", noKid, rsKeys, Options{Time: testNow}, ErrUnknownKey},
		{"another service's keys", es.token, rsKeys, Options{Time: testNow}, ErrUnknownKey},
		{"wrong issuer", es.token, esKeys, Options{Time: testNow, Issuer: "https://attest.test/"}, jwt.ErrTokenInvalidIssuer},
		{"expired", es.token, esKeys, Options{Time: exp.Add(time.Second)}, jwt.ErrTokenExpired},
		{"not yet valid", es.token, esKeys, Options{Time: testNow.Add(-time.Second)}, jwt.ErrTokenNotValidYet},
	} {
		_, err := Verify(tc.token, tc.ks, tc.opts)
		if !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
	if _, err := Verify(es.token, esKeys, Options{}); err == nil {
		t.Error("zero Options.Time accepted")
	}
	// At exp itself the token is still valid; one second later it is not
	// (checked above).
	if _, err := Verify(es.token, esKeys, Options{Time: exp.Add(-time.Second)}); err != nil {
		t.Errorf("just before exp: %v", err)
	}
}

func TestParseJWKSRefusals(t *testing.T) {
	es := serviceTokens(t)["ES256"]
	rs := serviceTokens(t)["RS256"]
	var esSet, rsSet struct{ Keys []map[string]any }
	if json.Unmarshal(es.jwks, &esSet) != nil || json.Unmarshal(rs.jwks, &rsSet) != nil {
		t.Fatal("bad fixture JWKS")
	}
	with := func(base map[string]any, change func(map[string]any)) string {
		k := map[string]any{}
		for n, v := range base {
			k[n] = v
		}
		change(k)
		b, _ := json.Marshal(map[string]any{"keys": []any{k}})
		return string(b)
	}
	ecKey, rsaKey := esSet.Keys[0], rsSet.Keys[0]
	for name, doc := range map[string]string{
		"not JSON":                     `{"keys":`,
		"trailing data":                string(es.jwks) + `{}`,
		"no keys":                      `{"keys":[]}`,
		"duplicate kid":                `{"keys":[` + string(mustJSON(ecKey)) + `,` + string(mustJSON(ecKey)) + `]}`,
		"no kid":                       with(ecKey, func(k map[string]any) { delete(k, "kid") }),
		"encryption key":               with(ecKey, func(k map[string]any) { k["use"] = "enc" }),
		"unknown kty":                  with(ecKey, func(k map[string]any) { k["kty"] = "oct" }),
		"kty RSA on an EC certificate": with(ecKey, func(k map[string]any) { k["kty"] = "RSA"; delete(k, "n"); delete(k, "e") }),
		"members disagree with x5c":    with(ecKey, func(k map[string]any) { k["x"] = rsaKey["n"] }),
		"x5c not a certificate":        with(ecKey, func(k map[string]any) { k["x5c"] = []string{"AAAA"} }),
		"RSA exponent 1":               with(rsaKey, func(k map[string]any) { delete(k, "x5c"); k["e"] = "AQ" }),
		"no key at all":                with(ecKey, func(k map[string]any) { delete(k, "x5c"); delete(k, "x"); delete(k, "y"); delete(k, "crv") }),
	} {
		if _, err := ParseJWKS([]byte(doc)); !errors.Is(err, ErrMalformedJWKS) {
			t.Errorf("%s: %v", name, err)
		}
	}
	// Key members alone (no x5c) are enough.
	noX5C := with(rsaKey, func(k map[string]any) { delete(k, "x5c") })
	if _, err := Verify(rs.token, mustKeys(t, []byte(noX5C)), Options{Time: testNow}); err != nil {
		t.Errorf("n/e without x5c: %v", err)
	}
}

func mustJSON(v any) []byte {
	b, _ := json.Marshal(v)
	return b
}

// The key of a JWK with a certificate is used only within the
// certificate's validity.
func TestVerifyCertificateValidity(t *testing.T) {
	es := serviceTokens(t)["ES256"]
	ks := mustKeys(t, es.jwks)
	var c *x509.Certificate = ks.Keys[0].Certificate
	if _, err := Verify(es.token, ks, Options{Time: c.NotAfter.Add(time.Second)}); err == nil || !strings.Contains(err.Error(), "signing certificate") {
		t.Errorf("after the certificate expired: %v", err)
	}
}

var update = flag.Bool("update", false, "rewrite testdata/cloister-* from a freshly started service")

// cloister-{es256,rs256}.{jwt,jwks.json} are a Cloister service's token
// and /certs, kept as files so the fuzz targets start without running the
// service (key generation takes seconds); -update rewrites them.
func TestCloisterFixtures(t *testing.T) {
	for alg, is := range serviceTokens(t) {
		base := "testdata/cloister-" + strings.ToLower(alg)
		if *update {
			if err := os.WriteFile(base+".jwt", []byte(is.token+"\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(base+".jwks.json", is.jwks, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		tok, jwks := readFixture(t, base+".jwt"), readFixture(t, base+".jwks.json")
		if _, err := Verify(string(tok), mustKeys(t, jwks), Options{Time: testNow}); err != nil {
			t.Errorf("%s fixture: %v", alg, err)
		}
	}
}

func readFixture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func FuzzParseJWKS(f *testing.F) {
	for _, name := range []string{"cloister-es256", "cloister-rs256", "maa-sharedwus-2021-05-26"} {
		f.Add(readFixture(f, "testdata/"+name+".jwks.json"))
	}
	f.Add([]byte(`{"keys":[{"kty":"EC","kid":"a","crv":"P-256","x":"","y":""}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		ks, err := ParseJWKS(data)
		if err != nil {
			return
		}
		for _, k := range ks.Keys {
			if k.ID == "" || k.Public == nil {
				t.Fatalf("accepted key without id or public key: %+v", k)
			}
		}
	})
}

func FuzzVerify(f *testing.F) {
	ks := mustKeys(f, readFixture(f, "testdata/cloister-es256.jwks.json"))
	good := strings.TrimSpace(string(readFixture(f, "testdata/cloister-es256.jwt")))
	f.Add(good)
	f.Add(strings.TrimSpace(string(readFixture(f, "testdata/cloister-rs256.jwt"))))
	f.Add(strings.TrimSpace(string(readFixture(f, "testdata/maa-sharedwus-2021-05-26.jwt"))))
	f.Fuzz(func(t *testing.T, token string) {
		claims, err := Verify(token, ks, Options{Time: testNow})
		// Only the service's own token verifies; white space around it
		// is the one accepted variation.
		if err == nil && strings.TrimSpace(token) != good {
			t.Fatalf("a token the service did not sign verified: %q -> %v", token, claims)
		}
	})
}

// A real token of Microsoft Azure Attestation (testdata/README.md) verifies
// against MAA's own /certs key, at a time within its validity and with its
// issuer, and fails on every kind of tampering.
func TestVerifyMAAToken(t *testing.T) {
	tok, err := os.ReadFile("testdata/maa-sharedwus-2021-05-26.jwt")
	if err != nil {
		t.Fatal(err)
	}
	jwks, err := os.ReadFile("testdata/maa-sharedwus-2021-05-26.jwks.json")
	if err != nil {
		t.Fatal(err)
	}
	ks := mustKeys(t, jwks)
	at := time.Date(2021, 5, 26, 23, 30, 0, 0, time.UTC)
	const iss = "https://sharedwus.wus.attest.azure.net"
	token := strings.TrimSpace(string(tok))
	c, err := Verify(token, ks, Options{Time: at, Issuer: iss})
	if err != nil {
		t.Fatal(err)
	}
	col, _ := c["x-ms-sgx-collateral"].(map[string]any)
	if c["x-ms-attestation-type"] != "sgx" || col["quotehash"] != "af0e05631c145d7dc1a33b214d43c6aa34a7859622a0ac7d880ab7b24e2f18d2" {
		t.Errorf("claims: type %v collateral %v", c["x-ms-attestation-type"], col)
	}
	// MAA names the same digest for both issuing chains and both CRLs, as
	// docs/maa-contract.md's definitions (one signing chain, one root CRL)
	// predict.
	if col["qeidcertshash"] != col["tcbinfocertshash"] || col["qeidcrlhash"] != col["tcbinfocrlhash"] {
		t.Errorf("collateral digests: %v", col)
	}
	if _, err := Verify(token, ks, Options{Time: at, Issuer: iss + "/"}); !errors.Is(err, jwt.ErrTokenInvalidIssuer) {
		t.Errorf("wrong issuer: %v", err)
	}
	if _, err := Verify(token, ks, Options{Time: time.Unix(1622100126, 0).Add(time.Second)}); !errors.Is(err, jwt.ErrTokenExpired) {
		t.Errorf("after exp: %v", err)
	}
	parts := strings.Split(token, ".")
	for p := range parts {
		raw, _ := base64.RawURLEncoding.DecodeString(parts[p])
		for _, i := range []int{0, len(raw) / 2, len(raw) - 1} {
			flipped := append([]byte(nil), raw...)
			flipped[i] ^= 0x20
			q := append([]string(nil), parts...)
			q[p] = base64.RawURLEncoding.EncodeToString(flipped)
			if _, err := Verify(strings.Join(q, "."), ks, Options{Time: at}); err == nil {
				t.Errorf("part %d byte %d flipped: accepted", p, i)
			}
		}
	}
}

// A JWS whose protected header lists critical extensions must be refused
// by a recipient that understands none of them (RFC 7515 §4.1.11); a
// malformed crit is refused too. Signed with the key the set names, so only
// the crit header can be why.
func TestVerifyRefusesCrit(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ks := &KeySet{Keys: []Key{{ID: "k", Public: &key.PublicKey}}}
	sign := func(crit any) string {
		tok := jwt.NewWithClaims(jwt.SigningMethodES256, jwt.MapClaims{"iss": "https://attest.test", "exp": testNow.Add(time.Hour).Unix()})
		tok.Header["kid"] = "k"
		if crit != nil {
			tok.Header["crit"] = crit
			tok.Header["x-must-understand"] = true
		}
		s, err := tok.SignedString(key)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	if _, err := Verify(sign(nil), ks, Options{Time: testNow}); err != nil {
		t.Fatalf("the same token without crit: %v", err)
	}
	for _, crit := range []any{[]string{"x-must-understand"}, []string{"b64"}, []string{}, "x-must-understand", 1} {
		if _, err := Verify(sign(crit), ks, Options{Time: testNow}); !errors.Is(err, ErrCritical) {
			t.Errorf("crit %v: %v, want ErrCritical", crit, err)
		}
	}
}

// The RSA bounds apply however the key arrives: a 1024-bit key in x5c is
// refused just as 1024-bit n/e members are (a set must not carry a key
// weaker than the ones it refuses in the other form).
func TestParseJWKSWeakRSAInX5C(t *testing.T) {
	weak, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: testNow.Add(-time.Hour), NotAfter: testNow.Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &weak.PublicKey, weak)
	if err != nil {
		t.Fatal(err)
	}
	x5c := base64.StdEncoding.EncodeToString(der)
	members := map[string]any{"kty": "RSA", "kid": "weak", "n": base64.RawURLEncoding.EncodeToString(weak.N.Bytes()), "e": "AQAB"}
	for name, k := range map[string]map[string]any{
		"x5c only":        {"kty": "RSA", "kid": "weak", "x5c": []string{x5c}},
		"members only":    members,
		"members and x5c": {"kty": "RSA", "kid": "weak", "n": members["n"], "e": "AQAB", "x5c": []string{x5c}},
	} {
		if _, err := ParseJWKS(mustJSON(map[string]any{"keys": []any{k}})); !errors.Is(err, ErrMalformedJWKS) {
			t.Errorf("%s: 1024-bit RSA key: %v", name, err)
		}
	}
}
