package kbsclient_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/cloister-dev/cloister/broker/kbs"
	. "github.com/cloister-dev/cloister/broker/kbsclient"
	"github.com/cloister-dev/cloister/kv"
	"github.com/cloister-dev/cloister/kv/kvtest"
	"github.com/cloister-dev/cloister/seal"
	"github.com/cloister-dev/cloister/tee"
	"github.com/cloister-dev/cloister/tee/sim"
)

var testStart = time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)

var (
	pkiOnce sync.Once
	pki     *sim.PKI
	pkiErr  error
)

func testPKI(t *testing.T) *sim.PKI {
	t.Helper()
	pkiOnce.Do(func() {
		dir, err := os.MkdirTemp("", "kbsclient-sim-")
		if err != nil {
			pkiErr = err
			return
		}
		pki, pkiErr = sim.Load(dir, rand.Reader, testStart)
	})
	if pkiErr != nil {
		t.Fatal(pkiErr)
	}
	return pki
}

var appID = sim.App{MRENCLAVE: [32]byte{0xaa, 1}, MRSIGNER: [32]byte{0x5a, 2}, ProductID: 7, SVN: 3}

// broker is a real broker/kbs server over a sealed in-memory store,
// trusting the simulator root by name.
type broker struct {
	t     *testing.T
	srv   *httptest.Server
	admin ed25519.PrivateKey
	now   *time.Time
	mu    *sync.Mutex
}

func newBroker(t *testing.T) *broker {
	t.Helper()
	p := testPKI(t)
	bp, err := sim.NewPlatform(p, tee.KindSimSGX, sim.App{MRENCLAVE: [32]byte{0xb0}, MRSIGNER: [32]byte{0xb1}, ProductID: 1, SVN: 1}, nil)
	if err != nil {
		t.Fatal(err)
	}
	st, err := kv.Open(context.Background(), kvtest.NewMemBackend(), "broker/kbs", kv.Options{Sealer: tee.NewSealer(bp), Policy: seal.PolicySigner, Create: true})
	if err != nil {
		t.Fatal(err)
	}
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	now := testStart
	mu := &sync.Mutex{}
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	s, err := kbs.New(context.Background(), kbs.Config{OpenStore: func(context.Context) (*kv.Store, error) { return st, nil }, Now: clock, Issuer: "http://kbs.test",
		TrustRoots: []*x509.Certificate{p.Root}, AdminKeys: []ed25519.PublicKey{pub}})
	if err != nil {
		t.Fatal(err)
	}
	b := &broker{t: t, srv: httptest.NewServer(s), admin: priv, now: &now, mu: mu}
	t.Cleanup(b.srv.Close)
	return b
}

func (b *broker) advance(d time.Duration) { b.mu.Lock(); *b.now = b.now.Add(d); b.mu.Unlock() }

func (b *broker) admin_(method, path string, body []byte) {
	b.t.Helper()
	b.mu.Lock()
	now := *b.now
	b.mu.Unlock()
	tok, _ := jwt.NewWithClaims(jwt.SigningMethodEdDSA, jwt.MapClaims{"iat": now.Unix(), "exp": now.Add(time.Hour).Unix()}).SignedString(b.admin)
	req, _ := http.NewRequest(method, b.srv.URL+"/kbs/v0"+path, bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		b.t.Fatalf("%s %s: %d", method, path, resp.StatusCode)
	}
}

func (b *broker) policy(rego string) {
	b.t.Helper()
	body, _ := json.Marshal(map[string]string{"policy": base64.StdEncoding.EncodeToString([]byte(rego))})
	b.admin_("PUT", "/resource-policy", body)
}

