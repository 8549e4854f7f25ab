package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cloister-dev/cloister/host"
	"github.com/cloister-dev/cloister/policy"
	"github.com/cloister-dev/cloister/ratls"
	"github.com/cloister-dev/cloister/tee/sim"
)

// TestEchoUnderCloisterRun builds this example, runs it through host.Run
// (what `cloister run` does) on sim-sgx, attests it over RA-TLS on
// loopback TCP (MRENCLAVE as `cloister measure` gives it, sim root trusted
// explicitly, fresh channel-bound challenge), talks HTTPS to it, restarts
// it to show a sealed record survives and opens, and stops it with a
// cancelled context.
func TestEchoUnderCloisterRun(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the example")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "echo")
	build := exec.Command("go", "build", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	simDir, store := filepath.Join(dir, "sim"), filepath.Join(dir, "state", "echo.db")
	att := attestation(t, bin, simDir)

	a := start(t, bin, simDir, store, att, true)
	a.challenge(t)
	a.refusedWithOtherMRENCLAVE(t, att)
	a.post(t, "/echo", "hello, enclave", "hello, enclave")
	a.put(t, "/kv/greeting", "sealed hello")
	a.get(t, "/kv/greeting", http.StatusOK, "sealed hello")
	a.get(t, "/kv/missing", http.StatusNotFound, "")
	a.stop(t)

	// The host kept neither the key name nor the value in clear: record
	// ids are keyed MACs, values and the store's index are sealed (kv).
	s, err := host.OpenBoltStore(store)
	if err != nil {
		t.Fatal(err)
	}
	var records int
	err = s.Keys(context.Background(), nil, nil, func(k []byte) bool {
		v, gerr := s.Get(context.Background(), k)
		if gerr != nil || bytes.Contains(k, []byte("greeting")) || bytes.Contains(v, []byte("greeting")) || bytes.Contains(v, []byte("sealed hello")) {
			t.Errorf("host record %q holds a name or value in clear (%v)", k, gerr)
		}
		records++
		return true
	})
	s.Close()
	if err != nil || records < 2 {
		t.Fatalf("%d host records, %v: want the sealed state and the value", records, err)
	}

	// Same binary, same sim platform: the record opens after a restart.
	// This run shares the host's network, so both modes are exercised.
	b := start(t, bin, simDir, store, att, false)
	if !strings.Contains(b.log.String(), "network: shared with the host (no namespace: not asked for") {
		t.Errorf("the shared mode is not logged:\n%s", b.log)
	}
	b.get(t, "/kv/greeting", http.StatusOK, "sealed hello")
	b.challenge(t)
	b.stop(t)
}

// attestation returns what a client of the app expects: the app's
// MRENCLAVE as `cloister measure` computes it (unsigned, so a debug
// enclave, which the policy must then allow), the simulator's root trusted
// by name, and the simulator's signed collateral. The sim PKI is made here
// first; host.Run loads the same one.
func attestation(t *testing.T, bin, simDir string) ratls.VerifyOptions {
	t.Helper()
	pki, err := sim.Load(simDir, rand.Reader, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	col, err := pki.Collateral(rand.Reader, time.Now(), false)
	if err != nil {
		t.Fatal(err)
	}
	app, err := sim.AppFromFiles(bin, "")
	if err != nil {
		t.Fatal(err)
	}
	if !app.Debug {
		t.Fatal("an unsigned app should measure as a debug enclave")
	}
	return ratls.VerifyOptions{
		Policy:     policy.Policy{MRENCLAVE: [][]byte{app.MRENCLAVE[:]}, AllowDebug: true},
		Now:        time.Now,
		Collateral: ratls.BundleSource(col),
		TrustRoots: []*x509.Certificate{pki.Root},
	}
}

// instance is one run of the app.
type instance struct {
	addr   string
	client *http.Client
	v      *ratls.Verifier
	cancel context.CancelFunc
	done   chan result
	log    *syncBuffer
}

type result struct {
	code int
	err  error
}

// start runs the app (in a network namespace if netns and the machine
// permits) and waits for it to print its address. The client attests the
// server with att on every handshake.
func start(t *testing.T, bin, simDir, store string, att ratls.VerifyOptions, netns bool) *instance {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	out, stdout := io.Pipe()
	log := &syncBuffer{}
	inst := &instance{cancel: cancel, done: make(chan result, 1), log: log}
	go func() {
		code, err := host.Run(ctx, host.Config{
			App: bin, Args: []string{"--listen", "127.0.0.1:0"},
			SimDir: simDir, StorePath: store, Listen: []string{"127.0.0.1:0"},
			Stdout: stdout, Stderr: log, Logger: slog.New(slog.NewTextHandler(log, nil)),
			Netns: netns, Grace: 10 * time.Second,
		})
		stdout.Close()
		inst.done <- result{code, err}
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-inst.done:
		case <-time.After(30 * time.Second):
			t.Error("the app did not stop")
		}
	})

	lines := make(chan string, 8)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			select {
			case lines <- sc.Text():
			default:
			}
		}
		close(lines)
		io.Copy(io.Discard, out)
	}()
	deadline := time.After(60 * time.Second)
	for inst.addr == "" {
		select {
		case l, ok := <-lines:
			if !ok {
				r := <-inst.done
				t.Fatalf("the app ended before it was ready: %d, %v\n%s", r.code, r.err, log)
			}
			if v, ok := strings.CutPrefix(l, "listening on "); ok {
				inst.addr = v
			}
		case <-deadline:
			t.Fatalf("the app did not get ready\n%s", log)
		}
	}
	if !strings.Contains(log.String(), "network: ") {
		t.Errorf("the log does not say which network mode runs:\n%s", log)
	}
	t.Logf("network mode: %s", networkMode(log.String()))
	v, err := ratls.NewVerifier(att)
	if err != nil {
		t.Fatal(err)
	}
	inst.v = v
	inst.client = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: v.ClientConfig(nil)}}
	return inst
}

