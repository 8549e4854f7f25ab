package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/cloister-dev/cloister/attest"
	"github.com/cloister-dev/cloister/attest/etcdstate"
	"github.com/cloister-dev/cloister/attest/tokens"
	"github.com/cloister-dev/cloister/evidence"
	"github.com/cloister-dev/cloister/evidence/pcs"
	"github.com/cloister-dev/cloister/policy"
	"github.com/cloister-dev/cloister/ratls"
	"github.com/cloister-dev/cloister/tee"
)

const attestServeHelp = `Run the MAA-compatible attestation service (docs/maa-contract.md).

Relying parties POST evidence to /attest/{SgxEnclave,OpenEnclave,TdxVm,SevSnpVm}
and get a JWT signed by a key whose certificate (GET /certs, x5c) carries this
service's own evidence from --tee. --trust-root adds roots evidence may chain
to besides Intel's and AMD's (the simulator root for development).
--collateral-dir holds DCAP collateral bundles (JSON, from 'cloister collateral
fetch' or 'cloister sim collateral'); with --tee sim-* the simulator's own
collateral is added. With --pcs, collateral no bundle covers is fetched from
Intel PCS (or --pcs-url, e.g. a PCCS) and cached on disk until its nextUpdate.
Without collateral, tcb_status is "NotEvaluated".
--public-url is the URL clients use (the iss claim, the jku header, the
discovery document's jwks_uri); without it the URL is made from --addr, which
must then name one host (bound to 0.0.0.0 or :: the service refuses to start,
as it cannot know its own name). With --tls the certificate also names the
public URL's host and the listen IP.
Policy and policy-signer management (GET/PUT /policies, :reset, /certificates)
need "Authorization: Bearer TOKEN" with the token in --admin-token-file; with
--insecure-admin (development only) anyone may manage policy; with neither,
management is refused. Policies uploaded with PUT /policies/{type} are kept
under --state. With --policy-signer (isolated mode) only policy documents and
resets signed by one of those certificates (x5c[0]) are accepted.
The token-signing key is rotated every --key-rotation (0: never) and on SIGHUP:
a new key with a new RA-TLS certificate signs from then on, and retired keys
stay in /certs until the tokens they signed have expired (8 hours).
With --etcd (comma-separated client URLs of an etcd cluster) this process is
one replica of several: policies, policy signers and the published token keys
live in etcd (under --etcd-prefix), not under --state. Each replica signs with
its own attested key; /certs on every replica lists every live replica's keys
(a stopped replica's until its tokens expire); a policy or signer change
returns only once every live replica applies it (503 ChangeNotConfirmed if the
request's deadline passes first). A replica that cannot renew its etcd lease
(--replica-ttl) stops signing until it has caught up. --etcd-cacert checks the
members' certificates, --etcd-cert/--etcd-key authenticate this replica to them.
etcd runs outside the TEE: without --policy-signer whoever can write etcd sets
the policy; with it, replicas use only policies signed by a signer of the set.
Give every replica the same --public-url (the load balancer's), --alg and
--policy-signer.
Stops cleanly on SIGINT or SIGTERM. Logs are JSON lines on standard error.
`

const attestVerifyTokenHelp = `Validate a token from a Cloister attestation service, attesting the service first.

Fetches SERVICE/certs (over an https:// URL, from a service run with --tls, the
connection itself is attested with RA-TLS first), verifies the RA-TLS
certificate in each key's x5c (its
evidence and key binding, with --trust-root / --collateral / --no-collateral as
'cloister verify cert'), checks that it certified the token-signing key, then
validates TOKEN's signature and times with that key. Prints the token's claims.

The service's evidence is appraised. Without policy flags the default is:
any identity, no debug enclave (the host can read a debug enclave's memory,
and with it the signing key), and tcb_status UpToDate only: an OutOfDate or
revoked platform cannot keep a key secret, and without collateral (--no-collateral)
the status is NotEvaluated, which the default refuses too. Pin the service
with --mrenclave (or --mrsigner with --product-id); widen with --allow-status
(with --any-identity or an identity flag). --skip-appraisal checks only
authenticity and key binding, for inspecting a development service.
`

