package ratls

import (
	"context"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cloister-dev/cloister/evidence/pcs"
	"github.com/cloister-dev/cloister/tee"
	"github.com/cloister-dev/cloister/tee/sim"
)

// simNow is the fixed "now" of the sim tests.
var simNow = time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)

// interopAt is inside the validity of all three interop certificates
// (rats-tls: 2023-02-22 .. 2024-02-22) and of their PCK chains.
var interopAt = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)

// Interop certificates (testdata/README.md "ratls/").
var interop = []struct {
	file                string
	forms               []Form
	mrenclave, mrsigner string
}{
	{"gramine-cert.pem", []Form{FormCCC, FormGramine},
		"0866e7ca11b9f4efe4bf39b2607f4e1299f111920d96d95719080f01b62b7585", "adc53501f21ced9b998e37a7a18e061c63e00315045fa57a49c18ef0a30d02ca"},
	{"intel-sgxsdk-cert.pem", []Form{FormCCC, FormIntelSGX},
		"09e218a4be9dadbf7cdc82c45497d6d4f676d3b75445fc37a376f0b65b47de6a", "e0c86c51e05ad8592673db348155bddf4bcad6131a5205ce4265c0d795803ba2"},
	{"rats-tls-cert.pem", []Form{FormCCC},
		"38e1b40b8c68186f359c97ecb6a89965d9d8638f2df06fbe18e84d79a266c041", "83d719e77deaca1470f6baf62a4d774303c899db69020f9c70ee1dfc08c7ce9e"},
}

func readCert(t testing.TB, name string) *x509.Certificate {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "testdata", "ratls", name))
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(data)
	if block == nil {
		t.Fatalf("%s: no PEM", name)
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func fixed(t time.Time) func() time.Time { return func() time.Time { return t } }

// clock is a settable test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// simEnv is a simulator with its PKI and collateral, shared by a test.
type simEnv struct {
	pki        *sim.PKI
	collateral *pcs.Bundle
	app        sim.App
}

var testApp = sim.App{MRENCLAVE: [32]byte{0xAA, 1}, MRSIGNER: [32]byte{0xBB, 2}, ProductID: 3, SVN: 4}

func newSim(t testing.TB) *simEnv {
	t.Helper()
	pki, err := sim.Load(filepath.Join(t.TempDir(), "sim"), rand.Reader, simNow)
	if err != nil {
		t.Fatal(err)
	}
	col, err := pki.Collateral(rand.Reader, simNow, false)
	if err != nil {
		t.Fatal(err)
	}
	return &simEnv{pki: pki, collateral: col, app: testApp}
}

func (e *simEnv) platform(t testing.TB, kind tee.Kind, app sim.App) tee.Platform {
	t.Helper()
	p, err := sim.NewPlatform(e.pki, kind, app, nil)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func (e *simEnv) server(t testing.TB, app sim.App, mod func(*ServerOptions)) *Server {
	t.Helper()
	o := ServerOptions{Platform: e.platform(t, tee.KindSimSGX, app), Now: fixed(simNow)}
	if mod != nil {
		mod(&o)
	}
	s, err := NewServer(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// opts verifies sim evidence at simNow with sim collateral, expecting testApp.
func (e *simEnv) opts() VerifyOptions {
	o := VerifyOptions{Now: fixed(simNow), Collateral: BundleSource(e.collateral), TrustRoots: []*x509.Certificate{e.pki.Root}}
	o.Policy.MRENCLAVE = [][]byte{testApp.MRENCLAVE[:]}
	o.Policy.MRSIGNER = [][]byte{testApp.MRSIGNER[:]}
	return o
}

// outOfDateCollateral re-signs the sim collateral with the sim TCB signing
// key so that the platform's TCB level reads OutOfDate: a real signed
// bundle that evidence.Verify accepts, with one override.
func (e *simEnv) outOfDateCollateral(t testing.TB) *pcs.Bundle {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(e.pki.Dir, "tcbsign.key"))
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(data)
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	b := *e.collateral
	const up = `"tcbStatus":"UpToDate"`
	if !strings.Contains(b.TCBInfo, up) {
		t.Fatalf("sim tcbInfo has no %s: %s", up, b.TCBInfo)
	}
	b.TCBInfo = strings.Replace(b.TCBInfo, up, `"tcbStatus":"OutOfDate"`, 1)
	h := sha256.Sum256([]byte(b.TCBInfo))
	r, s, err := ecdsa.Sign(rand.Reader, k.(*ecdsa.PrivateKey), h[:])
	if err != nil {
		t.Fatal(err)
	}
	sig := make([]byte, 64)
	r.FillBytes(sig[:32])
	s.FillBytes(sig[32:])
	b.TCBInfoSignature = hex.EncodeToString(sig)
	return &b
}
