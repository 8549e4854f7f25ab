package enclave

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/nettest"

	"github.com/cloister-dev/cloister/boundary"
	"github.com/cloister-dev/cloister/host"
	"github.com/cloister-dev/cloister/host/wire"
	"github.com/cloister-dev/cloister/seal"
	"github.com/cloister-dev/cloister/tee"
	"github.com/cloister-dev/cloister/tee/sim"
)

// testApp is the identity the test host measured.
var testApp = sim.App{MRENCLAVE: [32]byte{0xe1}, MRSIGNER: [32]byte{0x51}, ProductID: 3, SVN: 4, Debug: true}

// newTestEnv returns an Env over an in-process region served by real host
// services (the same code `cloister run` uses), with a sim platform in a
// temporary directory.
func newTestEnv(t *testing.T, o host.ServiceOptions) *Env {
	t.Helper()
	return newTestHost(t, o).env
}

// testHost is an Env with the host side of its region: the real server
// can be stopped so that a hostile host (boundarytest) takes over.
type testHost struct {
	env        *Env
	region     *boundary.Region // the host's
	stopServer func()
}

func newTestHost(t *testing.T, o host.ServiceOptions) *testHost {
	t.Helper()
	pki, err := sim.Load(t.TempDir(), rand.Reader, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	plat, err := sim.NewPlatform(pki, tee.KindSimSGX, testApp, nil)
	if err != nil {
		t.Fatal(err)
	}
	o.Platform = plat
	if o.Store == nil {
		o.Store = host.NewMemStore()
	}
	svc, err := host.NewServices(o)
	if err != nil {
		t.Fatal(err)
	}
	cfg := wire.RegionConfig()
	region, err := boundary.Create(cfg)
	if err != nil {
		t.Fatal(err)
	}
	table, err := wire.Table()
	if err != nil {
		t.Fatal(err)
	}
	server, err := boundary.NewServer(region, table, svc.Handle)
	if err != nil {
		t.Fatal(err)
	}
	server.SetDefer(svc.Defer)
	served := make(chan error, 1)
	go func() { served <- server.Serve(context.Background()) }()
	attached, err := boundary.Attach(region.File(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	env, err := newEnv(attached, string(tee.KindSimSGX), nil, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	stopServer := sync.OnceFunc(func() { server.Close(); <-served })
	t.Cleanup(func() {
		env.close()
		stopServer()
		svc.Close()
		region.Close()
	})
	return &testHost{env: env, region: region, stopServer: stopServer}
}

// TestConnConformance runs x/net's net.Conn conformance suite (data, deadlines
// in the past, present and future, close while blocked, concurrent methods)
// on a connection the enclave dialed through the host, against its peer.
func TestConnConformance(t *testing.T) {
	env := newTestEnv(t, host.ServiceOptions{})
	nettest.TestConn(t, func() (c1, c2 net.Conn, stop func(), err error) {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, nil, nil, err
		}
		defer l.Close()
		accepted := make(chan net.Conn, 1)
		go func() {
			c, _ := l.Accept()
			accepted <- c
		}()
		c1, err = env.Dial("tcp", l.Addr().String())
		if err != nil {
			return nil, nil, nil, err
		}
		c2 = <-accepted
		if c2 == nil {
			c1.Close()
			return nil, nil, nil, errors.New("accept failed")
		}
		return c1, c2, func() { c1.Close(); c2.Close() }, nil
	})
}

// TestListenerConformance runs the same suite with the roles reversed: the
// enclave's side is a connection its listener accepted.
func TestListenerConformance(t *testing.T) {
	env := newTestEnv(t, host.ServiceOptions{Listen: []string{"127.0.0.1:0"}})
	nettest.TestConn(t, func() (c1, c2 net.Conn, stop func(), err error) {
		l, err := env.Listen("tcp", ":0")
		if err != nil {
			return nil, nil, nil, err
		}
		defer l.Close()
		c2, err = net.Dial("tcp", l.Addr().String())
		if err != nil {
			return nil, nil, nil, err
		}
		c1, err = l.Accept()
		if err != nil {
			c2.Close()
			return nil, nil, nil, err
		}
		return c1, c2, func() { c1.Close(); c2.Close() }, nil
	})
}

func TestConnSemantics(t *testing.T) {
	env := newTestEnv(t, host.ServiceOptions{})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	dial := func() (net.Conn, net.Conn) {
		t.Helper()
		accepted := make(chan net.Conn, 1)
		go func() { c, _ := l.Accept(); accepted <- c }()
		c, err := env.Dial("tcp", l.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		peer := <-accepted
		t.Cleanup(func() { c.Close(); peer.Close() })
		return c, peer
	}

	t.Run("EOF on remote close", func(t *testing.T) {
		c, peer := dial()
		peer.Write([]byte("bye"))
		peer.Close()
		got, err := io.ReadAll(c)
		if err != nil || string(got) != "bye" {
			t.Fatalf("ReadAll = %q, %v; want bye and EOF", got, err)
		}
		if _, err := c.Read(make([]byte, 1)); err != io.EOF {
			t.Fatalf("Read after EOF = %v, want io.EOF", err)
		}
	})
	t.Run("read deadline", func(t *testing.T) {
		c, _ := dial()
		c.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
		_, err := c.Read(make([]byte, 1))
		var ne net.Error
		if !errors.As(err, &ne) || !ne.Timeout() || !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("Read past the deadline = %v, want a timeout", err)
		}
		// A cleared deadline reads again.
		c.SetReadDeadline(time.Time{})
	})
	t.Run("close unblocks read", func(t *testing.T) {
		c, _ := dial()
		done := make(chan error)
		go func() {
			_, err := c.Read(make([]byte, 1))
			done <- err
		}()
		c.Close()
		if err := <-done; !errors.Is(err, net.ErrClosed) {
			t.Fatalf("Read after Close = %v, want net.ErrClosed", err)
		}
		if err := c.Close(); !errors.Is(err, net.ErrClosed) {
			t.Fatalf("second Close = %v, want net.ErrClosed", err)
		}
	})
	t.Run("addresses", func(t *testing.T) {
		c, peer := dial()
		if c.RemoteAddr().String() != peer.LocalAddr().String() || c.LocalAddr().String() != peer.RemoteAddr().String() {
			t.Fatalf("addresses %v→%v, peer %v→%v", c.LocalAddr(), c.RemoteAddr(), peer.LocalAddr(), peer.RemoteAddr())
		}
	})
	t.Run("dial refused", func(t *testing.T) {
		dead, _ := net.Listen("tcp", "127.0.0.1:0")
		addr := dead.Addr().String()
		dead.Close()
		if _, err := env.Dial("tcp", addr); err == nil {
			t.Fatal("dial to a closed port succeeded")
		}
		if _, err := env.Dial("udp", addr); err == nil {
			t.Fatal("udp dial succeeded")
		}
	})
	t.Run("dial cancelled", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if _, err := env.DialContext(ctx, "tcp", l.Addr().String()); err == nil {
			t.Fatal("dial with a cancelled context succeeded")
		}
	})
}

// TestHTTPSThroughHost: net/http and crypto/tls run unchanged on the
// enclave's listener and dialer.
func TestHTTPSThroughHost(t *testing.T) {
	env := newTestEnv(t, host.ServiceOptions{Listen: []string{"127.0.0.1:0"}})
	cert := testCert(t)
	l, err := env.Listen("tcp", ":0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%s %s", r.Method, b)
	})}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(tls.NewListener(l, &tls.Config{Certificates: []tls.Certificate{cert}})) }()

	fp := sha256.Sum256(cert.Certificate[0])
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: pinned(fp)}}
	for i := range 3 {
		body := strings.Repeat("x", i*100000)
		resp, err := client.Post("https://"+l.Addr().String()+"/", "text/plain", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(got) != "POST "+body {
			t.Fatalf("response of %d bytes, want %d", len(got), 5+len(body))
		}
	}

	// The enclave as a client: its transport dials through the host.
	peer := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "from outside") })}
	pl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go peer.Serve(pl)
	defer peer.Close()
	ec := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{DialContext: env.DialContext}}
	resp, err := ec.Get("http://" + pl.Addr().String() + "/")
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(got) != "from outside" {
		t.Fatalf("enclave client got %q", got)
	}
	ec.CloseIdleConnections()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-done; !errors.Is(err, http.ErrServerClosed) {
		t.Fatalf("Serve = %v", err)
	}
	client.CloseIdleConnections()
}