// runAttestServe implements "cloister attest serve".
func runAttestServe(e *env, args []string) error {
	fs := newFlagSet("attest serve", "--addr HOST:PORT [--public-url URL] [--tls] [--etcd URLS [--etcd-cacert PEM] [--etcd-cert PEM --etcd-key PEM]] [--admin-token-file FILE | --insecure-admin] [--tee T] [--sim-dir DIR] [--state DIR] [--trust-root PEM]... [--collateral-dir DIR] [--alg RS256|ES256]", attestServeHelp)
	addr := fs.String("addr", "127.0.0.1:8080", "listen `ADDR`")
	publicURL := fs.String("public-url", "", "the service's `URL` as clients reach it (iss, jku, jwks_uri); default: from --addr, which must then name one host")
	adminTokenFile := fs.String("admin-token-file", "", "`FILE` holding the bearer token policy management requests must carry")
	insecureAdmin := fs.Bool("insecure-admin", false, "let anyone manage policies and policy signers, unauthenticated (development only)")
	state := fs.String("state", "", "`DIR` for uploaded policies (default: in memory only)")
	alg := fs.String("alg", "RS256", "token signing `ALG`: RS256 or ES256")
	inflight := fs.Int("max-inflight", attest.DefaultMaxInFlight, "attestations evaluated at once; more wait 2 s for a slot, then get 503 with Retry-After")
	rotation := fs.Duration("key-rotation", 24*time.Hour, "rotate the token-signing key this often (0: never; SIGHUP rotates now)")
	useTLS := fs.Bool("tls", false, "serve over RA-TLS: a certificate whose evidence binds its key, made on this platform")
	var tf serviceTEEFlags
	tf.register(fs)
	etcdEndpoints := fs.String("etcd", "", "comma-separated etcd client `URLs`: run as one replica sharing policies, signers and keys through etcd")
	etcdCA := fs.String("etcd-cacert", "", "`PEM` CA certificates the etcd members' certificates must chain to (https endpoints)")
	etcdCert := fs.String("etcd-cert", "", "`PEM` client certificate for etcd (with --etcd-key)")
	etcdKey := fs.String("etcd-key", "", "`PEM` private key of --etcd-cert")
	etcdPrefix := fs.String("etcd-prefix", etcdstate.DefaultPrefix, "etcd key `PREFIX` shared by this service's replicas")
	replicaID := fs.String("replica-id", "", "this replica's `ID` in etcd (default: random)")
	replicaTTL := fs.Duration("replica-ttl", attest.DefaultReplicaTTL, "etcd lease of this replica: it stops signing when it cannot renew it for this long")
	var signers stringList
	fs.Var(&signers, "policy-signer", "isolated mode: `PEM` certificate whose signed policies are the only ones accepted (repeatable)")
	ledgerFlags := addLedgerClientFlags(fs, "")
	if err := parseNoArgs(e, fs, args); err != nil {
		return err
	}
	if *alg != "RS256" && *alg != "ES256" {
		return usagef("--alg %q: want RS256 or ES256", *alg)
	}
	if err := tf.check(e); err != nil {
		return err
	}
	if err := checkHostPort("addr", *addr, true, false); err != nil {
		return err
	}
	if *inflight < 1 || *inflight > 1<<16 {
		return usagef("--max-inflight %d: want 1..65536", *inflight)
	}
	if *rotation < 0 || (*rotation > 0 && *rotation < time.Hour) {
		// Retired keys stay published for a token's lifetime (8 h), and
		// /certs holds at most 16 keys.
		return usagef("--key-rotation %v: want 0 (never) or at least 1h", *rotation)
	}
	etcdOpts, err := etcdOptions(*etcdEndpoints, *etcdCA, *etcdCert, *etcdKey, *etcdPrefix)
	if err != nil {
		return err
	}
	if etcdOpts != nil && (*replicaTTL < time.Second || *replicaTTL > time.Minute) {
		return usagef("--replica-ttl %v: want 1s..1m", *replicaTTL)
	}
	public, err := servicePublicURL(*publicURL, *addr, *useTLS)
	if err != nil {
		return err
	}
	adminToken, err := readAdminToken(*adminTokenFile, *insecureAdmin)
	if err != nil {
		return err
	}
	log := slog.New(slog.NewJSONHandler(e.stderr, nil))
	cfg := attest.Config{Now: e.now, Alg: *alg, StateDir: *state, Logger: log, KeyRotation: *rotation, MaxInFlight: *inflight,
		AdminToken: adminToken, InsecureAdmin: *insecureAdmin}
	switch {
	case *insecureAdmin:
		log.Warn("--insecure-admin: policy and policy-signer management are open to anyone who can reach the service, unauthenticated; for development only")
	case adminToken == "":
		log.Info("policy management is disabled: no --admin-token-file")
	}
	for _, p := range signers {
		certs, err := readCertificates(p)
		if err != nil {
			return fmt.Errorf("policy signers: %w", err)
		}
		cfg.PolicySigners = append(cfg.PolicySigners, certs...)
	}
	st, err := tf.open(e, *state, log)
	if err != nil {
		return err
	}
	cfg.TrustRoots, cfg.Collateral, cfg.Platform = st.roots, st.collateral, st.platform
	p := st.platform
	ln, public, err := listenService(e, *addr, public, *useTLS, p)
	if err != nil {
		return err
	}
	defer ln.Close()
	cfg.Issuer = public.String()
	if err := attestLedger(ledgerFlags, e, &cfg); err != nil {
		return err
	}
	if etcdOpts != nil {
		shared, err := etcdstate.Open(*etcdOpts)
		if err != nil {
			return err
		}
		defer shared.Close()
		cfg.Shared, cfg.ReplicaID, cfg.ReplicaTTL = shared, *replicaID, *replicaTTL
		if etcdOpts.TLS == nil {
			log.Warn("--etcd over plain http: etcd traffic is neither encrypted nor authenticated; use https endpoints with --etcd-cacert/--etcd-cert/--etcd-key outside a test")
		}
		if len(cfg.PolicySigners) == 0 {
			log.Warn("--etcd without --policy-signer: etcd is trusted, whoever can write it sets the attestation policy")
		}
	}
	svc, err := attest.New(cfg)
	if err != nil {
		return err
	}
	defer svc.Close()
	defer tuneServiceGC()()
	ctx, stop := signal.NotifyContext(e.ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	// SIGHUP is caught from here until serving ends, so that it never
	// takes its default action (terminate) while the service runs.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go rotateOnHangup(ctx, hup, svc, log)
	return serveUntil(ctx, ln, svc, log, "attestation service", st.kind)
}

// etcdOptions checks the --etcd flags and loads their certificates; nil
// without --etcd. Endpoints are http:// or https:// URLs with a host; TLS
// files need https endpoints, and https endpoints get TLS even without
// them (the system roots then check the members).
func etcdOptions(endpoints, caFile, certFile, keyFile, prefix string) (*etcdstate.Options, error) {
	if endpoints == "" {
		if caFile != "" || certFile != "" || keyFile != "" {
			return nil, usagef("--etcd-cacert, --etcd-cert and --etcd-key need --etcd")
		}
		return nil, nil
	}
	if (certFile == "") != (keyFile == "") {
		return nil, usagef("--etcd-cert and --etcd-key go together")
	}
	if !strings.HasPrefix(prefix, "/") || !strings.HasSuffix(prefix, "/") {
		return nil, usagef("--etcd-prefix %q: want a key prefix that starts and ends with /", prefix)
	}
	opts := &etcdstate.Options{Prefix: prefix}
	secure := 0
	for _, ep := range strings.Split(endpoints, ",") {
		u, err := url.Parse(strings.TrimSpace(ep))
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") {
			return nil, usagef("--etcd %q: want comma-separated http:// or https:// client URLs (host:port, no path)", ep)
		}
		if u.Scheme == "https" {
			secure++
		}
		opts.Endpoints = append(opts.Endpoints, u.String())
	}
	if secure != 0 && secure != len(opts.Endpoints) {
		return nil, usagef("--etcd: mixes http:// and https:// endpoints")
	}
	if secure == 0 {
		if caFile != "" || certFile != "" {
			return nil, usagef("--etcd-cacert/--etcd-cert need https:// endpoints")
		}
		return opts, nil
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile != "" {
		certs, err := readCertificates(caFile)
		if err != nil {
			return nil, fmt.Errorf("--etcd-cacert: %w", err)
		}
		tc.RootCAs = x509.NewCertPool()
		for _, c := range certs {
			tc.RootCAs.AddCert(c)
		}
	}
	if certFile != "" {
		kp, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("--etcd-cert/--etcd-key: %w", err)
		}
		tc.Certificates = []tls.Certificate{kp}
	}
	opts.TLS = tc
	return opts, nil
}

