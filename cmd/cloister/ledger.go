package main

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"sync"
	"syscall"

	"github.com/cloister-dev/cloister/enclave"
	"github.com/cloister-dev/cloister/evidence/pcs"
	"github.com/cloister-dev/cloister/host"
	"github.com/cloister-dev/cloister/ledger/aclapi"
	"github.com/cloister-dev/cloister/ledger/ledgerapp"
	"github.com/cloister-dev/cloister/tee"
)

// ledgerNodeCommand is the hidden subcommand under which this binary is
// the ledger's enclave app, launched by 'cloister ledger serve' through
// host.Run (the path of 'cloister run').
const ledgerNodeCommand = "ledger-node"

const ledgerServeHelp = `Run a confidential ledger node on the simulator, as an enclave app launched
the way 'cloister run' launches apps (this binary is the app), serving Azure
Confidential Ledger's data-plane REST API (api-version 2022-05-13 and
later) on --listen, so Microsoft's ACL clients work against it.

Inside the enclave the node makes a service key and a node key; the service
certificate (self-signed, CA, naming the endpoint) carries RA-TLS evidence
binding the service key: attest it with 'cloister verify cert' and then give
it to ACL clients as the ledger's identity. It is printed on stdout at start
and written to --service-cert-out. TLS serves the node certificate (issued
by the service key) with the service certificate above it. Receipts are
ACL's, signed by the node key.

Users are certificate users: the user id is the SHA-256 fingerprint of the
client certificate (uppercase colon hex). --admin-cert / --admin name the
first administrators (of a ledger with no user yet; ignored afterwards, so
that whoever starts the ledger cannot make itself administrator later); they
add others with PATCH /app/users/{id}.

Entries are kept in sealed, hash-chained segments in a bbolt file under
--state; a torn, edited, dropped, reordered or replayed segment is refused
at startup. SIGINT/SIGTERM stop the node.

Replicated (raft, go.etcd.io/raft/v3): --replica-listen HOST:PORT makes the
node one of several, talking raft over mutually attested TLS there, with
--node-id N (unique, never reused). Without --join it starts a new service
(the bootstrap node); with --join HOST:PORT (another node's
--replica-listen) it joins that service: a node is admitted only if its
evidence shows the same measurement as the running nodes. --trust-root
(e.g. <(cloister sim root)) and --collateral (e.g. <(cloister sim
collateral)) verify the peers' evidence. Every node serves the ACL API on
its own --listen with the one service certificate; writes on a follower
are forwarded to the leader through raft; reads answer from the node's
committed state, naming it (x-cloister-node-id) and the transaction read at
(x-ms-ccf-transaction-id). A restarted node resumes from its sealed state.
` + simHelpCommon

