package kbs

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
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

	"github.com/cloister-dev/cloister/evidence/pcs"
	"github.com/cloister-dev/cloister/kv"
	"github.com/cloister-dev/cloister/kv/kvtest"
	"github.com/cloister-dev/cloister/seal"
	"github.com/cloister-dev/cloister/tee"
	"github.com/cloister-dev/cloister/tee/sim"
)

// testStart is the fixed start of every test clock.
var testStart = time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)

// clock is a settable test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// simPKI is one simulator PKI per test binary: making one costs keys.
var (
	simOnce sync.Once
	simPKI  *sim.PKI
	simErr  error
	simDir  string
)

func testPKI(t testing.TB) *sim.PKI {
	t.Helper()
	simOnce.Do(func() {
		dir, err := mkdirTemp()
		if err != nil {
			simErr = err
			return
		}
		simDir = dir
		simPKI, simErr = sim.Load(dir, rand.Reader, testStart)
	})
	if simErr != nil {
		t.Fatal(simErr)
	}
	return simPKI
}

// testApp is the workload the tests attest.
var testApp = sim.App{MRENCLAVE: [32]byte{0xaa, 1}, MRSIGNER: [32]byte{0x5a, 2}, ProductID: 7, SVN: 3}

// env is a broker under test and what clients need to talk to it.
type env struct {
	t      testing.TB
	clock  *clock
	srv    *Server
	http   *httptest.Server
	pki    *sim.PKI
	store  *kv.Store
	admin  ed25519.PrivateKey
	sgx    *sim.Platform
	tdx    *sim.Platform
	backnd *kvtest.MemBackend
	gate   *gateBackend // backnd, with a read that can be held
}

// gateBackend is a kv backend (the env's MemBackend) whose next Get, once
// armed, signals entered and waits for release: it holds a request inside
// its store read, so a test can act at that point without timing.
type gateBackend struct {
	kv.Backend
	mu      sync.Mutex
	entered chan struct{}
	release chan struct{}
}

// arm makes the next Get block; it returns the channel closed when that
// Get is reached and the one the test closes to let it go on.
func (g *gateBackend) arm() (entered, release chan struct{}) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.entered, g.release = make(chan struct{}), make(chan struct{})
	return g.entered, g.release
}

func (g *gateBackend) Get(ctx context.Context, key []byte) ([]byte, bool, error) {
	g.mu.Lock()
	entered, release := g.entered, g.release
	g.entered, g.release = nil, nil
	g.mu.Unlock()
	if entered != nil {
		close(entered)
		<-release
	}
	return g.Backend.Get(ctx, key)
}

type envOpt func(*Config)