// servicePublicURL checks --public-url: an absolute http:// or https://
// URL with a host and nothing after it (MAA instance URLs have no path; jku
// and jwks_uri append /certs), https when the service itself serves TLS. It
// returns nil when the flag is empty and the URL is to be derived from
// --addr, which must then name one host: bound to 0.0.0.0 or :: the
// service cannot know the name clients use, and a guess (the bind address,
// or this machine's hostname) would put an issuer in every token that
// clients checking iss reject.
func servicePublicURL(flagValue, addr string, useTLS bool) (*url.URL, error) {
	if flagValue == "" {
		host, _, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, usagef("--addr %q: %v", addr, err)
		}
		if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
			return nil, usagef("--addr %q listens on every interface, so the service cannot tell its own URL: give --public-url, the URL clients use (e.g. https://attest.example.com:8443)", addr)
		}
		if _, err := publicHost(host); err != nil {
			return nil, usagef("--addr %q cannot be the service's URL (%v): give --public-url, the URL clients use", addr, err)
		}
		return nil, nil
	}
	u, err := url.Parse(strings.TrimSuffix(flagValue, "/"))
	switch {
	case err != nil || (u.Scheme != "http" && u.Scheme != "https"):
		return nil, usagef("--public-url %q: want an http:// or https:// URL", flagValue)
	case u.Host == "" || u.Hostname() == "":
		return nil, usagef("--public-url %q: no host", flagValue)
	case u.Path != "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil || u.ForceQuery:
		return nil, usagef("--public-url %q: want scheme://host[:port] only, no path, query or user", flagValue)
	case useTLS && u.Scheme != "https":
		return nil, usagef("--public-url %q: the service serves https with --tls, so its URL starts with https://", flagValue)
	}
	host, err := publicHost(u.Hostname())
	if err != nil {
		return nil, usagef("--public-url %q: %v", flagValue, err)
	}
	if strings.HasSuffix(u.Host, ":") || u.Port() != "" {
		n, err := strconv.Atoi(u.Port())
		if err != nil || n < 1 || n > 65535 {
			return nil, usagef("--public-url %q: the port must be 1 to 65535", flagValue)
		}
		host = net.JoinHostPort(host, strconv.Itoa(n))
	} else if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	return &url.URL{Scheme: u.Scheme, Host: host}, nil
}

