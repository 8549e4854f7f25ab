// Package ledgerapp is the ledger node as an enclave app: what `cloister
// ledger serve` runs under `cloister run`'s host (package host) on the
// simulator, and later on any TEE. Inside the enclave it makes (or unseals)
// the service and node keys, puts the platform's evidence binding the
// service key into the service certificate (RA-TLS: a client attests it
// with `cloister verify cert` before trusting it), prints that
// certificate, and serves the ACL REST API (package aclapi) over TLS whose
// chain ends at it. Its host records are sealed segments (ledger.Storage)
// through the enclave's storage calls.
package ledgerapp

import (
	"context"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/cloister-dev/cloister/enclave"
	"github.com/cloister-dev/cloister/kv"
	"github.com/cloister-dev/cloister/ledger"
	"github.com/cloister-dev/cloister/ledger/aclapi"
	"github.com/cloister-dev/cloister/ratls"
	"github.com/cloister-dev/cloister/tee"
)

// Config is what the host passes on the app's command line.
type Config struct {
	// Listen is the address to serve on (allowed by the host's --listen).
	Listen string
	// DNSNames and IPAddresses name the endpoint in a new ledger's
	// certificates.
	DNSNames    []string
	IPAddresses []net.IP
	// Admins are user ids (uppercase colon-hex certificate fingerprints)
	// made Administrator if they have no role.
	Admins []string
	// SignEvery and SignInterval: see ledger.Options.
	SignEvery    int
	SignInterval time.Duration
}

// CertBanner precedes the service certificate on the app's stdout.
const CertBanner = "ledger: service certificate:"

// Serve runs the node until ctx ends.
func Serve(ctx context.Context, env *enclave.Env, cfg Config, stdout io.Writer) error {
	plat := env.Platform()
	// The process clock: it dates certificates and spaces signatures.
	// Clients trust the evidence and the signatures, not the dates.
	n, err := ledger.Open(ctx, ledger.Options{
		Backend: kv.EnclaveBackend(env.Store()), Sealer: tee.NewSealer(plat), Now: time.Now,
		Identity: ledger.IdentityOptions{
			DNSNames: cfg.DNSNames, IPAddresses: cfg.IPAddresses,
			ServiceExtensions: func(spki []byte) ([]pkix.Extension, error) {
				ext, err := ratls.Extension(ctx, plat, spki, nil)
				return []pkix.Extension{ext}, err
			},
		},
		Admins: cfg.Admins, SignEvery: cfg.SignEvery, SignInterval: cfg.SignInterval,
	})
	if err != nil {
		return err
	}
	defer n.Close()
	fmt.Fprintln(stdout, CertBanner)
	pem.Encode(stdout, &pem.Block{Type: "CERTIFICATE", Bytes: n.Identity().ServiceCert.Raw})
	l, err := env.ListenContext(ctx, "tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("ledger: listen %s: %w", cfg.Listen, err)
	}
	srv := &http.Server{Handler: aclapi.Handler(n), TLSConfig: aclapi.TLSConfig(n.Identity()), ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	}()
	env.Logger().Info("ledger: serving the ACL API", "addr", l.Addr().String(), "nodeId", n.Identity().NodeID(), "tee", plat.Kind())
	if err := srv.ServeTLS(l, "", ""); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
