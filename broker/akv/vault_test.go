package akv

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"math/big"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/cloister-dev/cloister/kv/kvtest"
)

// A released key is the created key: for each key type the unwrapped
// material's public half is what getKey shows, it opens only under the
// transfer key of the token, and the JWS has Azure's shape.
func TestReleaseRoundTrip(t *testing.T) {
	v, _ := newVault(t)
	ctx := context.Background()
	for _, kty := range []string{"RSA", "RSA-HSM", "EC", "oct-HSM"} {
		created, err := v.CreateKey(ctx, "k-"+kty, exportable(kty))
		if err != nil {
			t.Fatal(err)
		}
		got, err := v.GetKey(ctx, "k-"+kty, "")
		if err != nil || got.Key.Kid != created.Key.Kid || !strings.HasPrefix(got.Key.Kid, "https://vault.cloister.test:9443/keys/k-"+kty+"/") {
			t.Fatalf("%s: get: %+v %v", kty, got, err)
		}
		if got.ReleasePolicy == nil || got.ReleasePolicy.Data != base64.RawURLEncoding.EncodeToString([]byte(testPolicy)) {
			t.Fatalf("%s: release policy data not returned as set: %+v", kty, got.ReleasePolicy)
		}
		for _, enc := range []string{"", EncRsaAesKeyWrap256, EncRsaAesKeyWrap384} {
			value, err := v.Release(ctx, "k-"+kty, "", ReleaseRequest{Target: mint(t, sgxClaims(&enclaveKey.PublicKey)), Enc: enc, Nonce: "n-123"}, "7.5")
			if err != nil {
				t.Fatalf("%s %s: %v", kty, enc, err)
			}
			r, err := OpenRelease(value, &signerKey.PublicKey, enclaveKey)
			if err != nil {
				t.Fatalf("%s %s: %v", kty, enc, err)
			}
			if r.Kid != created.Key.Kid || r.TransferKid != "transfer" || (enc != "" && r.Enc != enc) || (enc == "" && r.Enc != EncCkmRsaAesKeyWrap) {
				t.Fatalf("%s %s: opened %+v", kty, enc, r)
			}
			checkMaterial(t, kty, r.Material, got.Key)
			// Only the transfer key opens it.
			if _, err := OpenRelease(value, &signerKey.PublicKey, otherKey); !errors.Is(err, ErrUnwrap) {
				t.Fatalf("%s: opened with another key: %v", kty, err)
			}
			// The JWS signature covers the payload.
			parts := strings.Split(value, ".")
			forged := parts[0] + "." + parts[1][:len(parts[1])-2] + "AA." + parts[2]
			if _, err := OpenRelease(forged, &signerKey.PublicKey, enclaveKey); !errors.Is(err, ErrBadRelease) {
				t.Fatalf("%s: forged payload: %v", kty, err)
			}
		}
	}
}

// checkMaterial checks that the released material is the key whose public
// JWK getKey returned.
func checkMaterial(t *testing.T, kty string, m []byte, pub JSONWebKey) {
	t.Helper()
	if strings.HasPrefix(kty, "oct") {
		if len(m) != 32 {
			t.Fatalf("oct: %d bytes", len(m))
		}
		return
	}
	k, err := x509.ParsePKCS8PrivateKey(m)
	if err != nil {
		t.Fatalf("%s: released material is not PKCS#8: %v", kty, err)
	}
	switch k := k.(type) {
	case *rsa.PrivateKey:
		if base64.RawURLEncoding.EncodeToString(k.N.Bytes()) != pub.N {
			t.Fatalf("%s: released modulus is not the key's", kty)
		}
	case *ecdsa.PrivateKey:
		x, _ := base64.RawURLEncoding.DecodeString(pub.X)
		if k.X.Cmp(new(big.Int).SetBytes(x)) != 0 {
			t.Fatalf("%s: released point is not the key's", kty)
		}
	default:
		t.Fatalf("%s: %T", kty, k)
	}
}