// publicHost checks the host of --public-url and returns it in the form
// every client compares: an IP (not 0.0.0.0 or ::, and without an IPv6
// zone, which names an interface of this machine only) in its canonical
// text, or a DNS name of letters, digits and hyphens in lower case. iss is
// compared byte for byte, and URL parsers (WHATWG's, which Node's SDK
// uses) lower-case host names; the host is also a subjectAltName of the
// --tls certificate, where wildcards and other characters have meanings
// of their own.
func publicHost(h string) (string, error) {
	if ip, err := netip.ParseAddr(h); err == nil {
		switch {
		case ip.Zone() != "":
			return "", fmt.Errorf("IPv6 zone %q names an interface of this machine, not an address clients use", ip.Zone())
		case ip.IsUnspecified():
			return "", fmt.Errorf("%s means every interface; give the address or name clients use", h)
		}
		return ip.String(), nil
	}
	h = strings.ToLower(h)
	if len(h) > 253 {
		return "", errors.New("host name longer than 253 characters")
	}
	labels := strings.Split(h, ".")
	for _, l := range labels {
		ok := l != "" && len(l) <= 63 && l[0] != '-' && l[len(l)-1] != '-'
		for _, c := range l {
			ok = ok && (c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-')
		}
		if !ok {
			return "", fmt.Errorf("host %q is neither an IP address nor a DNS name (labels of 1 to 63 letters, digits and inner hyphens)", h)
		}
	}
	if last := labels[len(labels)-1]; strings.Trim(last, "0123456789") == "" {
		// URL parsers read a numeric last label as IPv4 and refuse it.
		return "", fmt.Errorf("host %q ends in a numeric label but is not an IP address", h)
	}
	return h, nil
}

// certificateNames are the subjectAltNames of the --tls certificate:
// "localhost", the public URL's host (a name or an IP) and the listen IP
// (unless it is 0.0.0.0 or ::), so that clients that check names accept it
// however they reach the service.
func certificateNames(public *url.URL, listen net.Addr) (dns []string, ips []net.IP) {
	dns = []string{"localhost"}
	add := func(host string) {
		if ip := net.ParseIP(host); ip != nil {
			if !ip.IsUnspecified() && !slices.ContainsFunc(ips, ip.Equal) {
				ips = append(ips, ip)
			}
		} else if host != "" && !slices.Contains(dns, host) {
			dns = append(dns, host)
		}
	}
	add(public.Hostname())
	if ta, ok := listen.(*net.TCPAddr); ok {
		add(ta.IP.String())
	}
	return dns, ips
}

// readAdminToken reads --admin-token-file: the whole file, surrounding
// white space removed, must be a non-empty token. It and --insecure-admin
// exclude each other.
func readAdminToken(file string, insecure bool) (string, error) {
	if file == "" {
		return "", nil
	}
	if insecure {
		return "", usagef("--admin-token-file and --insecure-admin exclude each other")
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return "", usagef("--admin-token-file: %v", err)
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		return "", usagef("--admin-token-file %s is empty", file)
	}
	if strings.ContainsAny(tok, " \t\r\n") {
		return "", usagef("--admin-token-file %s: the token must be one line without spaces (it is sent as Authorization: Bearer TOKEN)", file)
	}
	return tok, nil
}

// attestHTTPServer is the HTTP server of `attest serve` (and of `bench
// attest`, which must measure the same thing): bounded header, read, write
// and idle times, bounded headers.
//
// The server's own errors (refused TLS handshakes, say) go to log as
// warnings, not to the standard logger's unstructured lines.
func attestHTTPServer(h http.Handler, log *slog.Logger) *http.Server {
	return &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second,
		WriteTimeout: time.Minute, IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 64 << 10,
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
}

// serviceGCPercent is the garbage collector's target while the attestation
// service runs. Its live heap is a few megabytes, so Go's default (100)
// collects every few hundred requests; 400 spends ~10% less CPU per token
// (`bench attest`) for a heap of tens of megabytes.
const serviceGCPercent = 400

// tuneServiceGC applies serviceGCPercent unless the operator set GOGC, and
// returns what restores the previous target (the CLI also runs in-process
// in tests).
func tuneServiceGC() (restore func()) {
	if os.Getenv("GOGC") != "" {
		return func() {}
	}
	prev := debug.SetGCPercent(serviceGCPercent)
	return func() { debug.SetGCPercent(prev) }
}

// rotateOnHangup rotates the service's signing key on each signal from hup
// until ctx ends: an operator's way to retire a key now.
func rotateOnHangup(ctx context.Context, hup <-chan os.Signal, svc *attest.Service, log *slog.Logger) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			rctx, cancel := context.WithTimeout(ctx, attest.DefaultTimeout)
			if err := svc.RotateKey(rctx); err != nil {
				log.Error("signing key rotation on SIGHUP failed", slog.String("error", err.Error()))
			}
			cancel()
		}
	}
}