func runLedgerServe(e *env, args []string) error {
	fs := newFlagSet("ledger serve", "--listen HOST:PORT (--admin-cert PEM | --admin ID)... [--name DNS]... [--state DIR] [--sim-dir DIR] [--service-cert-out FILE] [--replica-listen HOST:PORT --node-id N --trust-root PEM --collateral FILE [--join HOST:PORT]]", ledgerServeHelp)
	listen := fs.String("listen", "127.0.0.1:8443", "`HOST:PORT` to serve on")
	var adminCerts, admins, names stringList
	fs.Var(&adminCerts, "admin-cert", "`PEM` certificate of an administrator; repeatable")
	fs.Var(&admins, "admin", "user `ID` (uppercase colon-hex SHA-256 of a certificate) of an administrator; repeatable")
	fs.Var(&names, "name", "`DNS` name of the endpoint for the certificates (besides localhost); repeatable")
	state := fs.String("state", "", "state `DIR` for the ledger's sealed segments")
	certOut := fs.String("service-cert-out", "", "write the service certificate (PEM) to `FILE`")
	signEvery := fs.Int("sign-every", 0, "sign after `N` transactions at most (0: 2000)")
	signInterval := fs.Duration("sign-interval", 0, "sign after this long at most (0: 10ms)")
	kind := fs.String("tee", string(tee.KindSimSGX), "`TEE`: sim-sgx or sim-tdx")
	netns := fs.Bool("netns", true, "run the node in its own network namespace where permitted")
	replicaListen := fs.String("replica-listen", "", "node-to-node `HOST:PORT` (raft over attested TLS); makes the node a replica")
	join := fs.String("join", "", "`HOST:PORT` of a running node's --replica-listen to join; empty starts a new service")
	nodeID := fs.Uint64("node-id", 0, "raft `ID` of this node (unique, never reused); required with --replica-listen")
	trustRoot := fs.String("trust-root", "", "`PEM` root certificate(s) for peers' evidence; required with --replica-listen")
	collateral := fs.String("collateral", "", "collateral bundle `FILE` for peers' evidence; required with --replica-listen")
	dir := simDirFlag(fs)
	if err := parseNoArgs(e, fs, args); err != nil {
		return err
	}
	if err := checkChoice("tee", *kind, simTEEKinds); err != nil {
		return err
	}
	if err := checkHostPort("listen", *listen, false, false); err != nil {
		return err
	}
	var replicaArgs []string
	if *replicaListen == "" {
		if *join != "" || *nodeID != 0 || *trustRoot != "" || *collateral != "" {
			return usagef("--join, --node-id, --trust-root and --collateral need --replica-listen")
		}
	} else {
		if err := checkHostPort("replica-listen", *replicaListen, false, false); err != nil {
			return err
		}
		if *join != "" {
			if err := checkHostPort("join", *join, false, false); err != nil {
				return err
			}
		}
		if *nodeID == 0 {
			return usagef("--replica-listen needs --node-id N (N > 0)")
		}
		if *trustRoot == "" || *collateral == "" {
			return usagef("--replica-listen needs --trust-root and --collateral to verify peers")
		}
		root, err := os.ReadFile(*trustRoot)
		if err != nil {
			return usagef("--trust-root: %v", err)
		}
		if _, err := parseCertsPEM(root); err != nil {
			return usagef("--trust-root %s: %v", *trustRoot, err)
		}
		col, err := os.ReadFile(*collateral)
		if err != nil {
			return usagef("--collateral: %v", err)
		}
		if _, err := pcs.ParseBundle(col); err != nil {
			return usagef("--collateral %s: %v", *collateral, err)
		}
		replicaArgs = []string{"--replica-listen", *replicaListen, "--join", *join, "--node-id", fmt.Sprint(*nodeID),
			"--trust-root-pem", base64.StdEncoding.EncodeToString(root), "--collateral-json", base64.StdEncoding.EncodeToString(col)}
	}
	if *signEvery < 0 || *signInterval < 0 {
		return usagef("--sign-every and --sign-interval must not be negative")
	}
	ids := append([]string(nil), admins...)
	for _, f := range adminCerts {
		b, err := os.ReadFile(f)
		if err != nil {
			return usagef("--admin-cert: %v", err)
		}
		blk, _ := pem.Decode(b)
		if blk == nil || blk.Type != "CERTIFICATE" {
			return usagef("--admin-cert %s: no PEM CERTIFICATE", f)
		}
		if _, err := x509.ParseCertificate(blk.Bytes); err != nil {
			return usagef("--admin-cert %s: %v", f, err)
		}
		ids = append(ids, aclapi.UserID(blk.Bytes))
	}
	if len(ids) == 0 {
		return usagef("name at least one administrator (--admin-cert or --admin)")
	}
	simDir, err := dir()
	if err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("finding this binary: %w", err)
	}
	appArgs := []string{ledgerNodeCommand, "--listen", *listen, "--sign-every", fmt.Sprint(*signEvery), "--sign-interval", signInterval.String()}
	appArgs = append(appArgs, replicaArgs...)
	allowListen := []string{*listen}
	if *replicaListen != "" {
		allowListen = append(allowListen, *replicaListen)
	}
	for _, id := range ids {
		appArgs = append(appArgs, "--admin", id)
	}
	for _, n := range names {
		appArgs = append(appArgs, "--name", n)
	}
	stderr := e.stderr
	if _, ok := stderr.(*os.File); !ok {
		stderr = &lockedWriter{w: stderr}
	}
	out := &certCapture{w: e.stdout, path: *certOut}
	cfg := host.Config{
		App: self, Args: appArgs, TEE: tee.Kind(*kind), SimDir: simDir,
		Listen: allowListen, Stdout: out, Stderr: stderr,
		Logger: slog.New(slog.NewTextHandler(stderr, nil)), Netns: *netns, Grace: host.DefaultGrace, Now: e.now,
	}
	if *state != "" {
		cfg.StorePath = filepath.Join(*state, "ledger.db")
	}
	ctx, stop := signal.NotifyContext(e.ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	code, err := host.Run(ctx, cfg)
	if err != nil {
		return err
	}
	if out.err != nil {
		return out.err
	}
	if code != 0 {
		return &exitStatusError{code: code, msg: fmt.Sprintf("ledger node exited with status %d", code)}
	}
	return nil
}

