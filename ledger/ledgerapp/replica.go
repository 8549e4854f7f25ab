package ledgerapp

import (
	"context"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/cloister-dev/cloister/enclave"
	"github.com/cloister-dev/cloister/evidence/pcs"
	"github.com/cloister-dev/cloister/kv"
	"github.com/cloister-dev/cloister/ledger"
	"github.com/cloister-dev/cloister/ledger/aclapi"
	"github.com/cloister-dev/cloister/ledger/replica"
	"github.com/cloister-dev/cloister/policy"
	"github.com/cloister-dev/cloister/ratls"
	"github.com/cloister-dev/cloister/tee"
)

// ReplicaConfig makes the node one of a replicated ledger (ledger/replica).
type ReplicaConfig struct {
	// NodeID is the node's raft id: unique in the service, never reused.
	NodeID uint64
	// Listen is the node-to-node address (mutually attested TLS).
	Listen string
	// Join is a member's node-to-node address to join through; empty
	// bootstraps a new service (or restarts from the sealed state, which
	// wins over both).
	Join string
	// TrustRoots and Collateral verify peers' evidence; the node policy is
	// the running enclave's own measurement (and debug flag): a peer joins
	// only if it runs the same code.
	TrustRoots []*x509.Certificate
	Collateral *pcs.Bundle
}

// nodePolicy accepts peers measured as this enclave is.
func nodePolicy(plat tee.Platform) (policy.Policy, error) {
	id := plat.Identity()
	p := policy.Policy{AllowDebug: id.Debug}
	switch plat.Kind() {
	case tee.KindSimSGX, tee.KindSGX:
		p.MRENCLAVE = [][]byte{id.Measurement}
	case tee.KindSimTDX, tee.KindTDX:
		p.MRTD = [][]byte{id.Measurement}
	default:
		return p, fmt.Errorf("ledger: replicas on %s: no node policy for this platform", plat.Kind())
	}
	return p, nil
}

// ServeReplica runs one node of a replicated ledger until ctx ends: raft
// between nodes on rc.Listen, the ACL API on cfg.Listen. Writes to any
// node are forwarded to the leader through raft; reads answer from the
// node's committed state and name it.
func ServeReplica(ctx context.Context, env *enclave.Env, cfg Config, rc ReplicaConfig, stdout io.Writer) error {
	plat := env.Platform()
	pol, err := nodePolicy(plat)
	if err != nil {
		return err
	}
	rl, err := env.ListenContext(ctx, "tcp", rc.Listen)
	if err != nil {
		return fmt.Errorf("ledger: listen %s: %w", rc.Listen, err)
	}
	r, err := replica.Start(ctx, replica.Options{
		ID: rc.NodeID, Listen: rc.Listen, Advertise: rc.Listen, Listener: rl,
		Backend: kv.EnclaveBackend(env.Store()), Sealer: tee.NewSealer(plat), Platform: plat,
		NodePolicy: ratls.VerifyOptions{Policy: pol, Now: time.Now, Collateral: ratls.BundleSource(rc.Collateral), TrustRoots: rc.TrustRoots},
		Now:        time.Now, Bootstrap: rc.Join == "", Join: rc.Join,
		Identity: ledger.IdentityOptions{
			DNSNames: cfg.DNSNames, IPAddresses: cfg.IPAddresses,
			ServiceExtensions: func(spki []byte) ([]pkix.Extension, error) {
				ext, err := ratls.Extension(ctx, plat, spki, nil)
				return []pkix.Extension{ext}, err
			},
		},
		SignEvery: cfg.SignEvery, SignInterval: cfg.SignInterval,
		DialContext: env.DialContext,
	})
	if err != nil {
		rl.Close()
		return err
	}
	defer r.Close()
	if err := addAdmins(ctx, r, cfg.Admins); err != nil {
		return err
	}
	fmt.Fprintln(stdout, CertBanner)
	pem.Encode(stdout, &pem.Block{Type: "CERTIFICATE", Bytes: r.Identity().ServiceCert.Raw})
	l, err := env.ListenContext(ctx, "tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("ledger: listen %s: %w", cfg.Listen, err)
	}
	srv := &http.Server{Handler: aclapi.Handler(aclapi.OverReplica(r)), TLSConfig: aclapi.TLSConfig(r.Identity()), ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	}()
	env.Logger().Info("ledger: serving the ACL API", "addr", l.Addr().String(), "raftId", r.ID(), "raftAddr", r.Addr(), "tee", plat.Kind())
	if err := srv.ServeTLS(l, "", ""); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return r.Err()
}

// addAdmins makes the configured administrators Administrator where they
// have no role yet, through the replicated log (so on a joining node,
// once it has caught up, nothing is written again). It retries while no
// leader is known.
func addAdmins(ctx context.Context, r *replica.Replica, admins []string) error {
	for _, id := range admins {
		for r.User(id) == ledger.RoleNone {
			wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			_, err := r.SetUser(wctx, id, ledger.RoleAdministrator)
			cancel()
			if err == nil {
				break
			}
			if !errors.Is(err, replica.ErrNoLeader) && !errors.Is(err, context.DeadlineExceeded) {
				return fmt.Errorf("ledger: adding administrator %s: %w", id, err)
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
	return nil
}