// No key for: a policy that does not match, an untrusted issuer, an
// expired token, a token without (or with an unusable) runtime key, a
// non-exportable, disabled, expired or not-yet-valid key, a nonce that is
// not the token's.
func TestReleaseRefusals(t *testing.T) {
	v, _ := newVault(t)
	ctx := context.Background()
	if _, err := v.CreateKey(ctx, "good", exportable("RSA")); err != nil {
		t.Fatal(err)
	}
	no := false
	mk := func(name string, mod func(*CreateKeyRequest)) {
		req := exportable("oct")
		mod(&req)
		if _, err := v.CreateKey(ctx, name, req); err != nil {
			t.Fatal(err)
		}
	}
	mk("plain", func(r *CreateKeyRequest) { r.Attributes = nil; r.ReleasePolicy = nil })
	mk("policy-not-exportable", func(r *CreateKeyRequest) { r.Attributes.Exportable = &no })
	mk("disabled", func(r *CreateKeyRequest) { r.Attributes.Enabled = &no })
	past, future := testNow.Add(-time.Hour).Unix(), testNow.Add(time.Hour).Unix()
	mk("expired", func(r *CreateKeyRequest) { r.Attributes.Expires = &past })
	mk("later", func(r *CreateKeyRequest) { r.Attributes.NotBefore = &future })
	other := `{"version":"1.0.0","anyOf":[{"authority":"https://attest.test:8443","allOf":[{"claim":"x-ms-sgx-mrenclave","equals":"0a"}]}]}`
	mk("other-enclave", func(r *CreateKeyRequest) { r.ReleasePolicy.Data = base64.RawURLEncoding.EncodeToString([]byte(other)) })
	otherAuth := `{"version":"1.0.0","anyOf":[{"authority":"https://maa.example","allOf":[{"claim":"x-ms-attestation-type","equals":"sim-sgx"}]}]}`
	mk("other-authority", func(r *CreateKeyRequest) {
		r.ReleasePolicy.Data = base64.RawURLEncoding.EncodeToString([]byte(otherAuth))
	})

	claims := func(mod func(jwt.MapClaims)) string {
		c := sgxClaims(&enclaveKey.PublicKey)
		mod(c)
		return mint(t, c)
	}
	good := mint(t, sgxClaims(&enclaveKey.PublicKey))
	small, _ := rsa.GenerateKey(bytesReader(bytes.Repeat([]byte{1}, 4096)), 1024)
	for _, tc := range []struct {
		name, key string
		req       ReleaseRequest
		want      error
		why       string
	}{
		{"policy does not match", "other-enclave", ReleaseRequest{Target: good}, ErrPolicyNotMet, "x-ms-sgx-mrenclave"},
		{"policy names another authority", "other-authority", ReleaseRequest{Target: good}, ErrPolicyNotMet, "none of the policy's authorities"},
		{"debuggable enclave", "good", ReleaseRequest{Target: claims(func(c jwt.MapClaims) { c["x-ms-sgx-is-debuggable"] = true })}, ErrPolicyNotMet, "is-debuggable"},
		{"older svn", "good", ReleaseRequest{Target: claims(func(c jwt.MapClaims) { c["x-ms-sgx-svn"] = 1 })}, ErrPolicyNotMet, "greaterorequals"},
		{"untrusted issuer", "good", ReleaseRequest{Target: claims(func(c jwt.MapClaims) { c["iss"] = "https://maa.example" })}, ErrUntrustedIssuer, ""},
		{"expired token", "good", ReleaseRequest{Target: claims(func(c jwt.MapClaims) { c["exp"] = testNow.Add(-time.Minute).Unix() })}, ErrTokenExpired, ""},
		{"no runtime keys", "good", ReleaseRequest{Target: claims(func(c jwt.MapClaims) { delete(c, "x-ms-runtime") })}, ErrReleaseRefused, "no x-ms-runtime keys"},
		{"runtime keys not a set", "good", ReleaseRequest{Target: claims(func(c jwt.MapClaims) { c["x-ms-runtime"] = map[string]any{"keys": "x"} })}, ErrReleaseRefused, "not a JWK array"},
		{"runtime key not for encryption", "good", ReleaseRequest{Target: claims(func(c jwt.MapClaims) {
			k := runtimeJWK("sig", &enclaveKey.PublicKey)
			k["key_ops"] = []any{"verify"}
			c["x-ms-runtime"] = map[string]any{"keys": []any{k}}
		})}, ErrReleaseRefused, "no RSA encryption key"},
		{"runtime key too small", "good", ReleaseRequest{Target: claims(func(c jwt.MapClaims) {
			c["x-ms-runtime"] = map[string]any{"keys": []any{runtimeJWK("small", &small.PublicKey)}}
		})}, ErrReleaseRefused, "1024 bits"},
		{"runtime key exponent over 2^31-1", "good", ReleaseRequest{Target: claims(func(c jwt.MapClaims) {
			k := runtimeJWK("big-e", &enclaveKey.PublicKey)
			k["e"] = base64.RawURLEncoding.EncodeToString([]byte{0xff, 0xff, 0xff, 0xff})
			c["x-ms-runtime"] = map[string]any{"keys": []any{k}}
		})}, ErrReleaseRefused, "exponent"},
		{"nonce not the token's", "good", ReleaseRequest{Target: good, Nonce: "other"}, ErrReleaseRefused, "nonce"},
		{"not exportable", "plain", ReleaseRequest{Target: good}, ErrReleaseRefused, "not exportable"},
		{"policy but not exportable", "policy-not-exportable", ReleaseRequest{Target: good}, ErrReleaseRefused, "not exportable"},
		{"disabled", "disabled", ReleaseRequest{Target: good}, ErrReleaseRefused, "disabled"},
		{"key expired", "expired", ReleaseRequest{Target: good}, ErrReleaseRefused, "expired"},
		{"key not yet valid", "later", ReleaseRequest{Target: good}, ErrReleaseRefused, "not valid yet"},
		{"no such key", "missing", ReleaseRequest{Target: good}, ErrKeyNotFound, ""},
		{"no such version", "good", ReleaseRequest{Target: good}, ErrKeyNotFound, ""},
		{"no target", "good", ReleaseRequest{}, errBadParameter, "target"},
		{"unknown enc", "good", ReleaseRequest{Target: good, Enc: "A256KW"}, errBadParameter, "enc"},
	} {
		version := ""
		if tc.name == "no such version" {
			version = strings.Repeat("ab", 16)
		}
		value, err := v.Release(ctx, tc.key, version, tc.req, "7.5")
		if value != "" || !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.why) {
			t.Errorf("%s: got %q, %v; want %v naming %q", tc.name, value, err, tc.want, tc.why)
		}
		if tc.want != errBadParameter && tc.want != ErrKeyNotFound && !errors.Is(err, ErrReleaseRefused) {
			t.Errorf("%s: %v does not wrap ErrReleaseRefused (403)", tc.name, err)
		}
	}
	// A token whose runtime key is someone else's: the key is released to
	// that key, and the enclave holding the test's key cannot open it.
	value, err := v.Release(ctx, "good", "", ReleaseRequest{Target: mint(t, sgxClaims(&otherKey.PublicKey))}, "7.5")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := OpenRelease(value, &signerKey.PublicKey, enclaveKey); !errors.Is(err, ErrUnwrap) {
		t.Fatalf("a key released to another runtime key opened: %v", err)
	}
}

