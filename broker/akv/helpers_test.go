package akv

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/cloister-dev/cloister/kv"
	"github.com/cloister-dev/cloister/kv/kvtest"
)

// testNow is the fixed clock of the tests.
var testNow = time.Date(2026, 12, 6, 9, 0, 0, 0, time.UTC)

const (
	testIssuer = "https://attest.test:8443"
	testKid    = "authority-key-1"
	testToken  = "the-access-token"
)

var (
	keysOnce sync.Once
	// authorityKey signs the test authority's tokens; enclaveKey and
	// otherKey are enclave transfer keys; signerKey signs release results.
	authorityKey, enclaveKey, otherKey, signerKey *rsa.PrivateKey
)

func testKeys(t testing.TB) {
	t.Helper()
	keysOnce.Do(func() {
		for _, k := range []**rsa.PrivateKey{&authorityKey, &enclaveKey, &otherKey, &signerKey} {
			var err error
			if *k, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
				panic(err)
			}
		}
	})
}

// runtimeJWK is the x-ms-runtime keys entry of pub.
func runtimeJWK(kid string, pub *rsa.PublicKey) map[string]any {
	return map[string]any{"kid": kid, "kty": "RSA", "key_ops": []any{"encrypt"},
		"n": base64.RawURLEncoding.EncodeToString(pub.N.Bytes()),
		"e": base64.RawURLEncoding.EncodeToString(big.NewInt(int64(pub.E)).Bytes())}
}

// sgxClaims are the claims of a sim-sgx token as Cloister's attestation
// service issues them, with pub as the runtime key.
func sgxClaims(pub *rsa.PublicKey) jwt.MapClaims {
	return jwt.MapClaims{
		"iss": testIssuer, "iat": testNow.Unix(), "nbf": testNow.Unix(), "exp": testNow.Add(8 * time.Hour).Unix(),
		"x-ms-attestation-type":  "sim-sgx",
		"x-ms-sgx-mrenclave":     "0909090909090909090909090909090909090909090909090909090909090909",
		"x-ms-sgx-is-debuggable": false,
		"x-ms-sgx-svn":           3,
		"x-ms-runtime":           map[string]any{"keys": []any{runtimeJWK("transfer", pub)}},
		"nonce":                  "n-123",
	}
}

// mint signs claims as the test authority (RS256, kid testKid).
func mint(t testing.TB, claims jwt.MapClaims) string {
	t.Helper()
	testKeys(t)
	tok := jwt.NewWithClaims(jwt.SigningMethodRS256, claims)
	tok.Header["kid"] = testKid
	s, err := tok.SignedString(authorityKey)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func testAuthority() Authority {
	return Authority{Issuer: testIssuer, Keys: KeySet{testKid: &authorityKey.PublicKey}}
}

// testPolicy is a release policy on the sim-sgx claims above.
const testPolicy = `{"version":"1.0.0","anyOf":[{"authority":"https://attest.test:8443/","allOf":[
	{"claim":"x-ms-sgx-mrenclave","equals":"0909090909090909090909090909090909090909090909090909090909090909"},
	{"claim":"x-ms-sgx-is-debuggable","equals":false},
	{"claim":"x-ms-sgx-svn","greaterOrEquals":2}]}]}`

// newVault is a vault over a fresh in-memory sealed kv store.
func newVault(t testing.TB) (*Vault, *kvtest.MemBackend) {
	t.Helper()
	testKeys(t)
	b := kvtest.NewMemBackend()
	return openVault(t, b), b
}

func openVault(t testing.TB, b *kvtest.MemBackend) *Vault {
	t.Helper()
	s, err := kv.Open(context.Background(), b, "akv", kv.Options{Sealer: kvtest.Sealer(bytes.Repeat([]byte{7}, 32), 1, 2, 1), Create: true})
	if err != nil {
		t.Fatal(err)
	}
	v, err := New(Config{Store: s, VaultURL: "https://vault.cloister.test:9443", AccessToken: testToken,
		Authorities: []Authority{testAuthority()}, Signer: signerKey, Now: func() time.Time { return testNow }})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// exportable is a create request for an exportable key with testPolicy.
func exportable(kty string) CreateKeyRequest {
	yes := true
	return CreateKeyRequest{Kty: kty, Attributes: &KeyAttributes{Exportable: &yes},
		ReleasePolicy: &ReleasePolicy{Data: base64.RawURLEncoding.EncodeToString([]byte(testPolicy))}}
}

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func bytesReader(b []byte) *bytes.Reader { return bytes.NewReader(b) }

func bigOne() *big.Int { return big.NewInt(1) }
