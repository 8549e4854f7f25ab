package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/cloister-dev/cloister/enclave"
	"github.com/cloister-dev/cloister/evidence"
	"github.com/cloister-dev/cloister/evidence/pcs"
	"github.com/cloister-dev/cloister/examples/echo/echoapp"
	"github.com/cloister-dev/cloister/host"
	"github.com/cloister-dev/cloister/policy"
	"github.com/cloister-dev/cloister/ratls"
	"github.com/cloister-dev/cloister/seal"
	"github.com/cloister-dev/cloister/tee"
	"github.com/cloister-dev/cloister/tee/appsign"
	"github.com/cloister-dev/cloister/tee/sim"
)

const demoHelp = `Run Cloister end to end on the simulator, with real cryptography:

  1. measure this binary as an enclave app (MRENCLAVE),
  2. produce an SGX quote v3 for it on the simulator, binding report data,
  3. verify the quote with the production verifier under the sim root,
     with signed sim collateral, and print the claims,
  4. show that the same quote fails under the built-in Intel root,
  5. seal a secret to the enclave, open it, and show that another enclave
     identity cannot,
  6. take the example app: examples/echo's service, which this binary
     itself serves under a hidden subcommand (or --app, a binary built
     from examples/echo),
  7. sign it with a new demo key (product 1, SVN 1, not debug),
  8. run it as 'cloister run' does, on sim-sgx, serving HTTPS over
     attested TLS on a free 127.0.0.1 port (in its own network namespace
     where the machine permits),
  9. attest it as a client during the TLS handshake: MRENCLAVE as
     'cloister measure' computes it, MRSIGNER of the demo key, SVN, TCB
     status, the certificate key bound by the evidence, the sim root
     trusted by name,
 10. run the fresh challenge: new evidence bound to this TLS session,
 11. send an echo request and store and read back a sealed value,
 12. show that a client expecting another MRENCLAVE is refused,
 13. stop the app and the host.

It exits 0 only if all of that happened. It needs only this binary: no
source tree, no Go toolchain, any working directory (its files go to a
temporary directory).

The simulator's keys go to a temporary directory unless --sim-dir is given.
`

// Bounds of the demo.
const (
	demoTimeout      = 3 * time.Minute
	demoRequestLimit = 30 * time.Second
	demoGrace        = 10 * time.Second
	// demoStopWait bounds the wait for host.Run after the app was told
	// to stop: the grace period, then the kill.
	demoStopWait = demoGrace + 20*time.Second
	// demoConfig is the demo app's enclave.json.
	demoConfig = `{"product_id": 1, "svn": 1, "debug": false}`
)