// allowMR is a policy releasing to the app of measurement mr on the sim
// kind (sim-tdx's MRTD is derived from the MRENCLAVE, see sim.MRTD).
func allowMR(kind string, mr [32]byte) string {
	field, val := "mrenclave", hex.EncodeToString(mr[:])
	if kind == string(tee.KindSimTDX) {
		m := sim.MRTD(mr)
		field, val = "mrtd", hex.EncodeToString(m[:])
	}
	return "package cloister\ndefault allow := false\nallow if {\n input.claims.tee == \"" + kind +
		"\"\n input.claims." + field + " == \"" + val + "\"\n}\n"
}

func (b *broker) client(kind tee.Kind, app sim.App) *Client {
	b.t.Helper()
	plat, err := sim.NewPlatform(testPKI(b.t), kind, app, nil)
	if err != nil {
		b.t.Fatal(err)
	}
	c, err := New(Config{URL: b.srv.URL, HTTPClient: b.srv.Client(), Platform: plat})
	if err != nil {
		b.t.Fatal(err)
	}
	return c
}

// The whole flow against the real broker: sim-sgx and sim-tdx guests get
// the secret; the second resource reuses the session.
func TestResourceFromBroker(t *testing.T) {
	b := newBroker(t)
	b.admin_("PUT", "/resource/app/key/db", []byte("hunter2"))
	b.admin_("PUT", "/resource/app/key/other", []byte("second"))
	for _, kind := range []tee.Kind{tee.KindSimSGX, tee.KindSimTDX} {
		t.Run(string(kind), func(t *testing.T) {
			b.policy(allowMR(string(kind), appID.MRENCLAVE))
			c := b.client(kind, appID)
			got, err := c.Resource(context.Background(), "app/key/db")
			if err != nil || string(got) != "hunter2" {
				t.Fatalf("Resource = %q, %v", got, err)
			}
			s := c.CurrentSession()
			got, err = c.Resource(context.Background(), "app/key/other")
			if err != nil || string(got) != "second" {
				t.Fatalf("second Resource = %q, %v", got, err)
			}
			if c.CurrentSession() != s {
				t.Error("the second resource attested again instead of reusing the session")
			}
		})
	}
}

// A policy for another measurement: ErrPolicyDenied, a named *Error, no
// secret. A missing resource: ErrNotFound.
func TestRefusals(t *testing.T) {
	b := newBroker(t)
	b.admin_("PUT", "/resource/app/key/db", []byte("hunter2"))
	b.policy(allowMR("sim-sgx", [32]byte{0xee}))
	c := b.client(tee.KindSimSGX, appID)
	got, err := c.Resource(context.Background(), "app/key/db")
	var e *Error
	if !errors.Is(err, ErrPolicyDenied) || !errors.As(err, &e) || e.Type != "PolicyDeny" || got != nil {
		t.Fatalf("another measurement's policy: %q, %v; want ErrPolicyDenied", got, err)
	}
	b.policy(allowMR("sim-sgx", appID.MRENCLAVE))
	if _, err := c.Resource(context.Background(), "app/key/none"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("missing resource: %v, want ErrNotFound", err)
	}
	for _, p := range []string{"", "a/b", "a/b/c/d", "a/../c", "a/b/c d", "a//c", "a/b/" + strings.Repeat("x", 129)} {
		if _, err := c.Resource(context.Background(), p); err == nil || errors.As(err, &e) {
			t.Errorf("path %q: %v, want a local refusal", p, err)
		}
	}
}

// A session the broker no longer knows (expired) is attested again once,
// transparently.
func TestExpiredSessionReattests(t *testing.T) {
	b := newBroker(t)
	b.admin_("PUT", "/resource/app/key/db", []byte("hunter2"))
	b.policy(allowMR("sim-sgx", appID.MRENCLAVE))
	c := b.client(tee.KindSimSGX, appID)
	if _, err := c.Resource(context.Background(), "app/key/db"); err != nil {
		t.Fatal(err)
	}
	old := c.CurrentSession()
	b.advance(kbs.DefaultSessionLifetime + time.Minute)
	got, err := c.Resource(context.Background(), "app/key/db")
	if err != nil || string(got) != "hunter2" {
		t.Fatalf("after expiry: %q, %v", got, err)
	}
	if c.CurrentSession() == old {
		t.Error("the expired session was not replaced")
	}
}

