package ledgercounter

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"net"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"github.com/cloister-dev/cloister/kv"
	"github.com/cloister-dev/cloister/kv/kvtest"
	"github.com/cloister-dev/cloister/ledger"
	"github.com/cloister-dev/cloister/ledger/aclapi"
	"github.com/cloister-dev/cloister/ledger/ledgerclient"
	"github.com/cloister-dev/cloister/policy"
	"github.com/cloister-dev/cloister/ratls"
	"github.com/cloister-dev/cloister/tee"
	"github.com/cloister-dev/cloister/tee/sim"
)

var simNow = time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)

var ledgerApp = sim.App{MRENCLAVE: [32]byte{0x1E, 0xD6}, MRSIGNER: [32]byte{0x51}, ProductID: 1, SVN: 1}

type fixture struct {
	url    string
	svc    *x509.Certificate
	verify ratls.VerifyOptions
	user   tls.Certificate
}

// startLedger runs a ledger node in process, whose service certificate
// carries sim evidence of ledgerApp, behind the ACL API over real TLS, with
// user as an administrator.
func startLedger(t *testing.T) *fixture {
	t.Helper()
	ctx := context.Background()
	pki, err := sim.Load(filepath.Join(t.TempDir(), "sim"), rand.Reader, simNow)
	if err != nil {
		t.Fatal(err)
	}
	col, err := pki.Collateral(rand.Reader, simNow, false)
	if err != nil {
		t.Fatal(err)
	}
	plat, err := sim.NewPlatform(pki, tee.KindSimSGX, ledgerApp, nil)
	if err != nil {
		t.Fatal(err)
	}
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "kv"}, NotBefore: simNow.Add(-time.Hour), NotAfter: simNow.Add(time.Hour)}
	der, _ := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	user := tls.Certificate{Certificate: [][]byte{der}, PrivateKey: k}
	n, err := ledger.Open(ctx, ledger.Options{
		Backend: kvtest.NewMemBackend(), Sealer: tee.NewSealer(plat), Now: func() time.Time { return simNow },
		Identity: ledger.IdentityOptions{
			IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
			ServiceExtensions: func(spki []byte) ([]pkix.Extension, error) {
				e, err := ratls.Extension(ctx, plat, spki, nil)
				return []pkix.Extension{e}, err
			},
		},
		Admins: []string{aclapi.UserID(der)},
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(aclapi.Handler(n))
	srv.TLS = aclapi.TLSConfig(n.Identity())
	srv.StartTLS()
	t.Cleanup(func() { srv.Close(); n.Close() })
	return &fixture{
		url: srv.URL, svc: n.Identity().ServiceCert, user: user,
		verify: ratls.VerifyOptions{
			Policy: policy.Policy{MRENCLAVE: [][]byte{ledgerApp.MRENCLAVE[:]}, AllowDebug: true},
			Now:    func() time.Time { return simNow }, Collateral: ratls.BundleSource(col), TrustRoots: []*x509.Certificate{pki.Root},
		},
	}
}

func (f *fixture) counter(t *testing.T, name string) *Counter {
	t.Helper()
	c, err := New(Options{Name: name, Options: ledgerclient.Options{URL: f.url, ServiceCert: f.svc, Verify: f.verify, ClientCert: f.user}})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

var sealer = kvtest.Sealer(bytes.Repeat([]byte{5}, 32), 9, 9, 1)

// TestRollbackAcrossRestart: a store kept fresh by the ledger counter;
// the enclave restarts (a new Counter, nothing in memory) and the host
// serves the state of an older commit: kv.ErrRollback. With the current
// state it opens.
func TestRollbackAcrossRestart(t *testing.T) {
	ctx := context.Background()
	f := startLedger(t)
	b := kvtest.NewMemBackend()
	s, err := kv.Open(ctx, b, "app", kv.Options{Sealer: sealer, Counter: f.counter(t, "app-store"), Create: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Put(ctx, "k", []byte("v1")); err != nil {
		t.Fatal(err)
	}
	old := b.Snapshot()
	if err := s.Put(ctx, "k", []byte("v2")); err != nil {
		t.Fatal(err)
	}
	s.Close()

	// Restart with the current state: opens, reads v2.
	s, err = kv.Open(ctx, b, "app", kv.Options{Sealer: sealer, Counter: f.counter(t, "app-store")})
	if err != nil {
		t.Fatal(err)
	}
	if v, err := s.Get(ctx, "k"); err != nil || string(v) != "v2" {
		t.Fatalf("%q %v", v, err)
	}
	s.Close()

	// Restart, and the host serves the older state.
	cur := b.Snapshot()
	b.Restore(old)
	if _, err := kv.Open(ctx, b, "app", kv.Options{Sealer: sealer, Counter: f.counter(t, "app-store")}); !errors.Is(err, kv.ErrRollback) {
		t.Fatalf("old state after a restart: %v, want kv.ErrRollback", err)
	}
	b.Restore(cur)
}

// TestCounterContract: Read of a new counter is the zero Count; CAS from
// the wrong old is ErrCounterConflict; CAS backwards is refused.
func TestCounterContract(t *testing.T) {
	ctx := context.Background()
	f := startLedger(t)
	c := f.counter(t, "c")
	if got, err := c.Read(ctx); err != nil || got != (kv.Count{}) {
		t.Fatalf("%v %v", got, err)
	}
	one := kv.Count{Version: 1, Digest: [32]byte{1}}
	if err := c.CompareAndSwap(ctx, kv.Count{}, one); err != nil {
		t.Fatal(err)
	}
	if err := c.CompareAndSwap(ctx, kv.Count{}, one); !errors.Is(err, kv.ErrCounterConflict) {
		t.Fatalf("stale old: %v", err)
	}
	if err := c.CompareAndSwap(ctx, one, kv.Count{}); err == nil {
		t.Fatal("moved back")
	}
	// Another client instance sees the same counter.
	if got, err := f.counter(t, "c").Read(ctx); err != nil || got != one {
		t.Fatalf("%v %v", got, err)
	}
}

// TestAttestationRefused: a ledger whose service certificate's evidence
// does not match the policy (another MRENCLAVE) is refused at the
// handshake; so is a pinned service certificate the server does not chain to.
func TestAttestationRefused(t *testing.T) {
	ctx := context.Background()
	f := startLedger(t)
	wrong := f.verify
	wrong.Policy.MRENCLAVE = [][]byte{bytes.Repeat([]byte{0xEE}, 32)}
	c, err := New(Options{Name: "c", Options: ledgerclient.Options{URL: f.url, ServiceCert: f.svc, Verify: wrong, ClientCert: f.user}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Read(ctx); err == nil {
		t.Fatal("a ledger with the wrong measurement was trusted")
	}
	other := startLedger(t)
	c, err = New(Options{Name: "c", Options: ledgerclient.Options{URL: f.url, ServiceCert: other.svc, Verify: other.verify, ClientCert: f.user}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Read(ctx); err == nil {
		t.Fatal("a ledger not chaining to the pinned service certificate was trusted")
	}
}