// certCapture passes the node's stdout through and writes the first PEM
// certificate after ledgerapp.CertBanner to path.
type certCapture struct {
	mu   sync.Mutex
	w    io.Writer
	path string
	buf  []byte
	done bool
	err  error
}

func (c *certCapture) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.path != "" && !c.done {
		c.buf = append(c.buf, p...)
		if i := bytes.Index(c.buf, []byte(ledgerapp.CertBanner)); i >= 0 {
			if blk, _ := pem.Decode(c.buf[i+len(ledgerapp.CertBanner):]); blk != nil {
				c.done = true
				tmp := c.path + ".tmp"
				err := os.WriteFile(tmp, pem.EncodeToMemory(blk), 0o644)
				if err == nil {
					err = os.Rename(tmp, c.path)
				}
				if err != nil {
					c.err = fmt.Errorf("--service-cert-out: %w", err)
				}
				c.buf = nil
			}
		}
	}
	return c.w.Write(p)
}

// runLedgerNode is the enclave side: it must run under host.Run.
func runLedgerNode(e *env, args []string) error {
	fs := newFlagSet(ledgerNodeCommand, "--listen ADDR [--admin ID]... [--name DNS]...", "The ledger node's enclave app; launched by 'cloister ledger serve'.\n")
	listen := fs.String("listen", "127.0.0.1:8443", "`ADDR` to listen on, through the host")
	var admins, names stringList
	fs.Var(&admins, "admin", "administrator user `ID`; repeatable")
	fs.Var(&names, "name", "`DNS` name; repeatable")
	signEvery := fs.Int("sign-every", 0, "see ledger serve")
	signInterval := fs.Duration("sign-interval", 0, "see ledger serve")
	replicaListen := fs.String("replica-listen", "", "see ledger serve")
	join := fs.String("join", "", "see ledger serve")
	nodeID := fs.Uint64("node-id", 0, "see ledger serve")
	rootB64 := fs.String("trust-root-pem", "", "base64 of the --trust-root file")
	colB64 := fs.String("collateral-json", "", "base64 of the --collateral file")
	if err := parseNoArgs(e, fs, args); err != nil {
		return err
	}
	var rc *ledgerapp.ReplicaConfig
	if *replicaListen != "" {
		root, err1 := base64.StdEncoding.DecodeString(*rootB64)
		col, err2 := base64.StdEncoding.DecodeString(*colB64)
		if err := errors.Join(err1, err2); err != nil {
			return usagef("--trust-root-pem/--collateral-json: %v", err)
		}
		roots, err := parseCertsPEM(root)
		if err != nil {
			return usagef("--trust-root-pem: %v", err)
		}
		bundle, err := pcs.ParseBundle(col)
		if err != nil {
			return usagef("--collateral-json: %v", err)
		}
		rc = &ledgerapp.ReplicaConfig{NodeID: *nodeID, Listen: *replicaListen, Join: *join, TrustRoots: roots, Collateral: bundle}
	}
	cfg := ledgerapp.Config{
		Listen: *listen, Admins: admins, DNSNames: append([]string{"localhost"}, names...),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, SignEvery: *signEvery, SignInterval: *signInterval,
	}
	if h, _, err := net.SplitHostPort(*listen); err == nil {
		if ip := net.ParseIP(h); ip != nil && !ip.IsUnspecified() && !ip.Equal(cfg.IPAddresses[0]) {
			cfg.IPAddresses = append(cfg.IPAddresses, ip)
		}
	}
	enclave.Run(func(ctx context.Context, env *enclave.Env) error {
		if rc != nil {
			return ledgerapp.ServeReplica(ctx, env, cfg, *rc, e.stdout)
		}
		return ledgerapp.Serve(ctx, env, cfg, e.stdout)
	})
	return nil
}
