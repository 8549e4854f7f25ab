package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cloister-dev/cloister/evidence"
	"github.com/cloister-dev/cloister/ratls"
	"github.com/cloister-dev/cloister/tee/sim"
)

// syncBuffer is a bytes.Buffer safe for the server goroutine to write
// while the test reads it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// listenAddr waits for a service's "… listening" log line
// and returns its addr: with --addr 127.0.0.1:0 the port is known only
// after the listener is open, and the log is where the command says it.
func listenAddr(t *testing.T, log *syncBuffer, done <-chan error) string {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for {
		for _, line := range strings.Split(log.String(), "\n") {
			var rec struct{ Msg, Addr string }
			if json.Unmarshal([]byte(line), &rec) == nil && strings.HasSuffix(rec.Msg, " listening") && rec.Addr != "" {
				return rec.Addr
			}
		}
		select {
		case err := <-done:
			t.Fatalf("the service ended before listening: %v\n%s", err, log.String())
		case <-deadline:
			t.Fatalf("the service did not log its address:\n%s", log.String())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// TestAttestServeTLS runs `cloister attest serve --tls` in-process on the
// simulator and talks to it as relying parties would: an RA-TLS client
// that trusts the simulator root explicitly gets /certs and a token; a
// plain TLS client and an RA-TLS client without that root are refused at
// the handshake.
func TestAttestServeTLS(t *testing.T) {
	now := time.Now().Truncate(time.Second)
	clock := func() time.Time { return now }
	dir := t.TempDir()
	simDir := filepath.Join(dir, "sim")
	// Made before the server starts, so the two never race to create it.
	pki, err := sim.Load(simDir, rand.Reader, now)
	if err != nil {
		t.Fatal(err)
	}
	rootFile := filepath.Join(dir, "root.pem")
	if err := os.WriteFile(rootFile, pki.RootPEM(), 0o600); err != nil {
		t.Fatal(err)
	}

	srv := serveInProcess(t, clock, "--tls", "--tee", "sim-sgx", "--sim-dir", simDir,
		"--addr", "127.0.0.1:0", "--trust-root", rootFile, "--alg", "ES256")
	base := "https://" + srv.addr

	col, err := pki.Collateral(rand.Reader, now, false)
	if err != nil {
		t.Fatal(err)
	}
	opts := ratls.VerifyOptions{Now: clock, TrustRoots: []*x509.Certificate{pki.Root}, Collateral: ratls.BundleSource(col),
		SkipAppraisal: true} // authenticity and key binding are what this test is about
	v, err := ratls.NewVerifier(opts)
	if err != nil {
		t.Fatal(err)
	}
	tr := &http.Transport{TLSClientConfig: v.ClientConfig(nil)}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 30 * time.Second}

	t.Run("RA-TLS client gets /certs and a token", func(t *testing.T) {
		resp, err := client.Get(base + "/certs")
		if err != nil {
			t.Fatal(err)
		}
		var set struct{ Keys []jwk }
		err = json.NewDecoder(resp.Body).Decode(&set)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 200 || len(set.Keys) != 1 {
			t.Fatalf("/certs: %d %v %d keys", resp.StatusCode, err, len(set.Keys))
		}
		// The server's TLS certificate is attested and sim-sgx.
		cs := resp.TLS
		if cs == nil || len(cs.PeerCertificates) == 0 {
			t.Fatal("no TLS state")
		}
		r, err := v.Verify(context.Background(), cs.PeerCertificates[0])
		if err != nil || !r.KeyBound || r.Claims.TEE != evidence.TEESimSGX {
			t.Fatalf("server certificate: %v %+v", err, r)
		}

		runtime := []byte(`{"k":"v"}`)
		var rd [64]byte
		sum := sha256.Sum256(runtime)
		copy(rd[:], sum[:])
		q, err := pki.QuoteSGX(rand.Reader, sim.SGXReport{MRENCLAVE: [32]byte{0x42}, ReportData: rd})
		if err != nil {
			t.Fatal(err)
		}
		body := fmt.Sprintf(`{"quote":%q,"runtimeData":{"data":%q,"dataType":"JSON"}}`,
			base64.RawURLEncoding.EncodeToString(q), base64.RawURLEncoding.EncodeToString(runtime))
		resp, err = client.Post(base+"/attest/SgxEnclave?api-version=2022-08-01", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		var out struct{ Token string }
		err = json.NewDecoder(resp.Body).Decode(&out)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 200 || out.Token == "" {
			t.Fatalf("attest: %d %v", resp.StatusCode, err)
		}
		// The token validates with the key the service's RA-TLS
		// certificate certified (verify-token's check, keys fetched here
		// over RA-TLS).
		claims, err := verifyToken(context.Background(), out.Token, set.Keys, opts, now)
		if err != nil {
			t.Fatal(err)
		}
		if claims["x-ms-sgx-mrenclave"] != "42"+strings.Repeat("00", 31) || claims["iss"] != base || claims["tcb_status"] != evidence.StatusUpToDate {
			t.Errorf("claims: mrenclave %v iss %v tcb %v", claims["x-ms-sgx-mrenclave"], claims["iss"], claims["tcb_status"])
		}

		// verify-token over https attests the connection with RA-TLS
		// (trusting the sim root as told), then the token's key.
		var so, se bytes.Buffer
		code := run([]string{"attest", "verify-token", out.Token, "--service", base, "--trust-root", rootFile, "--no-collateral",
			"--any-identity", "--allow-debug", "--allow-status", "NotEvaluated"}, strings.NewReader(""), &so, &se, clock) // the sim service runs unsigned: a debug enclave
		if code != 0 || !strings.Contains(so.String(), `"x-ms-sgx-mrenclave"`) {
			t.Errorf("verify-token over RA-TLS: exit %d\nstdout %s\nstderr %s", code, so.String(), se.String())
		}
		// Without the sim root the RA-TLS handshake itself is refused.
		so.Reset()
		se.Reset()
		code = run([]string{"attest", "verify-token", out.Token, "--service", base, "--no-collateral"},
			strings.NewReader(""), &so, &se, clock)
		if code != 1 || !strings.Contains(se.String(), "fetching "+base+"/certs") {
			t.Errorf("verify-token over RA-TLS without the sim root: exit %d\nstdout %s\nstderr %s", code, so.String(), se.String())
		}
	})

	t.Run("plain TLS client does not trust the certificate", func(t *testing.T) {
		// ServerName "localhost" (a name in the certificate) so that the
		// only thing left to fail is the chain to the system roots.
		plain := &http.Transport{TLSClientConfig: &tls.Config{ServerName: "localhost", MinVersion: tls.VersionTLS12}}
		defer plain.CloseIdleConnections()
		resp, err := (&http.Client{Transport: plain, Timeout: 30 * time.Second}).Get(base + "/certs")
		if err == nil {
			resp.Body.Close()
			t.Fatal("a client with the system roots accepted the RA-TLS certificate")
		}
		var unknown x509.UnknownAuthorityError
		if !errors.As(err, &unknown) {
			t.Fatalf("want an unknown-authority error, got %v", err)
		}
	})

	t.Run("RA-TLS client without the sim root refuses", func(t *testing.T) {
		o := opts
		o.TrustRoots = nil // only the built-in Intel and AMD roots
		untrusting, err := ratls.NewVerifier(o)
		if err != nil {
			t.Fatal(err)
		}
		conn, err := tls.Dial("tcp", strings.TrimPrefix(base, "https://"), untrusting.ClientConfig(nil))
		if err == nil {
			conn.Close()
			t.Fatal("handshake succeeded without trusting the simulator root")
		}
		if r, ok := evidence.ReasonOf(err); !ok || r != evidence.UntrustedRoot {
			t.Fatalf("want reason %v, got %v (%v)", evidence.UntrustedRoot, r, err)
		}
	})

	srv.stop()
	if !strings.Contains(srv.log.String(), `"msg":"shutting down"`) {
		t.Errorf("no clean shutdown in the log:\n%s", srv.log.String())
	}
}

// inProcessServer is `cloister attest serve` running in this process.
type inProcessServer struct {
	addr string
	log  *syncBuffer
	stop func() // cancels it and waits (also registered with t.Cleanup)
}

// serveInProcess starts runAttestServe with args (which must listen on a
// free port, --addr 127.0.0.1:0) and the clock now, and returns once it
// listens.
func serveInProcess(t *testing.T, now func() time.Time, args ...string) *inProcessServer {
	t.Helper()
	return serveCommandInProcess(t, "attest serve", runAttestServe, now, args...)
}

// serveCommandInProcess starts the serving command runCmd (named name in
// failures) with args and the clock now, and returns once it listens.
func serveCommandInProcess(t *testing.T, name string, runCmd func(*env, []string) error, now func() time.Time, args ...string) *inProcessServer {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	log := &syncBuffer{}
	e := &env{ctx: ctx, stdin: strings.NewReader(""), stdout: io.Discard, stderr: log, now: now}
	done := make(chan error, 1)
	go func() { done <- runCmd(e, args) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("%s: %v", name, err)
				}
			case <-time.After(30 * time.Second):
				t.Errorf("%s did not stop", name)
			}
		})
	}
	t.Cleanup(stop)
	return &inProcessServer{addr: listenAddr(t, log, done), log: log, stop: stop}
}