func runDemo(e *env, args []string) error {
	fs := newFlagSet("demo", "[--sim-dir DIR] [--app PATH]", demoHelp)
	dirFlag := fs.String("sim-dir", "", "simulator data `DIR` (default: a temporary directory)")
	appFlag := fs.String("app", "", "example app `PATH`, built from examples/echo (default: this binary serves it)")
	if err := parseNoArgs(e, fs, args); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(e.ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, demoTimeout)
	defer cancel()

	work, err := os.MkdirTemp("", "cloister-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	dir := *dirFlag
	if dir == "" {
		dir = filepath.Join(work, "sim")
	}
	pki, col, err := demoQuoteAndSeal(ctx, e, dir)
	if err != nil {
		return err
	}
	if err := demoRATLS(ctx, e, work, dir, *appFlag, pki, col); err != nil {
		switch {
		case errors.Is(ctx.Err(), context.DeadlineExceeded):
			return fmt.Errorf("%w\n(the demo allows %v in all)", err, demoTimeout)
		case ctx.Err() != nil:
			return fmt.Errorf("%w\n(interrupted)", err)
		}
		return err
	}
	fmt.Fprintln(e.stdout, "\nAll of the above happened: the demo passed.")
	fmt.Fprintln(e.stdout, "Next: 'cloister help' for the commands; README.md for signing apps and verifying hardware evidence.")
	return nil
}

// demoQuoteAndSeal is steps 1 to 5: quote, verify and seal in-process. It
// returns the sim PKI and collateral for the rest of the demo.
func demoQuoteAndSeal(ctx context.Context, e *env, dir string) (*sim.PKI, *pcs.Bundle, error) {
	out := e.stdout
	self, err := os.Executable()
	if err != nil {
		return nil, nil, fmt.Errorf("finding this binary: %w", err)
	}
	app, err := sim.AppFromFiles(self, "")
	if err != nil {
		return nil, nil, err
	}
	fmt.Fprintf(out, "1. measured %s\n   MRENCLAVE %x (unsigned: default debug configuration, MRSIGNER zero)\n", self, app.MRENCLAVE)

	now := e.now()
	pki, err := sim.Load(dir, rand.Reader, now)
	if err != nil {
		return nil, nil, err
	}
	p, err := sim.NewPlatform(pki, tee.KindSimSGX, app, nil)
	if err != nil {
		return nil, nil, err
	}
	var rd [64]byte
	nonce := sha256.Sum256([]byte("cloister demo"))
	copy(rd[:], nonce[:])
	quote, err := p.Evidence(ctx, rd)
	if err != nil {
		return nil, nil, err
	}
	fmt.Fprintf(out, "2. sim-sgx quote: %d bytes, SGX ECDSA quote v3, report data %x…\n", len(quote), rd[:8])

	col, err := pki.Collateral(rand.Reader, now, false)
	if err != nil {
		return nil, nil, err
	}
	opts := evidence.Options{Time: now, Collateral: col, TrustRoots: []*x509.Certificate{pki.Root}}
	c, err := evidence.Verify(ctx, quote, opts)
	if err != nil {
		return nil, nil, fmt.Errorf("the demo quote did not verify: %w", err)
	}
	fmt.Fprintf(out, "3. verified under the sim root (%s):\n   tee %s, tcb_status %s, debug %v\n   mrenclave %s\n   report_data matches: %v\n",
		pki.Root.Subject.CommonName, c.TEE, c.TCBStatus, c.Debug, c.MRENCLAVE, string(c.ReportData) == string(rd[:]))

	opts.TrustRoots = nil
	if _, err := evidence.Verify(ctx, quote, opts); err == nil {
		return nil, nil, errors.New("the demo quote verified under the Intel root: the simulator must never pass as hardware")
	} else {
		r, _ := evidence.ReasonOf(err)
		fmt.Fprintf(out, "4. under the built-in Intel root it fails, as it must (%v):\n   %v\n", r, err)
	}

	s := tee.NewSealer(p)
	blob, err := s.Seal(ctx, seal.PolicyEnclave, []byte("demo-record"), []byte("the secret"))
	if err != nil {
		return nil, nil, err
	}
	pt, err := s.Open(ctx, seal.PolicyEnclave, []byte("demo-record"), blob)
	if err != nil {
		return nil, nil, err
	}
	other := app
	other.MRENCLAVE[0] ^= 1
	op, err := sim.NewPlatform(pki, tee.KindSimSGX, other, nil)
	if err != nil {
		return nil, nil, err
	}
	_, otherErr := tee.NewSealer(op).Open(ctx, seal.PolicyEnclave, []byte("demo-record"), blob)
	if otherErr == nil {
		return nil, nil, errors.New("another enclave opened the demo's sealed blob")
	}
	fmt.Fprintf(out, "5. sealed %d bytes into a %d-byte CLS1 blob and opened it: %q\n   another MRENCLAVE cannot: %v\n", len(pt), len(blob), pt, otherErr)
	return pki, col, nil
}

// demoRATLS is steps 6 to 13: the example app over attested TLS.
func demoRATLS(ctx context.Context, e *env, work, simDir, appPath string, pki *sim.PKI, col *pcs.Bundle) error {
	out := e.stdout

	// 6. The app. The demo key is made meanwhile (a second or more of CPU).
	type keyResult struct {
		key *rsa.PrivateKey
		err error
	}
	keyc := make(chan keyResult, 1)
	go func() {
		k, err := appsign.NewKey(nil)
		keyc <- keyResult{k, err}
	}()
	bin, appArgs, err := demoApp(out, appPath)
	if err != nil {
		<-keyc
		return err
	}

	// 7. Sign it, as 'cloister sign --new-key' and 'cloister sign' do.
	kr := <-keyc
	if kr.err != nil {
		return fmt.Errorf("making the demo signing key: %w", kr.err)
	}
	key := kr.key
	keyPath, cfgPath, sigPath := filepath.Join(work, "demo-key.pem"), filepath.Join(work, "enclave.json"), filepath.Join(work, "echo.sig")
	if err := appsign.WriteKeyFile(keyPath, key); err != nil {
		return err
	}
	if err := os.WriteFile(cfgPath, []byte(demoConfig+"\n"), 0o644); err != nil {
		return err
	}
	cfg, err := appsign.ReadConfigFile(cfgPath)
	if err != nil {
		return err
	}
	f, err := appsign.OpenBinary(bin)
	if err != nil {
		return err
	}
	sig, err := appsign.Sign(key, f, cfg)
	f.Close()
	if err != nil {
		return fmt.Errorf("signing %s: %w", bin, err)
	}
	if err := os.WriteFile(sigPath, sig.Marshal(), 0o644); err != nil {
		return err
	}
	// What 'cloister measure APP --sig APP.sig' prints, and the key's own
	// MRSIGNER: the values a client expects.
	measured, err := sim.AppFromFiles(bin, sigPath)
	if err != nil {
		return fmt.Errorf("measuring the signed app: %w", err)
	}
	signer, err := appsign.KeyMRSIGNER(&key.PublicKey)
	if err != nil {
		return err
	}
	if measured.MRSIGNER != signer {
		return fmt.Errorf("the signed app's MRSIGNER %x is not the demo key's %x", measured.MRSIGNER, signer)
	}
	fmt.Fprintf(out, "7. signed it with a new demo key, enclave.json %s\n   MRENCLAVE %x (as 'cloister measure' computes it)\n   MRSIGNER  %x (the demo key)\n",
		demoConfig, measured.MRENCLAVE, signer)

	// 8. Run it as 'cloister run' does, in this process.
	addr, err := freeLoopbackAddr()
	if err != nil {
		return err
	}
	base := "https://" + addr
	log := &demoBuffer{}
	appOut := &demoBuffer{}
	runCtx, stopApp := context.WithCancel(ctx)
	// done is closed when host.Run has returned runCode and runErr.
	var runCode int
	var runErr error
	done := make(chan struct{})
	go func() {
		defer close(done)
		runCode, runErr = host.Run(runCtx, host.Config{
			App: bin, Args: append(appArgs, "--listen", addr), Sig: sigPath, TEE: tee.KindSimSGX,
			SimDir: simDir, Listen: []string{addr}, StorePath: filepath.Join(work, "state", "echo.db"),
			Stdout: appOut, Stderr: log, Logger: slog.New(slog.NewTextHandler(log, nil)),
			Netns: true, Grace: demoGrace, Now: e.now,
		})
	}()
	// Whatever happens next, the app is stopped and host.Run has returned
	// before the demo does (and before its files are removed).
	stopped := false
	defer func() {
		if stopped {
			return
		}
		stopApp()
		select {
		case <-done:
		case <-time.After(demoStopWait):
			fmt.Fprintf(e.stderr, "%s demo: the app did not stop in %v\n", programName, demoStopWait)
		}
	}()
	failed := func(format string, args ...any) error {
		return fmt.Errorf("%s\n--- app and host log ---\n%s%s", fmt.Sprintf(format, args...), appOut, log)
	}
	if err := waitServing(ctx, addr, done); err != nil {
		select {
		case <-done:
			return failed("running the example app: it ended before serving: status %d, error %v", runCode, runErr)
		default:
			return failed("running the example app: %v", err)
		}
	}
	fmt.Fprintf(out, "8. running it with 'cloister run' on sim-sgx, serving RA-TLS at %s\n   own network namespace asked for (--netns); the host says: %s\n", base, networkModeOf(log.String()))

	// 9. Attest it as a client, during the handshake.
	svn, product := cfg.SVN, cfg.ProductID
	opts := ratls.VerifyOptions{
		Policy: policy.Policy{
			MRENCLAVE: [][]byte{measured.MRENCLAVE[:]},
			MRSIGNER:  [][]byte{signer[:]},
			ISVProdID: &product,
			MinISVSVN: &svn,
		},
		Now:        e.now,
		Collateral: ratls.BundleSource(col),
		TrustRoots: []*x509.Certificate{pki.Root},
	}
	v, err := ratls.NewVerifier(opts)
	if err != nil {
		return err
	}
	tr := &http.Transport{TLSClientConfig: v.ClientConfig(nil)}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: demoRequestLimit}
	res, err := demoHandshake(ctx, v, addr)
	if err != nil {
		return failed("attesting %s: %v", base, err)
	}
	c := res.Claims
	if c.SGXClaims == nil || !res.KeyBound || !res.Appraised {
		return failed("attesting %s: incomplete result (sgx claims %v, key bound %v, appraised %v)", base, c.SGXClaims != nil, res.KeyBound, res.Appraised)
	}
	fmt.Fprintf(out, "9. attested %s during the TLS handshake, before sending a byte:\n", base)
	fmt.Fprintf(out, "   tee        %s (the simulator: accepted only because its root was trusted by name)\n", c.TEE)
	fmt.Fprintf(out, "   MRENCLAVE  %s = the signed app's, as expected\n", c.MRENCLAVE)
	fmt.Fprintf(out, "   MRSIGNER   %s = the demo key's, as expected\n", c.MRSIGNER)
	fmt.Fprintf(out, "   product %d, SVN %d (policy: at least %d), debug %v\n", c.ISVProdID, c.ISVSVN, svn, c.Debug)
	fmt.Fprintf(out, "   tcb_status %s (sim collateral, signed under the sim root)\n", c.TCBStatus)
	fmt.Fprintf(out, "   key bound  %v: the evidence (%s extension) covers the certificate's public key\n", res.KeyBound, res.Form)

	// 10. Fresh evidence, bound to this TLS session.
	fc, err := v.Challenge(ctx, client, base)
	if err != nil {
		return failed("fresh challenge: %v", err)
	}
	fmt.Fprintf(out, "10. fresh evidence checked: a new quote over SHA-512(TLS exporter ‖ nonce) for this session,\n    same MRENCLAVE and MRSIGNER as the certificate, tcb_status %s\n", fc.TCBStatus)

	// 11. Requests over the attested channel.
	const msg, value = "hello, enclave", "a value sealed to the enclave"
	echoed, err := demoRequest(ctx, client, http.MethodPost, base+"/echo", msg, http.StatusOK)
	if err != nil {
		return failed("%v", err)
	}
	if echoed != msg {
		return failed("POST /echo answered %q, want %q", echoed, msg)
	}
	if _, err := demoRequest(ctx, client, http.MethodPut, base+"/kv/greeting", value, http.StatusNoContent); err != nil {
		return failed("%v", err)
	}
	got, err := demoRequest(ctx, client, http.MethodGet, base+"/kv/greeting", "", http.StatusOK)
	if err != nil {
		return failed("%v", err)
	}
	if got != value {
		return failed("GET /kv/greeting answered %q, want %q", got, value)
	}
	fmt.Fprintf(out, "11. over the attested connection: POST /echo %q → %q\n    PUT /kv/greeting (sealed by the enclave, stored by the host), GET → %q\n", msg, echoed, got)

	// 12. A client expecting other code is refused.
	other := opts
	wrong := measured.MRENCLAVE
	wrong[0] ^= 1
	other.Policy.MRENCLAVE = [][]byte{wrong[:]}
	otherCfg, err := ratls.ClientConfig(other)
	if err != nil {
		return err
	}
	otherTr := &http.Transport{TLSClientConfig: otherCfg}
	_, refusal := demoRequest(ctx, &http.Client{Transport: otherTr, Timeout: demoRequestLimit}, http.MethodPost, base+"/echo", "must not be sent", http.StatusOK)
	otherTr.CloseIdleConnections()
	var pe *ratls.PolicyError
	switch {
	case refusal == nil:
		return failed("a client expecting MRENCLAVE %x was served: it should have been refused", wrong)
	case !errors.As(refusal, &pe):
		return failed("a client expecting MRENCLAVE %x failed, but not for its policy: %v", wrong, refusal)
	}
	fmt.Fprintf(out, "12. a client expecting another MRENCLAVE (%x…) is refused in the handshake; its request is never sent:\n", wrong[:8])
	for _, l := range strings.Split(strings.TrimSpace(pe.Err.Error()), "\n") {
		fmt.Fprintf(out, "    %s\n", l)
	}

	// 13. Shut down: the app gets SIGTERM, drains, and exits 0.
	tr.CloseIdleConnections()
	stopApp()
	stopped = true
	select {
	case <-done:
		if runErr != nil || runCode != 0 {
			return failed("stopping the app: cloister run returned status %d, %v", runCode, runErr)
		}
	case <-time.After(demoStopWait):
		return failed("the app did not stop within %v", demoStopWait)
	}
	fmt.Fprintln(out, "13. stopped: SIGTERM to the app, which drained its connections and exited with status 0")
	return nil
}

