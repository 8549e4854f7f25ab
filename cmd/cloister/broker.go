package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/cloister-dev/cloister/broker/kbs"
	"github.com/cloister-dev/cloister/evidence/pcs"
	"github.com/cloister-dev/cloister/host"
	"github.com/cloister-dev/cloister/kv"
	"github.com/cloister-dev/cloister/seal"
	"github.com/cloister-dev/cloister/tee"
)

const brokerServeHelp = `Run the key broker: secrets and keys released only to attested workloads.

The Trustee KBS protocol (0.4.0, as Confidential Containers guests speak it)
is served under /kbs/v0/. Extensions compiled into this binary mount their
own surfaces on the same server (see DESIGN.md, "Key broker").

--tee is the platform the broker itself runs on: its sealing key seals the
resource store under --state (bbolt file STATE/broker.db; without --state
the store lives in memory and is lost on exit), and with --tls its evidence
is in the RA-TLS certificate clients can attest. --trust-root adds roots
client evidence may chain to besides Intel's and AMD's (the simulator root
for development); --collateral-dir, --pcs and --pcs-url give DCAP
collateral as for 'cloister attest serve'.

Management (resources and policies) needs a token signed by the Ed25519 key
whose public key is in --admin-key (as Trustee's admin API); extensions whose
clients send bearer tokens take --admin-token-file. --insecure-admin
(development only) lets anyone manage the broker. With none of them,
management is refused.
Stops cleanly on SIGINT or SIGTERM. Logs are JSON lines on standard error.
`

// brokerExtension is a surface compiled into `cloister broker serve`
// besides KBS: it registers its flags before parsing and mounts its
// handler on the shared mux once the common setup is done. Extensions
// append themselves to brokerExtensions from their own file's init.
type brokerExtension struct {
	name  string
	flags func(fs *flag.FlagSet)                          // registers the extension's flags
	mount func(mux *http.ServeMux, c *brokerCommon) error // mounts its handler
}

// brokerExtensions are the extensions `broker serve` mounts, in order.
var brokerExtensions []brokerExtension

// brokerCommon is what `broker serve` hands every surface it mounts.
type brokerCommon struct {
	// ctx ends when the broker stops.
	ctx context.Context
	// now is the clock for tokens, sessions and verification.
	now func() time.Time
	// rand is the source of keys, nonces and session ids.
	rand io.Reader
	// log receives structured logs; never log a secret.
	log *slog.Logger
	// publicURL is the broker's URL as clients reach it (scheme://host[:port]).
	publicURL *url.URL
	// platform is the TEE the broker runs on; kind names it.
	platform tee.Platform
	kind     tee.Kind
	// trustRoots are roots client evidence may chain to besides the
	// built-in Intel and AMD roots (the simulator root, by name).
	trustRoots []*x509.Certificate
	// collateral returns DCAP collateral for an SGX or TDX quote; nil
	// means none (TCB status NotEvaluated).
	collateral func(ctx context.Context, quote []byte) (*pcs.Bundle, error)
	// adminKeys verify the Ed25519-signed admin tokens of management
	// requests (Trustee's admin API).
	adminKeys []ed25519.PublicKey
	// adminToken, when not empty, is the bearer token of management
	// requests for surfaces whose clients send bearer tokens; compare it
	// in constant time and never log it.
	adminToken string
	// insecureAdmin lets management through unauthenticated (development).
	insecureAdmin bool
	// openStore opens (creating if needed) the sealed kv store called
	// name, one per surface ("kbs", "akv", ...), all in the broker's one
	// host database and sealed with the broker platform's key. The broker
	// closes nothing: stores live as long as the process.
	openStore func(ctx context.Context, name string) (*kv.Store, error)
}