// The report data this client binds is one of those the broker accepts
// (kbs.BindingDigests), for every hash and for nonces that need escaping.
func TestReportDataMatchesBroker(t *testing.T) {
	key := JWK{Kty: "EC", Alg: "ECDH-ES+A256KW", Crv: "P-256", X: "eA", Y: "eQ"}
	for _, nonce := range []string{"bm9uY2U=", "a\"b\\c\n\x01\x1f é\u2028"} {
		for _, h := range []string{"sha256", "sha384", "sha512"} {
			got, err := ReportData(nonce, key, h)
			if err != nil {
				t.Fatal(err)
			}
			rd := kbs.RuntimeData{Nonce: nonce, TeePubKey: kbs.TeePubKey{Kty: key.Kty, Alg: key.Alg, Crv: key.Crv, X: key.X, Y: key.Y}}
			want, err := kbs.BindingDigests(&rd, "", h)
			if err != nil {
				t.Fatal(err)
			}
			if got != want[0] {
				t.Errorf("nonce %q %s: report data %x, broker computes %x", nonce, h, got, want[0])
			}
		}
	}
	if _, err := ReportData("n", key, "md5"); err == nil {
		t.Error("an unknown hash was accepted")
	}
}

// A JWE for another key, or with any byte of it flipped, never decrypts.
func TestDecryptResponseRefusesTampering(t *testing.T) {
	b := newBroker(t)
	b.admin_("PUT", "/resource/app/key/db", []byte("hunter2"))
	b.policy(allowMR("sim-sgx", appID.MRENCLAVE))
	c := b.client(tee.KindSimSGX, appID)
	cookie, key, err := c.AttestedSession(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	body, err := c.RawResource(context.Background(), cookie, "app/key/db")
	if err != nil {
		t.Fatal(err)
	}
	if got, err := DecryptResponse(body, key); err != nil || string(got) != "hunter2" {
		t.Fatalf("DecryptResponse = %q, %v", got, err)
	}
	var m map[string]string
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatal(err)
	}
	for _, field := range []string{"protected", "encrypted_key", "iv", "ciphertext", "tag"} {
		raw, err := base64.RawURLEncoding.DecodeString(m[field])
		if err != nil {
			t.Fatal(field, err)
		}
		for i := range raw {
			mut := bytes.Clone(raw)
			mut[i] ^= 0x01
			m2 := map[string]string{}
			for k, v := range m {
				m2[k] = v
			}
			m2[field] = base64.RawURLEncoding.EncodeToString(mut)
			nb, _ := json.Marshal(m2)
			if got, err := DecryptResponse(nb, key); err == nil {
				t.Fatalf("%s byte %d flipped: decrypted %q", field, i, got)
			}
		}
	}
	other := b.client(tee.KindSimSGX, appID)
	_, otherKey, err := other.AttestedSession(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := DecryptResponse(body, otherKey); err == nil {
		t.Error("another session's key decrypted the JWE")
	}
}

// New refuses configurations it cannot use.
func TestNewRefusesBadConfig(t *testing.T) {
	plat, _ := sim.NewPlatform(testPKI(t), tee.KindSimSGX, appID, nil)
	for _, cfg := range []Config{
		{URL: "https://b", Platform: plat},
		{URL: "https://b", HTTPClient: http.DefaultClient},
		{URL: "ftp://b", HTTPClient: http.DefaultClient, Platform: plat},
		{URL: "https://b/x", HTTPClient: http.DefaultClient, Platform: plat},
		{URL: "https://u@b", HTTPClient: http.DefaultClient, Platform: plat},
		{URL: "::", HTTPClient: http.DefaultClient, Platform: plat},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("New(%+v) accepted", cfg)
		}
	}
}
