package main

import (
	"bufio"
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cloister-dev/cloister/bundle"
	"github.com/cloister-dev/cloister/tee/appsign"
	"github.com/cloister-dev/cloister/tee/sim"
)

// wireRecorder is a TCP proxy in front of the broker that keeps every
// byte both ways: what the host's network carries.
type wireRecorder struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (w *wireRecorder) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.Write(p)
}

func (w *wireRecorder) bytes() []byte {
	w.mu.Lock()
	defer w.mu.Unlock()
	return bytes.Clone(w.buf.Bytes())
}

func startRecordingProxy(t *testing.T, target string) (string, *wireRecorder) {
	t.Helper()
	rec := &wireRecorder{}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				u, err := net.Dial("tcp", target)
				if err != nil {
					return
				}
				defer u.Close()
				done := make(chan struct{}, 2)
				cp := func(dst, src net.Conn) {
					io.Copy(io.MultiWriter(dst, rec), src)
					dst.(*net.TCPConn).CloseWrite()
					done <- struct{}{}
				}
				go cp(u, c)
				go cp(c, u)
				<-done
				<-done
			}()
		}
	}()
	return l.Addr().String(), rec
}

// recordRand makes signRand a crypto/rand reader whose output the test
// keeps: the first 32 bytes are the bundle key.
func recordRand(t *testing.T) *bytes.Buffer {
	t.Helper()
	var got bytes.Buffer
	saved := signRand
	signRand = io.TeeReader(rand.Reader, &got)
	t.Cleanup(func() { signRand = saved })
	return &got
}

// bundleScene: a real `broker serve --tls` (this test binary, measured as
// the sim broker), a recording proxy in front of it, the admin key, and
// bundleapp built from testdata.
type bundleScene struct {
	dir, simDir, rootFile, adminKey, app string
	proxy                                string
	wire                                 *wireRecorder
	brokerMR                             [32]byte
	now                                  time.Time
}