// demoAppCommand is the hidden subcommand under which this binary is the
// demo's enclave app (package echoapp, what examples/echo runs): the demo
// needs no source tree and no Go toolchain. It is not listed in the help:
// it works only when launched by 'cloister run' (host.Run).
const demoAppCommand = "demo-app"

// runDemoApp implements the hidden "cloister demo-app --listen ADDR": the
// example service as an enclave app. enclave.Run exits the process.
func runDemoApp(e *env, args []string) error {
	fs := newFlagSet(demoAppCommand, "--listen ADDR", "The demo's enclave app (examples/echo's service); launched by 'cloister demo'.\n")
	listen := fs.String("listen", ":8443", "`ADDR` to listen on, through the host")
	if err := parseNoArgs(e, fs, args); err != nil {
		return err
	}
	enclave.Run(func(ctx context.Context, env *enclave.Env) error {
		return echoapp.Serve(ctx, env, *listen, e.stdout)
	})
	return nil
}

// demoApp returns the example app's path and the arguments that select
// the service: appPath if given (a binary built from examples/echo), else
// this very binary with the hidden demo-app subcommand.
func demoApp(out io.Writer, appPath string) (string, []string, error) {
	if appPath != "" {
		abs, err := filepath.Abs(appPath)
		if err != nil {
			return "", nil, err
		}
		if st, err := os.Stat(abs); err != nil {
			return "", nil, fmt.Errorf("--app: %w", err)
		} else if !st.Mode().IsRegular() {
			return "", nil, fmt.Errorf("--app: %s is not a file", abs)
		}
		fmt.Fprintf(out, "6. using the example app %s (--app)\n", abs)
		return abs, nil, nil
	}
	self, err := os.Executable()
	if err != nil {
		return "", nil, fmt.Errorf("finding this binary: %w", err)
	}
	fmt.Fprintf(out, "6. the example app (examples/echo's service) is this binary itself: %s %s\n", self, demoAppCommand)
	return self, []string{demoAppCommand}, nil
}

