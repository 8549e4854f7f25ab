package kbs

import (
	"bytes"
	"crypto/elliptic"
	"encoding/base64"
	"encoding/json"
	"slices"
	"sync"
	"testing"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/cloister-dev/cloister/tee"
	"github.com/cloister-dev/cloister/tee/sim"
)

// decryptJWE opens a resource response with go-jose, an independent JWE
// implementation: it computes the AAD from the protected string as sent
// and does ECDH-ES+A256KW / RSA-OAEP-256 and A256GCM itself. A failure is
// reported with t.Errorf (callers may run in other goroutines) and nil.
func decryptJWE(t *testing.T, body []byte, priv any) []byte {
	t.Helper()
	obj, err := jose.ParseEncryptedJSON(string(body),
		[]jose.KeyAlgorithm{jose.ECDH_ES_A256KW, jose.RSA_OAEP_256}, []jose.ContentEncryption{jose.A256GCM})
	if err != nil {
		t.Errorf("go-jose cannot parse the response %s: %v", body, err)
		return nil
	}
	out, err := obj.Decrypt(priv)
	if err != nil {
		t.Errorf("go-jose cannot decrypt the response: %v", err)
		return nil
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

// Hammer: concurrent flows of two workloads while the administrator
// flips the policy, under -race. Every release decrypts to the secret,
// and the app the policy never allows is never served.
func TestConcurrentFlowsAndPolicyChanges(t *testing.T) {
	e := newEnv(t)
	secret := []byte("s3cret")
	e.adminDo("PUT", Prefix+"/resource/r/t/x", secret)
	e.setPolicy("", allowTestApp)
	other := testApp
	other.MRENCLAVE[0] ^= 0xff
	otherPlat, err := sim.NewPlatform(e.pki, tee.KindSimSGX, other, nil)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	var flipper, workers sync.WaitGroup
	flipper.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-done:
				return
			default:
			}
			if i%2 == 0 {
				e.setPolicy("", DefaultPolicy)
			} else {
				e.setPolicy("", allowTestApp)
			}
		}
	})
	for w := 0; w < 4; w++ {
		workers.Go(func() {
			for i := 0; i < 8; i++ {
				c := e.client(TeeSGX)
				bad := w%2 == 1
				if bad {
					c.plat = otherPlat
				}
				c.handshake()
				for j := 0; j < 4; j++ {
					code, body := c.get("r/t/x", j%2 == 0)
					switch {
					case code == 200 && bad:
						t.Error("the other app was served")
					case code == 200:
						if got := decryptJWE(t, body, c.priv); !bytes.Equal(got, secret) {
							t.Errorf("decrypted %q", got)
						}
					case code == 503:
						// The policy changed during every recheck of this
						// request (maxPolicyRechecks): refused, never served
						// under a replaced policy.
					case code != 403:
						t.Errorf("%d %s", code, body)
					}
				}
			}
		})
	}
	workers.Wait()
	close(done)
	flipper.Wait()
}

// The session cookie is scoped to the protocol's path, hidden from
// scripts, and Secure when the broker's URL is https.
func TestSessionCookieAttributes(t *testing.T) {
	for _, tc := range []struct {
		issuer string
		secure bool
	}{{"http://kbs.test", false}, {"https://kbs.test", true}} {
		e := newEnv(t, func(c *Config) { c.Issuer = tc.issuer })
		_, _, resp := e.do("POST", Prefix+"/auth", authBody(TeeSGX), nil)
		cs := resp.Cookies()
		if len(cs) != 1 || cs[0].Name != SessionCookie || cs[0].Path != Prefix || !cs[0].HttpOnly || cs[0].Secure != tc.secure ||
			len(cs[0].Value) != 32 || cs[0].Expires.IsZero() {
			t.Errorf("%s: cookie %+v", tc.issuer, cs)
		}
	}
}

// A client that supports only SHA-512 gets it selected, and its binding
// (SHA-512 of the runtime data) is accepted; CoCo's TDX evidence with its
// event logs (not replayed) and init-data (not checked) is accepted as the
// bare quote is.
func TestSelectedHashAndEventLogs(t *testing.T) {
	e := newEnv(t)
	e.setPolicy("", allowTestApp)
	e.adminDo("PUT", Prefix+"/resource/r/t/x", []byte("v"))
	c := e.client(TeeTDX)
	body, _ := json.Marshal(map[string]any{"version": ProtocolVersion, "tee": TeeTDX,
		"extra-params": map[string]any{"supported-hash-algorithms": []string{"Sha512"}}})
	code, b, resp := e.do("POST", Prefix+"/auth", body, nil)
	var ch struct {
		Nonce string
		Extra struct {
			Hash string `json:"selected-hash-algorithm"`
		} `json:"extra-params"`
	}
	if code != 200 || json.Unmarshal(b, &ch) != nil || ch.Extra.Hash != HashSHA512 {
		t.Fatalf("auth: %d %s", code, b)
	}
	c.nonce, c.hash, c.cookie = ch.Nonce, ch.Extra.Hash, resp.Cookies()[0].Value
	rd := RuntimeData{Nonce: c.nonce, TeePubKey: c.pub}
	var a map[string]any
	json.Unmarshal(c.attestation(rd, c.plat), &a)
	pe := a["tee-evidence"].(map[string]any)["primary_evidence"].(map[string]any)
	pe["cc_eventlog"], pe["aa_eventlog"] = "AAAA", "INIT sha384/abc"
	a["init-data"] = map[string]string{"format": "toml", "body": "version = \"0.1.0\""} // accepted, not checked
	ab, _ := json.Marshal(a)
	if code, b := c.attest(ab); code != 200 {
		t.Fatalf("attest: %d %s", code, b)
	}
	if code, b := c.get("r/t/x", false); code != 200 {
		t.Fatalf("%d %s", code, b)
	}
}

// A requester the policy denies learns nothing about which resources
// exist: a missing one is 403 to it too, not 404.
func TestDeniedRequesterCannotProbeExistence(t *testing.T) {
	e := newEnv(t)
	c := e.client(TeeSGX)
	c.handshake()
	code, b := c.get("r/t/missing", false)
	wantError(t, "missing resource, denied requester", code, b, 403, "PolicyDeny")
}

// Why the header is written here and not by go-jose's Encrypter: go-jose's
// protected header is not in the layout kbs-types re-serializes (its epk
// members are in another order), so a guest would compute another AAD and
// refuse the tag. If go-jose ever writes kbs-types' layout, this test
// fails and the header can be left to it.
func TestGoJoseHeaderLayoutIsNotKBSTypes(t *testing.T) {
	priv, _ := newECKey(t, elliptic.P256())
	enc, err := jose.NewEncrypter(jose.A256GCM, jose.Recipient{Algorithm: jose.ECDH_ES_A256KW, Key: &priv.PublicKey}, nil)
	if err != nil {
		t.Fatal(err)
	}
	obj, err := enc.Encrypt([]byte("x"))
	if err != nil {
		t.Fatal(err)
	}
	var r Response
	if err := json.Unmarshal([]byte(obj.FullSerialize()), &r); err != nil {
		t.Fatal(err)
	}
	if kbsTypesAAD(t, r.Protected) == r.Protected {
		t.Error("go-jose now writes kbs-types' header layout: Encrypt could use its Encrypter")
	}
}
