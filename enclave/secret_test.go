package enclave_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/cloister-dev/cloister/boundary"
	"github.com/cloister-dev/cloister/broker/kbs"
	"github.com/cloister-dev/cloister/broker/kbsclient"
	"github.com/cloister-dev/cloister/enclave"
	"github.com/cloister-dev/cloister/evidence/pcs"
	"github.com/cloister-dev/cloister/host/wire"
	"github.com/cloister-dev/cloister/kv"
	"github.com/cloister-dev/cloister/kv/kvtest"
	"github.com/cloister-dev/cloister/policy"
	"github.com/cloister-dev/cloister/ratls"
	"github.com/cloister-dev/cloister/seal"
	"github.com/cloister-dev/cloister/tee"
	"github.com/cloister-dev/cloister/tee/sim"
)

// testApp is the identity of the enclave app under test.
var testApp = sim.App{MRENCLAVE: [32]byte{0xe1}, MRSIGNER: [32]byte{0x51}, ProductID: 3, SVN: 4, Debug: true}

// brokerApp is the identity of the test broker.
var brokerApp = sim.App{MRENCLAVE: [32]byte{0xb0, 0x0b}, MRSIGNER: [32]byte{0xb1}, ProductID: 1, SVN: 1}

// tap records every byte a hostile host can read: each host call's
// request and response as they cross the rings.
type tap struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (t *tap) wrap(h boundary.Handler) boundary.Handler {
	return func(call uint32, req, resp []byte) (int, error) {
		n, err := h(call, req, resp)
		t.mu.Lock()
		t.buf.Write(req)
		if n > 0 && n <= len(resp) {
			t.buf.Write(resp[:n])
		}
		t.mu.Unlock()
		return n, err
	}
}

func (t *tap) contains(b []byte) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return bytes.Contains(t.buf.Bytes(), b)
}

func (t *tap) len() int { t.mu.Lock(); defer t.mu.Unlock(); return t.buf.Len() }

// secretScene is an enclave Env over real host services whose every
// host call is tapped, and a real KBS broker (broker/kbs) behind RA-TLS
// on a sim platform of identity brokerApp, reached through a recording
// TCP proxy (what the host's network sees).
type secretScene struct {
	env     *enclave.Env
	pki     *sim.PKI
	rings   *tap
	wire    *tap
	kbsURL  string // the proxy, as the host would hand it out
	admin   ed25519.PrivateKey
	adminTo string // the broker itself, for management
	bundle  ratls.CollateralSource
}

func newSecretScene(t *testing.T) *secretScene {
	t.Helper()
	now := time.Now()
	pki, err := sim.Load(t.TempDir(), rand.Reader, now)
	if err != nil {
		t.Fatal(err)
	}
	s := &secretScene{pki: pki, rings: &tap{}, wire: &tap{}}

	// The broker: KBS over RA-TLS, evidence from its own sim platform.
	bp, err := sim.NewPlatform(pki, tee.KindSimSGX, brokerApp, nil)
	if err != nil {
		t.Fatal(err)
	}
	st, err := kv.Open(context.Background(), kvtest.NewMemBackend(), "broker/kbs", kv.Options{Sealer: tee.NewSealer(bp), Policy: seal.PolicySigner, Create: true})
	if err != nil {
		t.Fatal(err)
	}
	col, err := pki.Collateral(rand.Reader, now, false)
	if err != nil {
		t.Fatal(err)
	}
	s.bundle = ratls.BundleSource(col)
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	s.admin = priv
	ks, err := kbs.New(context.Background(), kbs.Config{OpenStore: func(context.Context) (*kv.Store, error) { return st, nil }, Now: time.Now, Issuer: "https://broker.test",
		TrustRoots: []*x509.Certificate{pki.Root}, AdminKeys: []ed25519.PublicKey{pub},
		Collateral: func(context.Context, []byte) (*pcs.Bundle, error) { return col, nil }})
	if err != nil {
		t.Fatal(err)
	}
	rs, err := ratls.NewServer(context.Background(), ratls.ServerOptions{Platform: bp, Now: time.Now, CommonName: "test broker"})
	if err != nil {
		t.Fatal(err)
	}
	tlsCfg, err := ratls.ServerConfig(rs, nil)
	if err != nil {
		t.Fatal(err)
	}
	s.adminTo = serveTLS(t, ks, tlsCfg)
	s.kbsURL = "https://" + recordingProxy(t, s.adminTo, s.wire)

	// The enclave, its host calls tapped.
	plat, err := sim.NewPlatform(pki, tee.KindSimSGX, testApp, nil)
	if err != nil {
		t.Fatal(err)
	}
	s.env = enclave.NewTappedEnv(t, plat, s.rings.wrap)
	return s
}

// serveTLS serves h over TLS with cfg on a loopback port and returns
// host:port.
func serveTLS(t *testing.T, h http.Handler, cfg *tls.Config) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, ErrorLog: log.New(io.Discard, "", 0)}
	go hs.Serve(tls.NewListener(l, cfg))
	t.Cleanup(func() { hs.Close() })
	return l.Addr().String()
}