// Create refuses malformed requests with a reason, before making a key.
func TestCreateKeyRefuses(t *testing.T) {
	v, b := newVault(t)
	ctx := context.Background()
	yes := true
	before := b.Commits()
	for _, tc := range []struct {
		name string
		req  CreateKeyRequest
		want string
	}{
		{"bad name!", CreateKeyRequest{Kty: "RSA"}, "key name"},
		{"k", CreateKeyRequest{Kty: "DSA"}, "kty"},
		{"k", CreateKeyRequest{Kty: "RSA", KeySize: 1024}, "key_size"},
		{"k", CreateKeyRequest{Kty: "RSA", PublicExponent: 3}, "public_exponent"},
		{"k", CreateKeyRequest{Kty: "RSA", Crv: "P-256"}, "crv"},
		{"k", CreateKeyRequest{Kty: "EC", Crv: "P-256K"}, "crv"},
		{"k", CreateKeyRequest{Kty: "EC", KeySize: 256}, "key_size"},
		{"k", CreateKeyRequest{Kty: "oct", KeySize: 512}, "key_size"},
		{"k", CreateKeyRequest{Kty: "RSA", KeyOps: []string{"fly"}}, "key_ops"},
		// A 1 MiB body of one operation repeated would make a record kv
		// cannot hold (a 500 after the key was generated).
		{"k", CreateKeyRequest{Kty: "oct", KeyOps: slices.Repeat([]string{"wrapKey"}, 100_000)}, "key_ops"},
		{"k", CreateKeyRequest{Kty: "RSA", Attributes: &KeyAttributes{Exportable: &yes}}, "needs a release_policy"},
		{"k", CreateKeyRequest{Kty: "RSA", ReleasePolicy: &ReleasePolicy{Data: "!!"}}, "base64url"},
		{"k", CreateKeyRequest{Kty: "RSA", ReleasePolicy: &ReleasePolicy{}}, "data is empty"},
		{"k", CreateKeyRequest{Kty: "RSA", ReleasePolicy: &ReleasePolicy{Data: base64.RawURLEncoding.EncodeToString([]byte(`{"version":"9"}`))}}, "release_policy"},
		{"k", CreateKeyRequest{Kty: "RSA", ReleasePolicy: &ReleasePolicy{ContentType: "text/plain", Data: base64.RawURLEncoding.EncodeToString([]byte(testPolicy))}}, "contentType"},
		{"k", CreateKeyRequest{Kty: "RSA", Tags: map[string]string{"": "x"}}, "tag"},
	} {
		_, err := v.CreateKey(ctx, tc.name, tc.req)
		if !errors.Is(err, errBadParameter) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%.300s: got %.300v, want a bad parameter naming %q", fmt.Sprintf("%+v", tc.req), err, tc.want)
		}
	}
	if b.Commits() != before {
		t.Fatal("a refused create wrote to the store")
	}
}

