package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cloister-dev/cloister/policy"
	"github.com/cloister-dev/cloister/ratls"
	"github.com/cloister-dev/cloister/tee"
	"github.com/cloister-dev/cloister/tee/gramine/graminetest"
	"github.com/cloister-dev/cloister/tee/gramine/manifest"
	"github.com/cloister-dev/cloister/tee/sim"
)

// copyApp copies this test binary (which TestMain lets serve the example
// app as "demo-app") to dir under a name unique to this run: the manifest
// is written next to it, and its /dev/shm files are named after it.
func copyApp(t *testing.T, dir string) string {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	src, err := os.Open(self)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	var b [6]byte
	rand.Read(b[:])
	app := filepath.Join(dir, "echo-"+hex.EncodeToString(b[:]))
	dst, err := os.OpenFile(app, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		t.Fatal(err)
	}
	if err := dst.Close(); err != nil {
		t.Fatal(err)
	}
	return app
}

// TestRunSGXEndToEnd drives `cloister run --tee sgx` with only the
// gramine-sgx exec replaced (the hidden direct mode): the manifest is
// written and is what launches the app (its argv, its environment, its
// /dev/shm boundary files), and the app, the example service through the
// unchanged enclave SDK, finds its "/dev/attestation" (a graminetest tree
// whose quotes are real sim-sgx quotes over the report data the app
// writes) and uses tee/gramine as its platform. A client then attests it
// over RA-TLS (the certificate's key bound by the quote's report data,
// verified under the sim root), runs the fresh challenge, echoes through
// the network rings and stores a sealed value through the storage rings;
// a quote the app produced verifies with `cloister verify evidence`.
func TestRunSGXEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the example app")
	}
	dir := t.TempDir()
	app := copyApp(t, dir)
	name := filepath.Base(app)
	now := time.Now()
	simDir := filepath.Join(dir, "sim")
	pki, err := sim.Load(simDir, rand.Reader, now)
	if err != nil {
		t.Fatal(err)
	}
	// The identity the fake hardware reports: what 'cloister measure'
	// gives for the app (under Gramine it would be gramine-sgx-sign's).
	ident, err := sim.AppFromFiles(app, "")
	if err != nil {
		t.Fatal(err)
	}
	plat, err := sim.NewPlatform(pki, tee.KindSimSGX, ident, nil)
	if err != nil {
		t.Fatal(err)
	}
	var keys graminetest.Keys
	rand.Read(keys.MRENCLAVE[:])
	rand.Read(keys.MRSIGNER[:])
	tree, err := graminetest.Start(filepath.Join(dir, "attestation"), func(rd [64]byte) ([]byte, error) {
		return plat.Evidence(context.Background(), rd)
	}, keys)
	if err != nil {
		t.Fatal(err)
	}
	defer tree.Close()
	t.Setenv(envGramineDirect, tree.Root)

	addr, err := freeLoopbackAddr()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	runCtx, stopApp := context.WithCancel(ctx)
	var out, log demoBuffer
	done := make(chan struct{})
	var runErr error
	go func() {
		defer close(done)
		e := &env{ctx: runCtx, stdin: strings.NewReader(""), stdout: &out, stderr: &log, now: time.Now}
		runErr = runRun(e, []string{"--tee", "sgx", app, "--listen", addr, "--state", filepath.Join(dir, "state"),
			"--env", "TZ", "--", demoAppCommand, "--listen", addr})
	}()
	stopped := false
	defer func() {
		if !stopped {
			stopApp()
			<-done
		}
	}()
	if err := waitServing(ctx, addr, done); err != nil {
		t.Fatalf("the app did not serve: %v (run: %v)\n%s%s", err, runErr, out.String(), log.String())
	}

	// The manifest cloister run wrote is the app's, and names the files
	// the host made.
	text, err := os.ReadFile(filepath.Join(dir, name+".manifest"))
	if err != nil {
		t.Fatal(err)
	}
	m, err := manifest.Parse(text)
	if err != nil {
		t.Fatal(err)
	}
	bin, err := os.ReadFile(app)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(bin)
	if m.Name() != name || m.SGX.TrustedFiles[0].SHA256 != hex.EncodeToString(sum[:]) ||
		strings.Join(m.Loader.Argv, " ") != "/app/"+name+" "+demoAppCommand+" --listen "+addr {
		t.Errorf("manifest: name %s argv %q", m.Name(), m.Loader.Argv)
	}
	if _, err := os.Stat(manifest.RegionPath(name)); err != nil {
		t.Errorf("boundary file: %v", err)
	}
	// The region is the only file: there is no event page (boundary v2).
	if _, err := os.Stat(filepath.Join("/dev/shm", "cloister-"+name+".events")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("an event page file exists: %v", err)
	}

	// Attest it during the handshake, as a client that trusts the sim root.
	col, err := pki.Collateral(rand.Reader, now, false)
	if err != nil {
		t.Fatal(err)
	}
	v, err := ratls.NewVerifier(ratls.VerifyOptions{
		Policy:     policy.Policy{MRENCLAVE: [][]byte{ident.MRENCLAVE[:]}, AllowDebug: true},
		Now:        time.Now,
		Collateral: ratls.BundleSource(col),
		TrustRoots: []*x509.Certificate{pki.Root},
	})
	if err != nil {
		t.Fatal(err)
	}
	res, err := demoHandshake(ctx, v, addr)
	if err != nil {
		t.Fatalf("attesting: %v\n%s", err, log.String())
	}
	if res.Claims.TEE != "sim-sgx" || !res.KeyBound || !res.Appraised || !bytes.Equal(res.Claims.MRENCLAVE, ident.MRENCLAVE[:]) {
		t.Fatalf("attestation: tee %s key bound %v appraised %v", res.Claims.TEE, res.KeyBound, res.Appraised)
	}
	tr := &http.Transport{TLSClientConfig: v.ClientConfig(nil)}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: demoRequestLimit}
	base := "https://" + addr
	if _, err := v.Challenge(ctx, client, base); err != nil {
		t.Fatalf("fresh challenge: %v", err)
	}
	if got, err := demoRequest(ctx, client, http.MethodPost, base+"/echo", "through the rings", http.StatusOK); err != nil || got != "through the rings" {
		t.Fatalf("echo: %q, %v", got, err)
	}
	if _, err := demoRequest(ctx, client, http.MethodPut, base+"/kv/k", "sealed under gramine keys", http.StatusNoContent); err != nil {
		t.Fatal(err)
	}
	if got, err := demoRequest(ctx, client, http.MethodGet, base+"/kv/k", "", http.StatusOK); err != nil || got != "sealed under gramine keys" {
		t.Fatalf("kv: %q, %v", got, err)
	}

	// Every quote the app made (identity, certificate, challenge) came
	// through the tree; the last verifies with the CLI under the sim root.
	quotes := tree.Quotes()
	if len(quotes) < 3 || tree.Err() != nil {
		t.Fatalf("%d quotes served, errors %v", len(quotes), tree.Err())
	}
	qf, rootf, colf := filepath.Join(dir, "q.bin"), filepath.Join(dir, "root.pem"), filepath.Join(dir, "col.json")
	must(t, os.WriteFile(qf, quotes[len(quotes)-1], 0o644))
	must(t, os.WriteFile(rootf, pki.RootPEM(), 0o644))
	colJSON, err := col.Marshal()
	must(t, err)
	must(t, os.WriteFile(colf, colJSON, 0o644))
	r := runCLIAt(t, now, "verify", "evidence", qf, "--trust-root", rootf, "--collateral", colf,
		"--mrenclave", hex.EncodeToString(ident.MRENCLAVE[:]), "--allow-debug")
	if r.code != 0 || !strings.Contains(r.stdout, `"tee": "sim-sgx"`) {
		t.Fatalf("verify evidence: %v", r)
	}

	// Stop: SIGTERM, the app drains and exits 0; the /dev/shm files go.
	tr.CloseIdleConnections()
	stopApp()
	<-done
	stopped = true
	if runErr != nil {
		t.Fatalf("run: %v\n%s", runErr, log.String())
	}
	for _, want := range []string{"TEST MODE", "gramine manifest", "enclave exited"} {
		if !strings.Contains(log.String(), want) {
			t.Errorf("host log lacks %q:\n%s", want, log.String())
		}
	}
	for _, p := range []string{manifest.RegionPath(name), filepath.Join("/dev/shm", "cloister-"+name+".lock")} {
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s left behind: %v", p, err)
		}
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestRunSGXNoGramine: without Gramine's tools the run stops before
// starting anything, says what to install, and leaves no /dev/shm files;
// the manifest it wrote stays for the user to read.
func TestRunSGXNoGramine(t *testing.T) {
	t.Setenv(envGramineDirect, "")
	dir := t.TempDir()
	app := filepath.Join(dir, "noenclave-"+strings.ReplaceAll(t.Name(), "/", "-"))
	must(t, os.WriteFile(app, []byte("an app"), 0o755))
	empty := t.TempDir()
	r := runCLI(t, "run", "--tee", "sgx", app, "--state", dir, "--gramine-tools", empty)
	if r.code != exitFailed || !strings.Contains(r.stderr, "gramine-sgx-sign") {
		t.Fatalf("%v", r)
	}
	if _, err := manifest.Parse(mustRead(t, app+".manifest")); err != nil {
		t.Errorf("manifest: %v", err)
	}
	name := filepath.Base(app)
	for _, p := range []string{manifest.RegionPath(name), filepath.Join("/dev/shm", "cloister-"+name+".lock")} {
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s left behind: %v", p, err)
		}
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestRunSGXUsage: flags that mean nothing for the chosen kind are usage
// errors, not silently ignored.
func TestRunSGXUsage(t *testing.T) {
	dir := t.TempDir()
	app := filepath.Join(dir, "app")
	must(t, os.WriteFile(app, []byte("x"), 0o755))
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"run", "--tee", "sgx", app, "--sig", app + ".sig"}, "--gramine-key"},
		{[]string{"run", "--tee", "sgx", app, "--env", "GODEBUG"}, "GODEBUG"},
		{[]string{"run", app, "--config", "enclave.json"}, "are for --tee sgx"},
		{[]string{"run", "--tee", "sim-tdx", app, "--gramine-key", "k.pem"}, "are for --tee sgx"},
	} {
		if r := runCLI(t, tc.args...); r.code != exitUsage || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("%q: %v; want exit 2 mentioning %q", tc.args, r, tc.want)
		}
	}
}