// serveUntil serves h on ln until ctx ends, then shuts down gracefully;
// what names the service in the "… listening" log line.
func serveUntil(ctx context.Context, ln net.Listener, h http.Handler, log *slog.Logger, what string, kind tee.Kind) error {
	srv := attestHTTPServer(h, log)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	log.Info(what+" listening", slog.String("addr", ln.Addr().String()), slog.String("tee", string(kind)))
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	log.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	return nil
}

// readBundles loads every *.json collateral bundle in dir.
func readBundles(dir string) ([]*pcs.Bundle, error) {
	names, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil {
		return nil, fmt.Errorf("collateral dir: %w", err)
	}
	var out []*pcs.Bundle
	for _, n := range names {
		data, err := os.ReadFile(n)
		if err != nil {
			return nil, fmt.Errorf("collateral: %w", err)
		}
		b, err := pcs.ParseBundle(data)
		if err != nil {
			return nil, fmt.Errorf("collateral %s: %w", n, err)
		}
		out = append(out, b)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("collateral dir %s: no *.json bundles", dir)
	}
	return out, nil
}

// collateralSource picks the bundle whose TCB info names the quote's FMSPC
// and TEE, else asks online (PCS, cached) when given. Bundles and fetched
// collateral are unverified here; evidence.Verify checks them.
func collateralSource(bundles []*pcs.Bundle, online func(context.Context, pcs.Query) (*pcs.Bundle, error)) func(context.Context, []byte) (*pcs.Bundle, error) {
	return func(ctx context.Context, raw []byte) (*pcs.Bundle, error) {
		q, err := evidence.CollateralQuery(raw)
		if err != nil {
			return nil, fmt.Errorf("collateral query: %w", err)
		}
		want := hex.EncodeToString(q.FMSPC)
		for _, b := range bundles {
			var info struct {
				ID    string `json:"id"`
				FMSPC string `json:"fmspc"`
			}
			if json.Unmarshal([]byte(b.TCBInfo), &info) != nil || !strings.EqualFold(info.FMSPC, want) {
				continue
			}
			if (info.ID == "TDX") == (q.TEE == pcs.TDX) {
				return b, nil
			}
		}
		if online != nil {
			return online(ctx, q)
		}
		return nil, fmt.Errorf("no bundle for FMSPC %s", want)
	}
}