// Keys live in the sealed store: a vault reopened on the same host records
// serves the same keys and versions, the host bytes hold no key material
// and no key name, and a new version becomes the newest.
func TestKeysPersistSealed(t *testing.T) {
	v, b := newVault(t)
	ctx := context.Background()
	first, err := v.CreateKey(ctx, "persisted-key", exportable("oct"))
	if err != nil {
		t.Fatal(err)
	}
	value, err := v.Release(ctx, "persisted-key", "", ReleaseRequest{Target: mint(t, sgxClaims(&enclaveKey.PublicKey))}, "7.5")
	if err != nil {
		t.Fatal(err)
	}
	r, err := OpenRelease(value, &signerKey.PublicKey, enclaveKey)
	if err != nil {
		t.Fatal(err)
	}
	for k, rec := range b.Snapshot() {
		if bytes.Contains(rec, r.Material) || bytes.Contains(append([]byte(k), rec...), []byte("persisted-key")) {
			t.Fatal("the host holds the key material or the key name in clear")
		}
	}
	v2 := openVault(t, b)
	again, err := v2.GetKey(ctx, "persisted-key", "")
	if err != nil || again.Key.Kid != first.Key.Kid {
		t.Fatalf("after reopen: %+v %v", again, err)
	}
	second, err := v2.CreateKey(ctx, "persisted-key", exportable("oct"))
	if err != nil {
		t.Fatal(err)
	}
	newest, _ := v2.GetKey(ctx, "persisted-key", "")
	old, err := v2.GetKey(ctx, "persisted-key", first.Key.Kid[strings.LastIndexByte(first.Key.Kid, '/')+1:])
	if newest.Key.Kid != second.Key.Kid || err != nil || old.Key.Kid != first.Key.Kid {
		t.Fatalf("versions: newest %s, old %+v %v", newest.Key.Kid, old, err)
	}
}

// A create whose host commit is lost (before or after the host applied
// it) leaves the key all there or not at all after a reopen: never a
// latest pointer without its record.
func TestCreateKeyCrash(t *testing.T) {
	for _, f := range []kvtest.Fault{kvtest.FaultDropBefore, kvtest.FaultDropAfter} {
		v, b := newVault(t)
		ctx := context.Background()
		b.FailNext(f)
		if _, err := v.CreateKey(ctx, "crashy", exportable("oct")); err == nil {
			t.Fatalf("fault %d: create succeeded", f)
		}
		v2 := openVault(t, b)
		got, err := v2.GetKey(ctx, "crashy", "")
		switch {
		case errors.Is(err, ErrKeyNotFound):
			if f == kvtest.FaultDropAfter {
				t.Fatalf("fault %d: the applied commit is gone", f)
			}
		case err == nil:
			if f == kvtest.FaultDropBefore {
				t.Fatalf("fault %d: a dropped commit shows a key", f)
			}
			ver := got.Key.Kid[strings.LastIndexByte(got.Key.Kid, '/')+1:]
			if _, err := v2.GetKey(ctx, "crashy", ver); err != nil {
				t.Fatalf("fault %d: latest names a version that is not there: %v", f, err)
			}
		default:
			t.Fatalf("fault %d: reopen: %v", f, err)
		}
	}
}
