package kbs

import (
	"bytes"
	"crypto/elliptic"
	"encoding/base64"
	"encoding/json"
	"slices"
	"testing"

	jose "github.com/go-jose/go-jose/v4"
)

// decryptJWE opens a resource response with go-jose, an independent JWE
// implementation: it computes the AAD from the protected string as sent
// and does ECDH-ES+A256KW / RSA-OAEP-256 and A256GCM itself.
func decryptJWE(t *testing.T, body []byte, priv any) []byte {
	t.Helper()
	obj, err := jose.ParseEncryptedJSON(string(body),
		[]jose.KeyAlgorithm{jose.ECDH_ES_A256KW, jose.RSA_OAEP_256}, []jose.ContentEncryption{jose.A256GCM})
	if err != nil {
		t.Fatalf("go-jose cannot parse the response %s: %v", body, err)
	}
	out, err := obj.Decrypt(priv)
	if err != nil {
		t.Fatalf("go-jose cannot decrypt the response: %v", err)
	}
	return out
}

// kbsTypesAAD recomputes the AAD as a guest does (kbs-types
// ProtectedHeader::generate_aad): parse the protected header, serialize
// alg, enc and then the other members in name order (serde_json's map),
// nested objects too, compactly.
func kbsTypesAAD(t *testing.T, protected string) string {
	t.Helper()
	raw, err := base64.RawURLEncoding.DecodeString(protected)
	if err != nil {
		t.Fatal(err)
	}
	var h map[string]any
	if err := json.Unmarshal(raw, &h); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	buf.WriteString(`{"alg":`)
	a, _ := json.Marshal(h["alg"])
	buf.Write(a)
	buf.WriteString(`,"enc":`)
	en, _ := json.Marshal(h["enc"])
	buf.Write(en)
	var rest []string
	for k := range h {
		if k != "alg" && k != "enc" {
			rest = append(rest, k)
		}
	}
	slices.Sort(rest)
	for _, k := range rest {
		kb, _ := json.Marshal(k)
		vb, _ := json.Marshal(h[k]) // encoding/json sorts nested map keys
		buf.WriteString(",")
		buf.Write(kb)
		buf.WriteString(":")
		buf.Write(vb)
	}
	buf.WriteString("}")
	return base64.RawURLEncoding.EncodeToString(buf.Bytes())
}

// The whole KBS flow with sim evidence, for every kind of TEE key a guest
// may send: auth, attest, then the resource by cookie and by bearer
// token, decrypted by go-jose; the protected header is the one a guest's
// kbs-types recomputes for its AAD.
func TestFlowDecryptsWithGoJose(t *testing.T) {
	e := newEnv(t)
	secret := []byte("the database password: hunter2")
	e.setPolicy("", allowTestApp)
	e.adminDo("PUT", Prefix+"/resource/myrepo/key/db", secret)
	for _, tc := range []struct {
		name string
		key  func() (any, TeePubKey)
	}{
		{"P-256", func() (any, TeePubKey) { return newECKey(t, elliptic.P256()) }},
		{"P-384", func() (any, TeePubKey) { return newECKey(t, elliptic.P384()) }},
		{"P-521", func() (any, TeePubKey) { return newECKey(t, elliptic.P521()) }},
		{"RSA-2048", func() (any, TeePubKey) { return newRSAKey(t) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := e.client(TeeSGX)
			c.priv, c.pub = tc.key()
			c.handshake()
			for _, bearer := range []bool{false, true} {
				code, body := c.get("myrepo/key/db", bearer)
				if code != 200 {
					t.Fatalf("bearer=%v: %d %s", bearer, code, body)
				}
				var r Response
				if err := json.Unmarshal(body, &r); err != nil {
					t.Fatal(err)
				}
				if got := kbsTypesAAD(t, r.Protected); got != r.Protected {
					t.Errorf("protected header is not in kbs-types' layout:\n got %s\nwant %s", r.Protected, got)
				}
				if got := decryptJWE(t, body, c.priv); !bytes.Equal(got, secret) {
					t.Errorf("decrypted %q, want %q", got, secret)
				}
			}
		})
	}
}

// A sim-tdx guest gets its secret the same way (tee "tdx", a TDX quote).
func TestFlowTDX(t *testing.T) {
	e := newEnv(t)
	e.setPolicy("", allowTestApp)
	e.adminDo("PUT", Prefix+"/resource/r/t/tag", []byte("td secret"))
	c := e.client(TeeTDX)
	c.handshake()
	code, body := c.get("r/t/tag", false)
	if code != 200 {
		t.Fatalf("%d %s", code, body)
	}
	if got := decryptJWE(t, body, c.priv); string(got) != "td secret" {
		t.Errorf("got %q", got)
	}
}

// kbs-types' own test vector for the protected header: the AAD of
// {alg: fakealg, enc: fakeenc} (ProtectedHeader::generate_aad).
func TestProtectedHeaderKBSTypesVector(t *testing.T) {
	h, err := protectedHeader("fakealg", nil)
	if err != nil {
		t.Fatal(err)
	}
	h = bytes.Replace(h, []byte(EncA256GCM), []byte("fakeenc"), 1)
	if got := base64.RawURLEncoding.EncodeToString(h); got != "eyJhbGciOiJmYWtlYWxnIiwiZW5jIjoiZmFrZWVuYyJ9" {
		t.Errorf("got %s", got)
	}
}