// runAttestVerifyToken implements "cloister attest verify-token".
func runAttestVerifyToken(e *env, args []string) error {
	fs := newFlagSet("attest verify-token", "TOKEN --service URL [--trust-root PEM] [--collateral BUNDLE | --no-collateral]", attestVerifyTokenHelp)
	service := fs.String("service", "", "the service's base `URL` (required)")
	var rf ratlsFlags
	rf.register(fs)
	skipAppraisal := fs.Bool("skip-appraisal", false, "do not appraise the service's evidence (authenticity and key binding only; for development)")
	pos, err := parseArgs(e, fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("want one TOKEN argument, got %d", len(pos))
	}
	if *service == "" {
		return usagef("missing --service")
	}
	opts, when, err := rf.options(e, fs)
	if err != nil {
		return err
	}
	switch {
	case *skipAppraisal && !opts.SkipAppraisal:
		return usagef("--skip-appraisal and policy flags exclude each other")
	case opts.SkipAppraisal && !*skipAppraisal:
		// No policy flags: the careful default of the help text.
		opts.SkipAppraisal = false
		opts.Policy = policy.Policy{AnyIdentity: true}
	}
	u, err := url.Parse(*service)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return usagef("--service %q: want an http:// or https:// base URL", *service)
	}
	client := http.DefaultClient
	if u.Scheme == "https" {
		// A service run with --tls presents an RA-TLS certificate: the
		// connection is attested with the same options as the keys.
		tc, err := ratls.ClientConfig(opts)
		if err != nil {
			return err
		}
		tr := &http.Transport{TLSClientConfig: tc}
		defer tr.CloseIdleConnections()
		client = &http.Client{Transport: tr, CheckRedirect: func(req *http.Request, _ []*http.Request) error {
			if req.URL.Scheme != "https" {
				return fmt.Errorf("refusing a redirect from the attested service to %s", req.URL.Redacted())
			}
			return nil
		}}
	}
	keys, err := fetchJWKS(e.ctx, client, strings.TrimRight(*service, "/")+"/certs")
	if err != nil {
		return err
	}
	if _, err := verifyToken(e.ctx, pos[0], keys, opts, when); err != nil {
		return err
	}
	// Printed from the verified payload with exact numbers (exactClaims).
	claims, err := exactClaims(pos[0])
	if err != nil {
		return err
	}
	return printJSON(e.stdout, claims)
}

type jwk struct {
	Kid string   `json:"kid"`
	X5C []string `json:"x5c"`
}

// fetchJWKS gets the service's JWK set with client, bounded in size and time.
func fetchJWKS(ctx context.Context, client *http.Client, url string) ([]jwk, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, fmt.Errorf("--service: %w", err)
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetching %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("fetching %s: %s", url, resp.Status)
	}
	var set struct{ Keys []jwk }
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&set); err != nil {
		return nil, fmt.Errorf("JWKS from %s: %w", url, err)
	}
	return set.Keys, nil
}

