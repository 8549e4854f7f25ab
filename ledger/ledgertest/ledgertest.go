// Package ledgertest runs a real ledger node in the test's process: a
// ledger.Node over memory storage whose service certificate carries
// simulator evidence, behind the ACL API on a loopback TLS server, with one
// administrator client certificate; and the ledgerclient options that
// attest it. For tests of the ledger's clients (kv's counter, the
// attestation service's transparency records).
package ledgertest

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"github.com/cloister-dev/cloister/kv/kvtest"
	"github.com/cloister-dev/cloister/ledger"
	"github.com/cloister-dev/cloister/ledger/aclapi"
	"github.com/cloister-dev/cloister/ledger/ledgerclient"
	"github.com/cloister-dev/cloister/policy"
	"github.com/cloister-dev/cloister/ratls"
	"github.com/cloister-dev/cloister/tee"
	"github.com/cloister-dev/cloister/tee/sim"
)

// Now is the fixture's clock.
var Now = time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)

// App is the simulated ledger enclave's identity.
var App = sim.App{MRENCLAVE: [32]byte{0x1E, 0xD6}, MRSIGNER: [32]byte{0x51}, ProductID: 1, SVN: 1}

// Ledger is a running ledger.
type Ledger struct {
	Node   *ledger.Node
	Server *httptest.Server
	// Client are options that reach and attest this ledger as its
	// administrator.
	Client ledgerclient.Options
}

// Start starts a ledger; it stops when the test ends.
func Start(t testing.TB) *Ledger {
	t.Helper()
	ctx := context.Background()
	pki, err := sim.Load(filepath.Join(t.TempDir(), "sim"), rand.Reader, Now)
	if err != nil {
		t.Fatal(err)
	}
	col, err := pki.Collateral(rand.Reader, Now, false)
	if err != nil {
		t.Fatal(err)
	}
	plat, err := sim.NewPlatform(pki, tee.KindSimSGX, App, nil)
	if err != nil {
		t.Fatal(err)
	}
	user := SelfSigned(t, "admin")
	n, err := ledger.Open(ctx, ledger.Options{
		Backend: kvtest.NewMemBackend(), Sealer: tee.NewSealer(plat), Now: func() time.Time { return Now },
		Identity: ledger.IdentityOptions{
			IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
			ServiceExtensions: func(spki []byte) ([]pkix.Extension, error) {
				e, err := ratls.Extension(ctx, plat, spki, nil)
				return []pkix.Extension{e}, err
			},
		},
		Admins: []string{aclapi.UserID(user.Certificate[0])},
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(aclapi.Handler(n))
	srv.TLS = aclapi.TLSConfig(n.Identity())
	srv.StartTLS()
	t.Cleanup(func() { srv.Close(); n.Close() })
	return &Ledger{Node: n, Server: srv, Client: ledgerclient.Options{
		URL: srv.URL, ServiceCert: n.Identity().ServiceCert, ClientCert: user,
		Verify: ratls.VerifyOptions{
			Policy: policy.Policy{MRENCLAVE: [][]byte{bytes.Clone(App.MRENCLAVE[:])}, AllowDebug: true},
			Now:    func() time.Time { return Now }, Collateral: ratls.BundleSource(col), TrustRoots: []*x509.Certificate{pki.Root},
		},
	}}
}

// SelfSigned makes a client certificate as a ledger user would.
func SelfSigned(t testing.TB, cn string) tls.Certificate {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn}, NotBefore: Now.Add(-time.Hour), NotAfter: Now.Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: k}
}
