package attest

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// FuzzSharedRecord feeds arbitrary values, as a hostile etcd could store
// them, to what a replica reads from the shared state: a peer's token key,
// the signer set and a policy. Nothing panics; the only key a replica
// publishes is one attested as its own code (here: only its own key, the
// seed); the signer set holds only the configured signer and the one it
// added by a signed request (the seed); a policy is usable only if the
// configured signer signed it.
func FuzzSharedRecord(f *testing.F) {
	fx := getFixture(f)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		f.Fatal(err)
	}
	mkCert := func(cn string, k *ecdsa.PrivateKey) *x509.Certificate {
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn},
			NotBefore: testNow.Add(-time.Hour), NotAfter: testNow.Add(time.Hour)}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
		if err != nil {
			f.Fatal(err)
		}
		c, _ := x509.ParseCertificate(der)
		return c
	}
	signerCert := mkCert("fuzz signer", key)
	otherKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	addedCert := mkCert("added", otherKey)
	sign := func(claims jwt.MapClaims) string {
		tok := jwt.NewWithClaims(jwt.SigningMethodES256, claims)
		tok.Header["x5c"] = []string{base64.StdEncoding.EncodeToString(signerCert.Raw)}
		out, err := tok.SignedString(key)
		if err != nil {
			f.Fatal(err)
		}
		return out
	}
	s, err := New(Config{Platform: fx.plat, Now: func() time.Time { return testNow }, Alg: "ES256", Issuer: "https://attest.test",
		TrustRoots: []*x509.Certificate{fx.pki.Root}, PolicySigners: []*x509.Certificate{signerCert}, InsecureAdmin: true})
	if err != nil {
		f.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	own := s.ring.Load().current()
	self, err := s.attestKey(ctx, own.jwk)
	if err != nil {
		f.Fatal(err)
	}
	r := &replica{s: s, recs: map[string]Record{}, verified: map[string]map[string]any{}, rejected: map[string]string{},
		self: self, appliedPolicy: map[string][2]int64{}}
	r.setSigners(s.cfg.PolicySigners, nil, 0)

	// Seeds: real records as replicas write them.
	ownJWK, _ := json.Marshal(own.jwk)
	keyRec, _ := json.Marshal(sharedKey{Owner: "peer", JWK: ownJWK})
	f.Add(uint8(0), keyRec)
	f.Add(uint8(0), ownJWK)
	addReq := sign(jwt.MapClaims{"policyCertificate": map[string]any{"kty": "EC", "x5c": []string{base64.StdEncoding.EncodeToString(addedCert.Raw)}}})
	signers, _ := json.Marshal([]sharedSigner{{Cert: signerCert.Raw}, {Cert: addedCert.Raw, AddedBy: addReq}})
	f.Add(uint8(1), signers)
	f.Add(uint8(2), []byte(sign(jwt.MapClaims{"AttestationPolicy": base64.RawURLEncoding.EncodeToString([]byte(defaultVMPolicy))})))
	f.Add(uint8(2), []byte(UnsignedPolicy(defaultVMPolicy)))

	// The seeds pass, so the properties below are not vacuous.
	if _, err := r.attestedJWK(ctx, own.kid, ownJWK); err != nil {
		f.Fatalf("own key refused: %v", err)
	}
	r.applySigners(ctx, Record{Key: keySigners, Value: signers, ModRev: 1})
	if n := len(r.signers.Load().certs); n != 2 {
		f.Fatalf("seed signer set: %d signers accepted, want 2", n)
	}
	r.setSigners(s.cfg.PolicySigners, nil, 0)

	f.Fuzz(func(t *testing.T, kind uint8, data []byte) {
		switch kind % 3 {
		case 0:
			var sk sharedKey
			raw := json.RawMessage(data)
			if json.Unmarshal(data, &sk) == nil && len(sk.JWK) > 0 {
				raw = sk.JWK
			}
			r.mu.Lock()
			clear(r.verified) // attest every input, not a cached kid
			r.mu.Unlock()
			for _, kid := range []string{own.kid, "other"} {
				jwk, err := r.attestedJWK(ctx, kid, raw)
				if err == nil && (kid != own.kid || jwk["kid"] != own.kid) {
					t.Fatalf("published key %v under kid %s from %q", jwk["kid"], kid, data)
				}
			}
		case 1:
			r.applySigners(ctx, Record{Key: keySigners, Value: data, ModRev: 1})
			for _, c := range r.signers.Load().certs {
				if !bytes.Equal(c.Raw, signerCert.Raw) && !bytes.Equal(c.Raw, addedCert.Raw) {
					t.Fatalf("signer %s accepted from %q", c.Subject, data)
				}
			}
			r.setSigners(s.cfg.PolicySigners, nil, 0)
		case 2:
			c, err := r.usablePolicy(ctx, string(data))
			if err == nil && !signerAllowed(c.signer, []*x509.Certificate{signerCert}) {
				t.Fatalf("policy usable without the signer's signature: %q", data)
			}
		}
	})
}