func newBundleScene(t *testing.T) *bundleScene {
	t.Helper()
	if testing.Short() {
		t.Skip("builds an app and runs the loader under cloister run")
	}
	s := &bundleScene{dir: t.TempDir(), now: time.Now().Truncate(time.Second)}
	s.simDir = filepath.Join(s.dir, "sim")
	pki, err := sim.Load(s.simDir, rand.Reader, s.now)
	if err != nil {
		t.Fatal(err)
	}
	s.rootFile = filepath.Join(s.dir, "root.pem")
	os.WriteFile(s.rootFile, pki.RootPEM(), 0o600)
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	der, _ := x509.MarshalPKCS8PrivateKey(priv)
	s.adminKey = filepath.Join(s.dir, "admin.key")
	os.WriteFile(s.adminKey, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
	pubFile := writePublicKeyPEM(t, s.dir, "admin.pem", pub)
	clock := func() time.Time { return s.now }
	srv := serveCommandInProcess(t, "broker serve", runBrokerServe, clock, "--tls", "--listen", "127.0.0.1:0",
		"--tee", "sim-sgx", "--sim-dir", s.simDir, "--trust-root", s.rootFile, "--admin-key", pubFile)
	s.proxy, s.wire = startRecordingProxy(t, srv.addr)
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	if s.brokerMR, err = appsign.MeasureFile(self, appsign.DefaultConfig()); err != nil {
		t.Fatal(err)
	}
	s.app = filepath.Join(s.dir, "bundleapp")
	if out, err := exec.Command("go", "build", "-o", s.app, "./testdata/bundleapp").CombinedOutput(); err != nil {
		t.Fatalf("go build bundleapp: %v\n%s", err, out)
	}
	return s
}

// sign runs `cloister sign --encrypt` against the scene's broker.
func (s *bundleScene) sign(t *testing.T, extra ...string) result {
	t.Helper()
	args := append([]string{"sign", "--encrypt", s.app, "--broker", "https://" + s.proxy,
		"--broker-mrenclave", hex.EncodeToString(s.brokerMR[:]), "--broker-trust-root", s.rootFile,
		"--broker-allow-debug", "--broker-skip-tcb", "--admin-key", s.adminKey}, extra...)
	return runCLIAt(t, s.now, args...)
}

func (s *bundleScene) run(t *testing.T, bundlePath string, args ...string) result {
	t.Helper()
	return runCLIAt(t, s.now, append([]string{"run", "--sim-dir", s.simDir, "--state", s.dir, bundlePath, "--"}, args...)...)
}

// The whole story: sign --encrypt registers the key with the broker and
// writes a bundle holding neither the key nor the app in clear; cloister
// run starts the loader, which attests, gets the key through the KBS
// flow over RA-TLS, decrypts the app inside and runs it, with the
// bundle's measurement; the host's network never carries the key or the
// app in clear.
func TestEncryptedBundleRuns(t *testing.T) {
	s := newBundleScene(t)
	rnd := recordRand(t)
	r := s.sign(t)
	if r.code != 0 {
		t.Fatalf("sign --encrypt: %s", r)
	}
	key := bytes.Clone(rnd.Bytes()[:bundle.KeySize])
	out := s.app + ".bundle"
	var mr string
	for _, l := range strings.Split(r.stdout, "\n") {
		if v, ok := strings.CutPrefix(l, "mrenclave "); ok {
			mr = v
		}
	}
	file, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	plain, _ := os.ReadFile(s.app)
	if m, _ := appsign.MeasureFile(out, appsign.DefaultConfig()); hex.EncodeToString(m[:]) != mr {
		t.Fatalf("sign printed mrenclave %s, the bundle measures %x", mr, m)
	}
	// Joined at run time: as one literal it would be in this test
	// binary, which is the bundle's loader.
	marker := []byte(strings.Join([]string{"BUNDLEAPP", "PLAINTEXT", "MARKER", "5d1e"}, "-"))
	if !bytes.Contains(plain, marker) {
		t.Fatal("the test app lacks its marker: the scans below would prove nothing")
	}
	if bytes.Contains(file, marker) {
		t.Fatal("the bundle holds the app in clear")
	}
	if bytes.Contains(file, key) || bytes.Contains(file, []byte(hex.EncodeToString(key))) {
		t.Fatal("the bundle holds the key in clear")
	}

	// An echo server on the host, for the app to prove it talks.
	el, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer el.Close()
	go func() {
		c, err := el.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		line, _ := bufio.NewReader(c).ReadString('\n')
		io.WriteString(c, line)
	}()
	r = s.run(t, out, "--echo", el.Addr().String(), "extra")
	if r.code != 0 {
		t.Fatalf("cloister run BUNDLE: %s", r)
	}
	if want := string(marker) + ": running as " + mr + ", args [\"extra\"]"; !strings.Contains(r.stdout, want) {
		t.Errorf("the decrypted app did not run with the bundle's measurement; want %q in:\n%s", want, r)
	}
	if !strings.Contains(r.stdout, "echoed: hello from the bundle") {
		t.Errorf("the decrypted app's network does not work:\n%s", r)
	}
	w := s.wire.bytes()
	if len(w) == 0 {
		t.Fatal("the proxy saw nothing: the scan proves nothing")
	}
	for _, form := range [][]byte{key, []byte(hex.EncodeToString(key)), []byte(base64.StdEncoding.EncodeToString(key)),
		[]byte(base64.RawURLEncoding.EncodeToString(key)), marker} {
		if bytes.Contains(w, form) {
			t.Errorf("the host's network carried %q in clear", form)
		}
	}
	for _, l := range strings.Split(r.stderr, "\n") {
		if strings.Contains(l, hex.EncodeToString(key)) {
			t.Errorf("a log line holds the key: %s", l)
		}
	}
}

// A bundle whose ciphertext was changed (with the digest in its config
// fixed up, so the loader's own checks pass) measures differently, and
// the broker's policy - pinned to the real bundle - refuses the key. A
// bundle left intact but whose broker policy names another measurement
// is refused the same way.
func TestEncryptedBundleRefusals(t *testing.T) {
	s := newBundleScene(t)
	r := s.sign(t)
	if r.code != 0 {
		t.Fatalf("sign --encrypt: %s", r)
	}
	out := s.app + ".bundle"
	file, _ := os.ReadFile(out)
	b, err := bundle.Parse(file)
	if err != nil {
		t.Fatal(err)
	}
	tampered := bytes.Clone(file)
	tampered[b.LoaderSize+100] ^= 0x01
	oldSum := b.Config.CiphertextSHA256
	newSum := sha256Hex(tampered[b.LoaderSize : b.LoaderSize+len(b.Ciphertext)])
	i := bytes.LastIndex(tampered, []byte(oldSum))
	copy(tampered[i:], newSum)
	if _, err := bundle.Parse(tampered); err != nil {
		t.Fatalf("the fixed-up bundle does not parse: %v", err)
	}
	tp := filepath.Join(s.dir, "tampered.bundle")
	os.WriteFile(tp, tampered, 0o755)
	r = s.run(t, tp)
	if r.code != exitFailed || !strings.Contains(r.stderr, "PolicyDeny") || strings.Contains(r.stdout, "BUNDLEAPP") {
		t.Errorf("a tampered bundle: want exit 1 with the broker's PolicyDeny and no app output\n%s", r)
	}
	// A bundle whose digest does not match is refused before any request.
	tampered2 := bytes.Clone(file)
	tampered2[b.LoaderSize+100] ^= 0x01
	tp2 := filepath.Join(s.dir, "tampered2.bundle")
	os.WriteFile(tp2, tampered2, 0o755)
	if r = s.run(t, tp2); r.code != exitFailed || !strings.Contains(r.stderr, "does not match its digest") {
		t.Errorf("a bundle with a wrong digest: %s", r)
	}
	// The policy of the real bundle's key replaced by one for another
	// measurement: refused.
	other := runCLIAt(t, s.now, "sign", "--encrypt", s.app, "--out", filepath.Join(s.dir, "other.bundle"),
		"--broker", "https://"+s.proxy, "--broker-mrenclave", hex.EncodeToString(s.brokerMR[:]), "--broker-trust-root", s.rootFile,
		"--broker-allow-debug", "--broker-skip-tcb", "--admin-key", s.adminKey)
	if other.code != 0 {
		t.Fatal(other)
	}
	// Swap the two bundles' resource names: each bundle now asks for the
	// key the broker releases only to the other.
	ob, _ := os.ReadFile(filepath.Join(s.dir, "other.bundle"))
	pb, _ := bundle.Parse(ob)
	swapped := bytes.Replace(bytes.Clone(file), []byte(b.Config.Resource), []byte(pb.Config.Resource), 1)
	// The resource is in the AAD, but the broker refuses first.
	sp := filepath.Join(s.dir, "swapped.bundle")
	os.WriteFile(sp, swapped, 0o755)
	if r = s.run(t, sp); r.code != exitFailed || !strings.Contains(r.stderr, "PolicyDeny") {
		t.Errorf("a bundle asking for another bundle's key: %s", r)
	}
}

func sha256Hex(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

// Bad sign --encrypt invocations are usage errors.
func TestSignEncryptUsage(t *testing.T) {
	dir := t.TempDir()
	app := filepath.Join(dir, "app")
	os.WriteFile(app, []byte("x"), 0o755)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"sign", "--encrypt", app}, "missing --broker"},
		{[]string{"sign", "--encrypt", app, "--broker", "http://x"}, "https://"},
		{[]string{"sign", "--encrypt", app, "--broker", "https://x"}, "--broker-mrenclave"},
		{[]string{"sign", "--encrypt", app, "--broker", "https://x", "--broker-mrenclave", "ab"}, "--admin-key"},
		{[]string{"sign", "--encrypt", app, "--broker", "https://x", "--broker-mrenclave", "ab", "--admin-key", app}, "64 hex digits"},
		{[]string{"sign", app, "--broker", "https://x"}, "--broker goes with --encrypt"},
		{[]string{"run", "--broker", "http://x", app}, "--broker"},
	} {
		r := runCLI(t, tc.args...)
		if r.code != exitUsage || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("cloister %s: want exit 2 naming %q\n%s", strings.Join(tc.args, " "), tc.want, r)
		}
	}
}