// runBrokerServe implements "cloister broker serve".
func runBrokerServe(e *env, args []string) error {
	fs := newFlagSet("broker serve", "--listen HOST:PORT [--public-url URL] [--tls] [--state DIR] [--admin-key PEM]... [--admin-token-file FILE | --insecure-admin] [--tee T] [--sim-dir DIR] [--trust-root PEM]... [--collateral-dir DIR] [--pcs]", brokerServeHelp)
	listen := fs.String("listen", "127.0.0.1:8081", "listen `ADDR`")
	publicURL := fs.String("public-url", "", "the broker's `URL` as clients reach it; default: from --listen, which must then name one host")
	useTLS := fs.Bool("tls", false, "serve over RA-TLS: a certificate whose evidence binds its key, made on this platform")
	state := fs.String("state", "", "`DIR` of the sealed resource store (default: in memory only)")
	adminTokenFile := fs.String("admin-token-file", "", "`FILE` holding the bearer token of extensions' management requests")
	insecureAdmin := fs.Bool("insecure-admin", false, "let anyone manage resources and policies, unauthenticated (development only)")
	var adminKeyFiles stringList
	fs.Var(&adminKeyFiles, "admin-key", "`PEM` Ed25519 public key whose signed tokens may manage the broker (repeatable)")
	var tf serviceTEEFlags
	tf.register(fs)
	for _, x := range brokerExtensions {
		x.flags(fs)
	}
	if err := parseNoArgs(e, fs, args); err != nil {
		return err
	}
	if err := tf.check(e); err != nil {
		return err
	}
	if err := checkHostPort("listen", *listen, true, false); err != nil {
		return err
	}
	public, err := servicePublicURL(*publicURL, *listen, *useTLS)
	if err != nil {
		return err
	}
	adminToken, err := readAdminToken(*adminTokenFile, *insecureAdmin)
	if err != nil {
		return err
	}
	if *insecureAdmin && len(adminKeyFiles) > 0 {
		return usagef("--admin-key and --insecure-admin exclude each other")
	}
	var adminKeys []ed25519.PublicKey
	for _, f := range adminKeyFiles {
		k, err := readEd25519PublicKey(f)
		if err != nil {
			return usagef("--admin-key: %v", err)
		}
		adminKeys = append(adminKeys, k)
	}
	log := slog.New(slog.NewJSONHandler(e.stderr, nil))
	switch {
	case *insecureAdmin:
		log.Warn("--insecure-admin: resource and policy management are open to anyone who can reach the broker, unauthenticated; for development only")
	case adminToken == "" && len(adminKeys) == 0:
		log.Info("management is disabled: no --admin-key or --admin-token-file")
	}
	st, err := tf.open(e, *state, log)
	if err != nil {
		return err
	}
	hostStore, err := openBrokerHostStore(*state, log)
	if err != nil {
		return err
	}
	defer hostStore.Close()
	ctx, stop := signal.NotifyContext(e.ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	ln, public, err := listenService(e, *listen, public, *useTLS, st.platform)
	if err != nil {
		return err
	}
	defer ln.Close()
	c := &brokerCommon{ctx: ctx, now: e.now, rand: rand.Reader, log: log, publicURL: public,
		platform: st.platform, kind: st.kind, trustRoots: st.roots, collateral: st.collateral,
		adminKeys: adminKeys, adminToken: adminToken, insecureAdmin: *insecureAdmin,
		openStore: sealedStoreOpener(hostStore, tee.NewSealer(st.platform))}
	mux, err := brokerMux(c)
	if err != nil {
		return err
	}
	defer tuneServiceGC()()
	return serveUntil(ctx, ln, mux, log, "key broker", st.kind)
}

// brokerMux builds the broker's handler: KBS under /kbs/v0/, then every
// extension. An extension that fails to mount stops the broker.
func brokerMux(c *brokerCommon) (*http.ServeMux, error) {
	mux := http.NewServeMux()
	if err := mountKBS(mux, c); err != nil {
		return nil, fmt.Errorf("kbs: %w", err)
	}
	for _, x := range brokerExtensions {
		if err := x.mount(mux, c); err != nil {
			return nil, fmt.Errorf("%s: %w", x.name, err)
		}
	}
	return mux, nil
}

// mountKBS mounts the Trustee KBS protocol under /kbs/v0/, its
// resources, policies and token key in the sealed store "kbs".
func mountKBS(mux *http.ServeMux, c *brokerCommon) error {
	open := func(ctx context.Context) (*kv.Store, error) { return c.openStore(ctx, "kbs") }
	srv, err := kbs.New(c.ctx, kbs.Config{OpenStore: open, Now: c.now, Rand: c.rand, Issuer: c.publicURL.String(),
		TrustRoots: c.trustRoots, Collateral: c.collateral, AdminKeys: c.adminKeys, InsecureAdmin: c.insecureAdmin,
		Logger: c.log.With("surface", "kbs")})
	if err != nil {
		return err
	}
	mux.Handle(kbs.Prefix+"/", srv)
	return nil
}

// openBrokerHostStore opens the host database of the sealed stores:
// STATE/broker.db, or memory when there is no --state.
func openBrokerHostStore(state string, log *slog.Logger) (host.Store, error) {
	if state == "" {
		log.Warn("no --state: resources and policies live in memory and are lost on exit")
		return host.NewMemStore(), nil
	}
	if err := os.MkdirAll(state, 0o700); err != nil {
		return nil, fmt.Errorf("--state: %w", err)
	}
	s, err := host.OpenBoltStore(filepath.Join(state, "broker.db"))
	if err != nil {
		return nil, fmt.Errorf("--state: %w", err)
	}
	return s, nil
}

// sealedStoreOpener returns brokerCommon.openStore over hs. Stores are
// sealed under seal.PolicySigner: a rebuilt broker of the same signer and
// product (at an equal or higher SVN) keeps its resources, as an upgrade
// must; a broker of another signer cannot read them.
func sealedStoreOpener(hs host.Store, sealer seal.Sealer) func(context.Context, string) (*kv.Store, error) {
	return func(ctx context.Context, name string) (*kv.Store, error) {
		return kv.Open(ctx, hostBackend{hs}, "broker/"+name, kv.Options{Sealer: sealer, Policy: seal.PolicySigner, Create: true})
	}
}

// hostBackend is a kv.Backend over a host.Store in this process: the
// broker runs beside its store, and kv checks everything the store returns.
type hostBackend struct{ s host.Store }

func (b hostBackend) Get(ctx context.Context, key []byte) ([]byte, bool, error) {
	v, err := b.s.Get(ctx, key)
	if errors.Is(err, host.ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	return v, true, nil
}

func (b hostBackend) List(ctx context.Context, prefix []byte) ([][]byte, error) {
	var out [][]byte
	err := b.s.Keys(ctx, prefix, nil, func(k []byte) bool {
		out = append(out, append([]byte(nil), k...))
		return true
	})
	return out, err
}

func (b hostBackend) Commit(ctx context.Context, ops []kv.Op) error {
	batch := make([]host.BatchOp, len(ops))
	for i, op := range ops {
		batch[i] = host.BatchOp{Key: op.Key, Value: op.Value, Delete: op.Delete}
	}
	return b.s.CommitBatch(ctx, batch)
}

// readEd25519PublicKey reads a PEM "PUBLIC KEY" (PKIX) Ed25519 key, the
// form `openssl pkey -pubout` writes and Trustee's auth_public_key takes.
func readEd25519PublicKey(name string) (ed25519.PublicKey, error) {
	data, err := os.ReadFile(name)
	if err != nil {
		return nil, err
	}
	blk, _ := pem.Decode(data)
	if blk == nil || blk.Type != "PUBLIC KEY" {
		return nil, fmt.Errorf("%s: want a PEM PUBLIC KEY block", name)
	}
	k, err := x509.ParsePKIXPublicKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	ek, ok := k.(ed25519.PublicKey)
	if !ok {
		return nil, fmt.Errorf("%s: a %T key, want Ed25519", name, k)
	}
	return ek, nil
}

const brokerAdminTokenHelp = `Print an admin token for 'cloister broker serve': a JWT signed with EdDSA by
the Ed25519 private key in --key (PEM PKCS#8, as 'openssl genpkey -algorithm
ed25519' writes it), with iat now and exp after --ttl, as Trustee's admin
tokens are. The broker accepts it when --admin-key names the public key
('openssl pkey -in KEY -pubout'). Send it as "Authorization: Bearer TOKEN".
`

// runBrokerAdminToken implements "cloister broker admin-token".
func runBrokerAdminToken(e *env, args []string) error {
	fs := newFlagSet("broker admin-token", "--key PEM [--ttl D]", brokerAdminTokenHelp)
	keyFile := fs.String("key", "", "`PEM` Ed25519 private key (PKCS#8)")
	ttl := fs.Duration("ttl", time.Hour, "token lifetime, at most 24h")
	if err := parseNoArgs(e, fs, args); err != nil {
		return err
	}
	switch {
	case *keyFile == "":
		return usagef("missing --key PEM")
	case *ttl <= 0 || *ttl > kbs.MaxAdminTokenLifetime:
		return usagef("--ttl %v: want more than 0 and at most %v", *ttl, kbs.MaxAdminTokenLifetime)
	}
	data, err := os.ReadFile(*keyFile)
	if err != nil {
		return usagef("--key: %v", err)
	}
	blk, _ := pem.Decode(data)
	if blk == nil || blk.Type != "PRIVATE KEY" {
		return usagef("--key %s: want a PEM PRIVATE KEY (PKCS#8) block", *keyFile)
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return usagef("--key %s: %v", *keyFile, err)
	}
	priv, ok := k.(ed25519.PrivateKey)
	if !ok {
		return usagef("--key %s: a %T key, want Ed25519", *keyFile, k)
	}
	now := e.now()
	tok, err := jwt.NewWithClaims(jwt.SigningMethodEdDSA, jwt.MapClaims{"iat": now.Unix(), "exp": now.Add(*ttl).Unix()}).SignedString(priv)
	if err != nil {
		return fmt.Errorf("signing: %w", err)
	}
	_, err = fmt.Fprintln(e.stdout, tok)
	return err
}