// freeLoopbackAddr returns 127.0.0.1:PORT with a port free a moment ago.
func freeLoopbackAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("finding a free loopback port: %w", err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr, nil
}

// waitServing waits until addr accepts TCP connections (the app listens
// only after its attested certificate is ready), or the run ends.
func waitServing(ctx context.Context, addr string, done <-chan struct{}) error {
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	var d net.Dialer
	for {
		dctx, cancel := context.WithTimeout(ctx, time.Second)
		c, err := d.DialContext(dctx, "tcp", addr)
		cancel()
		if err == nil {
			c.Close()
			return nil
		}
		select {
		case <-done:
			return errors.New("it ended before serving")
		case <-ctx.Done():
			return fmt.Errorf("it did not serve at %s in time: %w", addr, context.Cause(ctx))
		case <-t.C:
		}
	}
}

// demoHandshake connects to addr with v's client configuration, whose
// VerifyConnection attests the server, and returns the (cached) result.
func demoHandshake(ctx context.Context, v *ratls.Verifier, addr string) (*ratls.Result, error) {
	hctx, cancel := context.WithTimeout(ctx, demoRequestLimit)
	defer cancel()
	d := &tls.Dialer{Config: v.ClientConfig(nil)}
	conn, err := d.DialContext(hctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	cs := conn.(*tls.Conn).ConnectionState()
	conn.Close()
	return v.Verify(hctx, cs.PeerCertificates[0])
}

// demoRequest sends one request and returns the body of a want-status
// answer.
func demoRequest(ctx context.Context, client *http.Client, method, url, body string, want int) (string, error) {
	req, err := http.NewRequestWithContext(ctx, method, url, strings.NewReader(body))
	if err != nil {
		return "", err
	}
	resp, err := client.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return "", fmt.Errorf("%s %s: reading the answer: %w", method, url, err)
	}
	if resp.StatusCode != want {
		return "", fmt.Errorf("%s %s: %s %q, want status %d", method, url, resp.Status, bytes.TrimSpace(b), want)
	}
	return string(b), nil
}

// networkModeOf returns the host log's "network: …" message.
func networkModeOf(log string) string {
	for _, l := range strings.Split(log, "\n") {
		if i := strings.Index(l, "network: "); i >= 0 {
			return strings.TrimSuffix(l[i:], `"`)
		}
	}
	return "network: (mode not logged)"
}

// demoBuffer collects the app's output and the host's log; both write
// from their own goroutines.
type demoBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (d *demoBuffer) Write(p []byte) (int, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.b.Write(p)
}

func (d *demoBuffer) String() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.b.String()
}