// checkTokenKeyClaim checks what the service's RA-TLS evidence says of the
// token key, beyond the certificate signature: its verified CCC claims
// buffer names SHA-256 of the signing key (claim "cloister-token-key"), and
// kid is that hash. ra must have passed ratls.Verify (res), which checked
// that the quote binds the claims buffer read here.
func checkTokenKeyClaim(ra *x509.Certificate, res *ratls.Result, leaf *x509.Certificate, kid string) error {
	if res.Form != ratls.FormCCC {
		return fmt.Errorf("the service's RA-TLS certificate carries %v evidence; a Cloister service binds its token key in a CCC claims buffer", res.Form)
	}
	ev, err := ratls.ParseCertificate(ra)
	if err != nil {
		return fmt.Errorf("attesting the service: %w", err)
	}
	sum := sha256.Sum256(leaf.RawSubjectPublicKeyInfo)
	if got := ev.UnverifiedClaims["cloister-token-key"]; !bytes.Equal(got, sum[:]) {
		return fmt.Errorf("the service's evidence binds token key %x, but the signing certificate's key hashes to %x", got, sum)
	}
	if want := base64.RawURLEncoding.EncodeToString(sum[:]); kid != want {
		return fmt.Errorf("kid %q is not the signing key's hash %q", kid, want)
	}
	return nil
}

// verifyToken attests the key named by the token's kid (RA-TLS evidence of
// x5c[1], which must have signed x5c[0]) and validates the token with it.
func verifyToken(ctx context.Context, token string, keys []jwk, opts ratls.VerifyOptions, when time.Time) (jwt.MapClaims, error) {
	claims := jwt.MapClaims{}
	_, err := jwt.ParseWithClaims(token, claims, func(t *jwt.Token) (any, error) {
		// crit lists extensions the recipient must understand (RFC 7515
		// 4.1.11); we understand none, and the JWT library ignores crit.
		if _, ok := t.Header["crit"]; ok {
			return nil, tokens.ErrCritical
		}
		kid, _ := t.Header["kid"].(string)
		for _, k := range keys {
			if k.Kid != kid {
				continue
			}
			certs, err := attest.ParseX5C(k.X5C)
			if err != nil {
				return nil, err
			}
			if len(certs) < 2 {
				return nil, errors.New("x5c has no RA-TLS certificate: the service cannot be attested")
			}
			leaf, ra := certs[0], certs[1]
			if err := ra.CheckSignature(leaf.SignatureAlgorithm, leaf.RawTBSCertificate, leaf.Signature); err != nil {
				return nil, fmt.Errorf("signing certificate not certified by the RA-TLS key: %w", err)
			}
			res, err := ratls.Verify(ctx, ra, opts)
			if err != nil {
				return nil, fmt.Errorf("attesting the service: %w", err)
			}
			if err := checkTokenKeyClaim(ra, res, leaf, kid); err != nil {
				return nil, err
			}
			return leaf.PublicKey, nil
		}
		return nil, fmt.Errorf("no key %q in the service's JWKS", kid)
	}, jwt.WithValidMethods([]string{"RS256", "ES256"}), jwt.WithTimeFunc(func() time.Time { return when }), jwt.WithExpirationRequired())
	if err != nil {
		return nil, fmt.Errorf("token: %w", err)
	}
	return claims, nil
}

// listenService listens on addr and returns the listener (RA-TLS over
// platform p's evidence with useTLS) and the service's public URL: public
// as given, or made from addr (servicePublicURL checked that it names one
// host) with the port the listener got, as --addr may say port 0.
func listenService(e *env, addr string, public *url.URL, useTLS bool, p tee.Platform) (net.Listener, *url.URL, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, nil, fmt.Errorf("listen: %w", err)
	}
	if public == nil {
		host, _, _ := net.SplitHostPort(addr)
		host, _ = publicHost(host) // checked by servicePublicURL; lower case, canonical IP
		_, port, _ := net.SplitHostPort(ln.Addr().String())
		scheme := "http"
		if useTLS {
			scheme = "https"
		}
		public = &url.URL{Scheme: scheme, Host: net.JoinHostPort(host, port)}
	}
	if useTLS {
		dns, ips := certificateNames(public, ln.Addr())
		rs, err := ratls.NewServer(e.ctx, ratls.ServerOptions{Platform: p, Now: e.now, DNSNames: dns, IPAddresses: ips})
		if err != nil {
			ln.Close()
			return nil, nil, fmt.Errorf("RA-TLS certificate: %w", err)
		}
		tlsCfg, err := ratls.ServerConfig(rs, nil)
		if err != nil {
			ln.Close()
			return nil, nil, err
		}
		ln = tls.NewListener(ln, tlsCfg)
	}
	return ln, public, nil
}