// recordingProxy forwards TCP to target and records both directions.
func recordingProxy(t *testing.T, target string, rec *tap) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				u, err := net.Dial("tcp", target)
				if err != nil {
					return
				}
				defer u.Close()
				done := make(chan struct{}, 2)
				cp := func(dst, src net.Conn) {
					io.Copy(io.MultiWriter(dst, recWriter{rec}), src)
					if tc, ok := dst.(*net.TCPConn); ok {
						tc.CloseWrite()
					}
					done <- struct{}{}
				}
				go cp(u, c)
				go cp(c, u)
				<-done
				<-done
			}()
		}
	}()
	return l.Addr().String()
}

type recWriter struct{ t *tap }

func (w recWriter) Write(p []byte) (int, error) {
	w.t.mu.Lock()
	w.t.buf.Write(p)
	w.t.mu.Unlock()
	return len(p), nil
}

// manage sends an admin request straight to the broker.
func (s *secretScene) manage(t *testing.T, method, path string, body []byte) {
	t.Helper()
	tok, _ := jwt.NewWithClaims(jwt.SigningMethodEdDSA, jwt.MapClaims{"iat": time.Now().Unix(), "exp": time.Now().Add(time.Hour).Unix()}).SignedString(s.admin)
	req, _ := http.NewRequest(method, "https://"+s.adminTo+"/kbs/v0"+path, bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+tok)
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}} // the test's own broker
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("%s %s: %d", method, path, resp.StatusCode)
	}
}

// releaseTo sets the broker's default policy to release to measurement mr.
func (s *secretScene) releaseTo(t *testing.T, mr [32]byte) {
	t.Helper()
	rego := "package cloister\ndefault allow := false\nallow if {\n input.claims.tee == \"sim-sgx\"\n input.claims.mrenclave == \"" + hex.EncodeToString(mr[:]) + "\"\n}\n"
	body, _ := json.Marshal(map[string]string{"policy": base64.StdEncoding.EncodeToString([]byte(rego))})
	s.manage(t, "PUT", "/resource-policy", body)
}

// brokerConfig is the app's pinned view of the broker: its MRENCLAVE,
// the sim root by name, the sim collateral.
func (s *secretScene) brokerConfig(mr [32]byte) enclave.BrokerConfig {
	return enclave.BrokerConfig{URL: s.kbsURL, Policy: policy.Policy{MRENCLAVE: [][]byte{mr[:]}},
		TrustRoots: []*x509.Certificate{s.pki.Root}, Collateral: s.bundle}
}

// The app gets its secret through the KBS flow over RA-TLS, and neither
// the rings nor the host's network ever carry the secret in clear.
func TestSecretFromBroker(t *testing.T) {
	s := newSecretScene(t)
	secret := make([]byte, 48)
	rand.Read(secret)
	s.manage(t, "PUT", "/resource/app/key/db", secret)
	s.releaseTo(t, testApp.MRENCLAVE)
	if err := s.env.SetBroker(s.brokerConfig(brokerApp.MRENCLAVE)); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		got, err := s.env.Secret(context.Background(), "app/key/db")
		if err != nil || !bytes.Equal(got, secret) {
			t.Fatalf("Secret = %x, %v; want %x", got, err, secret)
		}
	}
	if _, err := s.env.Secret(context.Background(), "app/key/none"); !errors.Is(err, kbsclient.ErrNotFound) {
		t.Errorf("missing: %v, want kbsclient.ErrNotFound", err)
	}
	if s.rings.len() == 0 || s.wire.len() == 0 {
		t.Fatal("the taps saw nothing: the test does not observe the host")
	}
	for _, form := range [][]byte{secret, []byte(hex.EncodeToString(secret)), []byte(base64.StdEncoding.EncodeToString(secret)),
		[]byte(base64.RawURLEncoding.EncodeToString(secret)), secret[:16], secret[32:]} {
		if s.rings.contains(form) {
			t.Errorf("the rings carried the secret (%q…)", form[:8])
		}
		if s.wire.contains(form) {
			t.Errorf("the host's network carried the secret (%q…)", form[:8])
		}
	}
	// And the taps do see cleartext the host is meant to see, so a miss
	// above means something: the host name the enclave dialed.
	if !s.rings.contains([]byte(s.kbsURL[len("https://"):])) {
		t.Error("the ring tap does not see the dial address: it is not looking at the calls")
	}
}