// TestStoreAndPlatform: records round-trip sealed through the host store,
// with the identity and keys the host's sim platform gives.
func TestStoreAndPlatform(t *testing.T) {
	mem := host.NewMemStore()
	env := newTestEnv(t, host.ServiceOptions{Store: mem})
	ctx := context.Background()
	p := env.Platform()
	if id := p.Identity(); p.Kind() != tee.KindSimSGX || !bytes.Equal(id.Measurement, testApp.MRENCLAVE[:]) ||
		!bytes.Equal(id.Signer, testApp.MRSIGNER[:]) || id.ProductID != 3 || id.SVN != 4 || !id.Debug {
		t.Fatalf("platform %s %+v", p.Kind(), id)
	}
	sealer := tee.NewSealer(p)
	blob, err := sealer.Seal(ctx, seal.PolicySigner, []byte("k1"), []byte("secret"))
	if err != nil {
		t.Fatal(err)
	}
	s := env.Store()
	if err := s.Put(ctx, []byte("app/k1"), blob); err != nil {
		t.Fatal(err)
	}
	if raw, _ := mem.Get(ctx, []byte("app/k1")); bytes.Contains(raw, []byte("secret")) {
		t.Fatal("the host sees the plaintext")
	}
	got, err := s.Get(ctx, []byte("app/k1"))
	if err != nil {
		t.Fatal(err)
	}
	if plain, err := sealer.Open(ctx, seal.PolicySigner, []byte("k1"), got); err != nil || string(plain) != "secret" {
		t.Fatalf("Open = %q, %v", plain, err)
	}
	if _, err := sealer.Open(ctx, seal.PolicySigner, []byte("k2"), got); err == nil {
		t.Fatal("a record opened under another label")
	}
	if _, err := s.Get(ctx, []byte("app/none")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get(missing) = %v, want ErrNotFound", err)
	}
	s.Put(ctx, []byte("app/k2"), []byte("x"))
	s.Put(ctx, []byte("other"), []byte("x"))
	keys, err := s.List(ctx, []byte("app/"))
	if err != nil || fmt.Sprintf("%s", keys) != "[app/k1 app/k2]" {
		t.Fatalf("List = %s, %v", keys, err)
	}
	if err := s.Delete(ctx, []byte("app/k2")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, []byte("app/k2")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get after Delete = %v", err)
	}
	if _, err := p.SealKey(ctx, seal.KeyRequest{Policy: seal.PolicyEnclave, Measurement: make([]byte, 32)}); !errors.Is(err, tee.ErrKeyRequestDenied) {
		t.Fatalf("SealKey for another measurement = %v, want denied", err)
	}
	var rd [64]byte
	copy(rd[:], "nonce")
	q, err := p.Evidence(ctx, rd)
	if err != nil || !bytes.Contains(q, rd[:]) {
		t.Fatalf("Evidence = %d bytes, %v", len(q), err)
	}
	if _, err := env.UntrustedNow(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestNotLaunched(t *testing.T) {
	t.Setenv(wire.EnvBoundary, "")
	os.Unsetenv(wire.EnvBoundary)
	err := run(func(context.Context, *Env) error { return nil })
	if !errors.Is(err, ErrNotLaunched) || !strings.Contains(err.Error(), "cloister run") {
		t.Fatalf("run without the launcher = %v", err)
	}
}

// pinned returns a client TLS config that accepts exactly the certificate
// with SHA-256 fingerprint fp. InsecureSkipVerify only turns off the CA
// check, which a self-signed certificate cannot pass; VerifyConnection runs
// on every handshake and does the real check.
func pinned(fp [32]byte) *tls.Config {
	return &tls.Config{
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 || sha256.Sum256(cs.PeerCertificates[0].Raw) != fp {
				return errors.New("certificate is not the pinned one")
			}
			return nil
		},
	}
}

func testCert(t *testing.T) tls.Certificate {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}