// newEnv starts a broker over a sealed in-memory store, trusting the
// simulator root by name, with the simulator's collateral and one admin
// key.
func newEnv(t testing.TB, opts ...envOpt) *env {
	t.Helper()
	pki := testPKI(t)
	c := &clock{t: testStart}
	e := &env{t: t, clock: c, pki: pki, backnd: kvtest.NewMemBackend()}
	e.gate = &gateBackend{Backend: e.backnd}
	var err error
	if e.sgx, err = sim.NewPlatform(pki, tee.KindSimSGX, testApp, nil); err != nil {
		t.Fatal(err)
	}
	if e.tdx, err = sim.NewPlatform(pki, tee.KindSimTDX, testApp, nil); err != nil {
		t.Fatal(err)
	}
	brokerPlat, err := sim.NewPlatform(pki, tee.KindSimSGX, sim.App{MRENCLAVE: [32]byte{0xb0}, MRSIGNER: [32]byte{0xb1}, ProductID: 1, SVN: 1}, nil)
	if err != nil {
		t.Fatal(err)
	}
	open := func(ctx context.Context) (*kv.Store, error) {
		return kv.Open(ctx, e.gate, "broker/kbs", kv.Options{Sealer: tee.NewSealer(brokerPlat), Policy: seal.PolicySigner, Create: true})
	}
	var bundles []*pcs.Bundle
	for _, tdx := range []bool{false, true} {
		b, err := pki.Collateral(rand.Reader, testStart, tdx)
		if err != nil {
			t.Fatal(err)
		}
		bundles = append(bundles, b)
	}
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	e.admin = priv
	cfg := Config{OpenStore: open, Now: c.now, Issuer: "http://kbs.test", TrustRoots: []*x509.Certificate{pki.Root},
		Collateral: bundleSource(bundles), AdminKeys: []ed25519.PublicKey{pub}}
	for _, o := range opts {
		o(&cfg)
	}
	if e.srv, err = New(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	e.store = e.srv.st()
	e.http = httptest.NewServer(e.srv)
	t.Cleanup(e.http.Close)
	return e
}

// bundleSource picks the sim bundle of the quote's kind (TDX quotes have
// version 4 and TEE type 0x81).
func bundleSource(bundles []*pcs.Bundle) func(context.Context, []byte) (*pcs.Bundle, error) {
	return func(_ context.Context, q []byte) (*pcs.Bundle, error) {
		if len(q) > 8 && q[4] == 0x81 {
			return bundles[1], nil
		}
		return bundles[0], nil
	}
}

// adminToken signs an admin token with the env's key valid from now for
// life.
func (e *env) adminToken(life time.Duration) string {
	now := e.clock.now()
	tok, err := jwt.NewWithClaims(jwt.SigningMethodEdDSA, jwt.MapClaims{"iat": now.Unix(), "exp": now.Add(life).Unix()}).SignedString(e.admin)
	if err != nil {
		e.t.Fatal(err)
	}
	return tok
}

// do sends a request and returns status and body.
func (e *env) do(method, path string, body []byte, hdr map[string]string) (int, []byte, *http.Response) {
	e.t.Helper()
	req, err := http.NewRequest(method, e.http.URL+path, bytes.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := e.http.Client().Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b, resp
}

// adminDo sends a management request with a fresh admin token.
func (e *env) adminDo(method, path string, body []byte) {
	e.t.Helper()
	code, b, _ := e.do(method, path, body, map[string]string{"Authorization": "Bearer " + e.adminToken(time.Hour)})
	if code != 200 {
		e.t.Fatalf("%s %s: %d %s", method, path, code, b)
	}
}

// setPolicy sets the default policy (path "") or a resource's.
func (e *env) setPolicy(path, rego string) {
	e.t.Helper()
	body, _ := json.Marshal(map[string]string{"policy": base64.StdEncoding.EncodeToString([]byte(rego))})
	p := Prefix + "/resource-policy"
	if path != "" {
		p += "/" + path
	}
	e.adminDo("PUT", p, body)
}

// allowSimSGX is a policy releasing to the test app on sim-sgx or sim-tdx.
const allowTestApp = `package cloister

default allow := false

allow if {
	input.claims.tee == "sim-sgx"
	input.claims.mrenclave == "aa01000000000000000000000000000000000000000000000000000000000000"
	input.claims.debug == false
}

allow if {
	input.claims.tee == "sim-tdx"
	input.tee == "tdx"
}
`

// client is a KBS client: what a CoCo guest does, written from the
// protocol text.
type client struct {
	e      *env
	tee    string
	plat   *sim.Platform
	priv   any // *ecdsa.PrivateKey or *rsa.PrivateKey
	pub    TeePubKey
	cookie string
	nonce  string
	hash   string
	token  string
}

func newECKey(t testing.TB, c elliptic.Curve) (*ecdsa.PrivateKey, TeePubKey) {
	k, err := ecdsa.GenerateKey(c, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	size := (c.Params().BitSize + 7) / 8
	return k, TeePubKey{Kty: "EC", Alg: AlgECDHESA256KW, Crv: c.Params().Name,
		X: base64.RawURLEncoding.EncodeToString(k.X.FillBytes(make([]byte, size))),
		Y: base64.RawURLEncoding.EncodeToString(k.Y.FillBytes(make([]byte, size)))}
}

var (
	rsaOnce sync.Once
	rsaKey  *rsa.PrivateKey
)

func newRSAKey(t testing.TB) (*rsa.PrivateKey, TeePubKey) {
	rsaOnce.Do(func() { rsaKey, _ = rsa.GenerateKey(rand.Reader, 2048) })
	return rsaKey, TeePubKey{Kty: "RSA", Alg: AlgRSAOAEP256,
		N: base64.RawURLEncoding.EncodeToString(rsaKey.N.Bytes()),
		E: base64.RawURLEncoding.EncodeToString(big.NewInt(int64(rsaKey.E)).Bytes())}
}

func (e *env) client(tee string) *client {
	priv, pub := newECKey(e.t, elliptic.P256())
	plat := e.sgx
	if tee == TeeTDX {
		plat = e.tdx
	}
	return &client{e: e, tee: tee, plat: plat, priv: priv, pub: pub}
}

// authBody is a Request as guest-components sends it.
func authBody(tee string) []byte {
	b, _ := json.Marshal(map[string]any{"version": ProtocolVersion, "tee": tee,
		"extra-params": map[string]any{"supported-hash-algorithms": []string{"Sha256", "Sha384", "Sha512"}}})
	return b
}

// auth runs POST /auth and keeps the cookie and challenge.
func (c *client) auth() {
	t := c.e.t
	t.Helper()
	code, b, resp := c.e.do("POST", Prefix+"/auth", authBody(c.tee), nil)
	if code != 200 {
		t.Fatalf("auth: %d %s", code, b)
	}
	var ch struct {
		Nonce       string `json:"nonce"`
		ExtraParams struct {
			Hash string `json:"selected-hash-algorithm"`
		} `json:"extra-params"`
	}
	if err := json.Unmarshal(b, &ch); err != nil || ch.Nonce == "" {
		t.Fatalf("challenge %s: %v", b, err)
	}
	c.nonce, c.hash = ch.Nonce, ch.ExtraParams.Hash
	for _, ck := range resp.Cookies() {
		if ck.Name == SessionCookie {
			c.cookie = ck.Value
		}
	}
	if c.cookie == "" {
		t.Fatal("auth set no kbs-session-id cookie")
	}
}

// attestation builds an Attestation binding rd (the digest of the current
// clients' runtime-data form) in evidence from plat.
func (c *client) attestation(rd RuntimeData, plat *sim.Platform) []byte {
	t := c.e.t
	t.Helper()
	digests, err := BindingDigests(&rd, "", c.hash)
	if err != nil {
		t.Fatal(err)
	}
	q, err := plat.Evidence(context.Background(), digests[0])
	if err != nil {
		t.Fatal(err)
	}
	return attestationJSON(rd, map[string]any{"quote": base64.StdEncoding.EncodeToString(q)}, "")
}

func attestationJSON(rd RuntimeData, primary any, additional string) []byte {
	b, _ := json.Marshal(map[string]any{"runtime-data": rd,
		"tee-evidence": map[string]any{"primary_evidence": primary, "additional_evidence": additional}})
	return b
}

// attest posts body with the session cookie.
func (c *client) attest(body []byte) (int, []byte) {
	c.e.t.Helper()
	code, b, _ := c.e.do("POST", Prefix+"/attest", body, map[string]string{"Cookie": SessionCookie + "=" + c.cookie})
	if code == 200 {
		var tr struct{ Token string }
		if json.Unmarshal(b, &tr) != nil || tr.Token == "" {
			c.e.t.Fatalf("attest answer %s", b)
		}
		c.token = tr.Token
	}
	return code, b
}

// handshake runs auth and a good attest.
func (c *client) handshake() {
	c.e.t.Helper()
	c.auth()
	if code, b := c.attest(c.attestation(RuntimeData{Nonce: c.nonce, TeePubKey: c.pub}, c.plat)); code != 200 {
		c.e.t.Fatalf("attest: %d %s", code, b)
	}
}

// get fetches a resource with the cookie (or the token when bearer).
func (c *client) get(path string, bearer bool) (int, []byte) {
	c.e.t.Helper()
	h := map[string]string{"Cookie": SessionCookie + "=" + c.cookie}
	if bearer {
		h = map[string]string{"Authorization": "Bearer " + c.token}
	}
	code, b, _ := c.e.do("GET", Prefix+"/resource/"+path, nil, h)
	return code, b
}

// wantError checks a refusal: the status, an ErrorInformation of type
// typ, and no JWE in the body.
func wantError(t testing.TB, what string, code int, body []byte, wantCode int, typ string) {
	t.Helper()
	var ei errorInfo
	if code != wantCode || json.Unmarshal(body, &ei) != nil || ei.Type != errorTypePrefix+typ || ei.Detail == "" {
		t.Errorf("%s: %d %s, want %d %s with a detail", what, code, body, wantCode, typ)
	}
	if strings.Contains(string(body), `"ciphertext"`) {
		t.Errorf("%s: the refusal carries a JWE", what)
	}
}

func mkdirTemp() (string, error) { return os.MkdirTemp("", "kbs-sim-") }