// A broker whose RA-TLS evidence shows another measurement than the
// pinned one is refused at the handshake: no attestation is sent to it.
// So is a plain TLS server at the URL the host hands out.
func TestSecretRefusesWrongBroker(t *testing.T) {
	s := newSecretScene(t)
	s.manage(t, "PUT", "/resource/app/key/db", []byte("never released"))
	s.releaseTo(t, testApp.MRENCLAVE)
	if err := s.env.SetBroker(s.brokerConfig([32]byte{0xee})); err != nil {
		t.Fatal(err)
	}
	got, err := s.env.Secret(context.Background(), "app/key/db")
	if !errors.Is(err, ratls.ErrPolicy) || got != nil {
		t.Fatalf("a broker of another measurement: %q, %v; want ratls.ErrPolicy", got, err)
	}
	impostor := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t.Errorf("the impostor got a request: %s %s", r.Method, r.URL)
	}))
	impostor.Config.ErrorLog = log.New(io.Discard, "", 0)
	impostor.StartTLS()
	defer impostor.Close()
	t.Setenv(wire.EnvBrokerURL, impostor.URL)
	cfg := s.brokerConfig(brokerApp.MRENCLAVE)
	cfg.URL = "" // the host's URL, swapped for the impostor
	if err := s.env.SetBroker(cfg); err != nil {
		t.Fatal(err)
	}
	if got, err := s.env.Secret(context.Background(), "app/key/db"); err == nil || got != nil {
		t.Fatalf("an impostor at the host's URL: %q, %v", got, err)
	}
}

// A broker policy for another measurement: enclave.ErrSecretDenied, no secret.
// No broker configured: enclave.ErrNoBroker. The host's URL is used when the app
// gives none.
func TestSecretDeniedAndUnconfigured(t *testing.T) {
	s := newSecretScene(t)
	if _, err := s.env.Secret(context.Background(), "app/key/db"); !errors.Is(err, enclave.ErrNoBroker) {
		t.Fatalf("before SetBroker: %v, want enclave.ErrNoBroker", err)
	}
	t.Setenv(wire.EnvBrokerURL, "")
	cfg := s.brokerConfig(brokerApp.MRENCLAVE)
	cfg.URL = ""
	if err := s.env.SetBroker(cfg); !errors.Is(err, enclave.ErrNoBroker) {
		t.Fatalf("no URL anywhere: %v, want enclave.ErrNoBroker", err)
	}
	if err := s.env.SetBroker(enclave.BrokerConfig{URL: s.kbsURL, TrustRoots: []*x509.Certificate{s.pki.Root}, Collateral: s.bundle}); err == nil {
		t.Fatal("a broker policy naming no identity was accepted")
	}
	s.manage(t, "PUT", "/resource/app/key/db", []byte("for another app"))
	s.releaseTo(t, [32]byte{0xdd})
	t.Setenv(wire.EnvBrokerURL, s.kbsURL)
	if err := s.env.SetBroker(cfg); err != nil {
		t.Fatal(err)
	}
	got, err := s.env.Secret(context.Background(), "app/key/db")
	var ke *kbsclient.Error
	if !errors.Is(err, enclave.ErrSecretDenied) || !errors.As(err, &ke) || ke.Type != "PolicyDeny" || got != nil {
		t.Fatalf("denied: %q, %v; want enclave.ErrSecretDenied", got, err)
	}
}

// BrokerSealer seals and opens with a broker-rooted key bound to the
// running identity: another measurement's request is refused, keys of
// the two policies differ, a short secret is refused.
func TestBrokerSealer(t *testing.T) {
	s := newSecretScene(t)
	root := make([]byte, 32)
	rand.Read(root)
	s.manage(t, "PUT", "/resource/app/key/storage", root)
	s.manage(t, "PUT", "/resource/app/key/short", []byte("too short"))
	s.releaseTo(t, testApp.MRENCLAVE)
	if err := s.env.SetBroker(s.brokerConfig(brokerApp.MRENCLAVE)); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	sealer, err := s.env.BrokerSealer(ctx, "app/key/storage")
	if err != nil {
		t.Fatal(err)
	}
	blob, err := sealer.Seal(ctx, seal.PolicyEnclave, []byte("label"), []byte("data"))
	if err != nil {
		t.Fatal(err)
	}
	again, err := s.env.BrokerSealer(ctx, "app/key/storage")
	if err != nil {
		t.Fatal(err)
	}
	if got, err := again.Open(ctx, seal.PolicyEnclave, []byte("label"), blob); err != nil || string(got) != "data" {
		t.Fatalf("Open = %q, %v", got, err)
	}
	keys := sealer.Keys
	id := s.env.Platform().Identity()
	other := seal.KeyRequest{Policy: seal.PolicyEnclave, Measurement: bytes.Repeat([]byte{0xee}, 32)}
	if _, err := keys.SealKey(ctx, other); !errors.Is(err, tee.ErrKeyRequestDenied) {
		t.Errorf("another measurement's key: %v, want ErrKeyRequestDenied", err)
	}
	k1, err1 := keys.SealKey(ctx, seal.KeyRequest{Policy: seal.PolicyEnclave, Measurement: id.Measurement})
	k2, err2 := keys.SealKey(ctx, seal.KeyRequest{Policy: seal.PolicySigner, Signer: id.Signer, ProductID: id.ProductID, SVN: id.SVN})
	if err1 != nil || err2 != nil || bytes.Equal(k1, k2) || bytes.Equal(k1, root) {
		t.Errorf("keys: %v %v; enclave and signer keys must differ from each other and the root", err1, err2)
	}
	if _, err := s.env.BrokerSealer(ctx, "app/key/short"); err == nil {
		t.Error("a 9-byte secret was accepted as key material")
	}
}