// challenge runs the exporter-bound freshness challenge and checks the
// fresh evidence names the expected enclave.
func (in *instance) challenge(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := in.v.Challenge(ctx, in.client, "https://"+in.addr)
	if err != nil {
		t.Fatalf("fresh challenge: %v\n%s", err, in.log)
	}
	if c.TEE != "sim-sgx" || c.SGXClaims == nil {
		t.Fatalf("fresh evidence from %q, want sim-sgx", c.TEE)
	}
}

// refusedWithOtherMRENCLAVE checks that a client expecting other code
// fails the handshake, for the policy's reason, before any request.
func (in *instance) refusedWithOtherMRENCLAVE(t *testing.T, att ratls.VerifyOptions) {
	t.Helper()
	other := bytes.Clone(att.Policy.MRENCLAVE[0])
	other[0] ^= 1
	att.Policy.MRENCLAVE = [][]byte{other}
	cfg, err := ratls.ClientConfig(att)
	if err != nil {
		t.Fatal(err)
	}
	tr := &http.Transport{TLSClientConfig: cfg}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Timeout: 30 * time.Second, Transport: tr}).Post("https://"+in.addr+"/echo", "text/plain", strings.NewReader("must not be sent"))
	if err == nil {
		resp.Body.Close()
		t.Fatal("a client expecting another MRENCLAVE was answered")
	}
	var pe *ratls.PolicyError
	if !errors.As(err, &pe) || !strings.Contains(err.Error(), "mrenclave") {
		t.Fatalf("wrong-MRENCLAVE client: %v; want a policy error naming mrenclave", err)
	}
}

func (in *instance) do(t *testing.T, method, path, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, "https://"+in.addr+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := in.client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", method, path, err, in.log)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func (in *instance) post(t *testing.T, path, body, want string) {
	t.Helper()
	if code, got := in.do(t, "POST", path, body); code != http.StatusOK || got != want {
		t.Fatalf("POST %s = %d %q, want 200 %q", path, code, got, want)
	}
}

func (in *instance) put(t *testing.T, path, body string) {
	t.Helper()
	if code, got := in.do(t, "PUT", path, body); code != http.StatusNoContent {
		t.Fatalf("PUT %s = %d %q, want 204", path, code, got)
	}
}

func (in *instance) get(t *testing.T, path string, wantCode int, want string) {
	t.Helper()
	code, got := in.do(t, "GET", path, "")
	if code != wantCode || (wantCode == http.StatusOK && got != want) {
		t.Fatalf("GET %s = %d %q, want %d %q", path, code, got, wantCode, want)
	}
}

// stop cancels the run and checks the app stopped cleanly: status 0 and
// no error from Run.
func (in *instance) stop(t *testing.T) {
	t.Helper()
	in.client.CloseIdleConnections()
	in.cancel()
	select {
	case r := <-in.done:
		if r.err != nil || r.code != 0 {
			t.Fatalf("stop: Run = %d, %v; want 0, nil\n%s", r.code, r.err, in.log)
		}
		in.done <- r // for the cleanup
	case <-time.After(30 * time.Second):
		t.Fatalf("the app did not stop\n%s", in.log)
	}
	if !strings.Contains(in.log.String(), "echo: stopping") {
		t.Errorf("the app did not see SIGTERM:\n%s", in.log)
	}
}

// networkMode returns the log line naming the network mode.
func networkMode(log string) string {
	for _, l := range strings.Split(log, "\n") {
		if i := strings.Index(l, "network: "); i >= 0 {
			return strings.TrimSuffix(l[i:], `"`)
		}
	}
	return "(not logged)"
}

// syncBuffer is a bytes.Buffer safe for the app's and Run's writers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
