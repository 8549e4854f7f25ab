package ratls

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"log"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cloister-dev/cloister/evidence"
)

// serve accepts TLS connections on loopback with cfg, completes the
// handshake and runs handle (nil: close). It returns the address.
func serve(t testing.TB, cfg *tls.Config, handle func(*tls.Conn)) string {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				tc := c.(*tls.Conn)
				if tc.HandshakeContext(context.Background()) != nil {
					return
				}
				if handle != nil {
					handle(tc)
				} else {
					// One byte tells the client the server accepted it.
					tc.Write([]byte{1})
				}
			}()
		}
	}()
	return ln.Addr().String()
}

func dial(addr string, cfg *tls.Config) (*tls.Conn, error) {
	c, err := tls.Dial("tcp", addr, cfg)
	if err != nil {
		return nil, err
	}
	// In TLS 1.3 the client finishes before the server has checked the
	// client certificate: the server's byte (or its alert) is the verdict.
	if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// A client config attests the server on the handshake; a client expecting
// another MRENCLAVE is refused with the mismatch.
func TestHandshake(t *testing.T) {
	e := newSim(t)
	srv := e.server(t, e.app, nil)
	scfg, err := ServerConfig(srv, nil)
	if err != nil {
		t.Fatal(err)
	}
	addr := serve(t, scfg, nil)

	v, err := NewVerifier(e.opts())
	if err != nil {
		t.Fatal(err)
	}
	c, err := dial(addr, v.ClientConfig(nil))
	if err != nil {
		t.Fatal(err)
	}
	cs := c.ConnectionState()
	c.Close()
	if cs.Version != tls.VersionTLS13 || !cs.PeerCertificates[0].Equal(srv.Certificate()) {
		t.Fatalf("version %x", cs.Version)
	}

	wrong := e.opts()
	wrong.Policy.MRENCLAVE = [][]byte{make([]byte, 32)}
	ccfg, err := ClientConfig(wrong)
	if err != nil {
		t.Fatal(err)
	}
	_, err = dial(addr, ccfg)
	if !errors.Is(err, ErrPolicy) || !slices.Equal(mismatches(err), []string{"mrenclave"}) {
		t.Fatalf("wrong MRENCLAVE: %v", err)
	}

	// TLS 1.2 is refused by the server config.
	old := v.ClientConfig(nil)
	old.MaxVersion = tls.VersionTLS12
	if _, err := dial(addr, old); err == nil {
		t.Fatal("TLS 1.2 handshake succeeded")
	}
}

// Enclave to enclave: each side attests the other; a server expecting
// another client identity refuses the client.
func TestMutualAttestation(t *testing.T) {
	e := newSim(t)
	srv := e.server(t, e.app, nil)
	clientApp := e.app
	clientApp.MRENCLAVE[0] = 0xCC
	cli := e.server(t, clientApp, nil)

	clientPolicy := e.opts()
	clientPolicy.Policy.MRENCLAVE = [][]byte{clientApp.MRENCLAVE[:]}
	var served atomic.Int32
	scfg, err := ServerConfig(srv, &clientPolicy)
	if err != nil {
		t.Fatal(err)
	}
	addr := serve(t, scfg, func(c *tls.Conn) {
		served.Add(1)
		c.Write([]byte{1})
	})
	v, err := NewVerifier(e.opts())
	if err != nil {
		t.Fatal(err)
	}
	c, err := dial(addr, v.ClientConfig(cli))
	if err != nil {
		t.Fatal(err)
	}
	c.Close()

	// The same client without a certificate, and a client of another
	// identity, are refused by the server.
	if _, err := dial(addr, v.ClientConfig(nil)); err == nil {
		t.Error("client without certificate accepted")
	}
	if _, err := dial(addr, v.ClientConfig(srv)); err == nil {
		t.Error("client with the wrong identity accepted")
	}
	if served.Load() != 1 {
		t.Errorf("server handled %d connections, want 1", served.Load())
	}
}

// Resumed sessions are verified too (VerifyConnection runs on every
// handshake), cheaply through the cache.
func TestResumptionIsVerified(t *testing.T) {
	e := newSim(t)
	srv := e.server(t, e.app, nil)
	scfg, _ := ServerConfig(srv, nil)
	addr := serve(t, scfg, func(c *tls.Conn) { c.Write([]byte{1}) })
	v, err := NewVerifier(e.opts())
	if err != nil {
		t.Fatal(err)
	}
	cfg := v.ClientConfig(nil)
	var calls atomic.Int32
	cfg.VerifyConnection = func(cs tls.ConnectionState) error { calls.Add(1); return v.VerifyConnection(cs) }
	cfg.ClientSessionCache = tls.NewLRUClientSessionCache(4)
	resumed := false
	for i := 0; i < 2; i++ {
		c, err := tls.Dial("tcp", addr, cfg)
		if err != nil {
			t.Fatal(err)
		}
		// Reading lets the client receive the session ticket.
		c.Read(make([]byte, 1))
		resumed = c.ConnectionState().DidResume
		c.Close()
	}
	if !resumed {
		t.Fatal("second connection did not resume")
	}
	if calls.Load() != 2 {
		t.Errorf("VerifyConnection ran %d times, want 2", calls.Load())
	}
}

// The freshness challenge: over HTTP at ChallengePath, and a response
// replayed from another session fails.
func TestFreshChallenge(t *testing.T) {
	e := newSim(t)
	ctx := context.Background()
	srv := e.server(t, e.app, nil)
	scfg, _ := ServerConfig(srv, nil)
	mux := http.NewServeMux()
	mux.Handle(ChallengePath, srv.ChallengeHandler())
	ln, err := tls.Listen("tcp", "127.0.0.1:0", scfg)
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: mux, ErrorLog: log.New(io.Discard, "", 0)}
	go hs.Serve(ln)
	t.Cleanup(func() { hs.Close() })

	v, err := NewVerifier(e.opts())
	if err != nil {
		t.Fatal(err)
	}
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: v.ClientConfig(nil)}}
	defer client.CloseIdleConnections()
	claims, err := v.Challenge(ctx, client, "https://"+ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	if claims.MRENCLAVE.String() != evidence.HexBytes(e.app.MRENCLAVE[:]).String() {
		t.Errorf("fresh claims %+v", claims)
	}

	// Replay: an answer made for session 1 is offered in session 2 for the
	// very same nonce. Only the exporter differs, and that is enough.
	nonce := []byte("0123456789abcdef0123456789abcdef")
	c1, err := tls.Dial("tcp", ln.Addr().String(), v.ClientConfig(nil))
	if err != nil {
		t.Fatal(err)
	}
	defer c1.Close()
	c2, err := tls.Dial("tcp", ln.Addr().String(), v.ClientConfig(nil))
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	cs1, cs2 := c1.ConnectionState(), c2.ConnectionState()
	// Both ends derive the same exporter, so the answer computed from the
	// client's view of session 1 is what the server would have sent on it.
	answer1, err := srv.Answer(ctx, &cs1, nonce)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.VerifyFresh(ctx, &cs1, nonce, answer1); err != nil {
		t.Fatalf("answer in its own session: %v", err)
	}
	_, err = v.VerifyFresh(ctx, &cs2, nonce, answer1)
	if !errors.Is(err, ErrStale) {
		t.Fatalf("replayed answer: %v, want ErrStale", err)
	}
	if r, _ := evidence.ReasonOf(err); r != evidence.BadBinding {
		t.Errorf("reason %v", r)
	}
	// A different nonce in the same session fails too.
	other := append([]byte{}, nonce...)
	other[0] ^= 1
	if _, err := v.VerifyFresh(ctx, &cs1, other, answer1); !errors.Is(err, ErrStale) {
		t.Errorf("other nonce: %v", err)
	}
	// Evidence from another enclave, even one the policy accepts, is not
	// the certificate's identity.
	otherApp := e.app
	otherApp.MRENCLAVE[0] ^= 0xFF
	o := e.opts()
	o.Policy.MRENCLAVE = append(o.Policy.MRENCLAVE, otherApp.MRENCLAVE[:])
	v2, _ := NewVerifier(o)
	rd, _ := FreshReportData(&cs1, nonce)
	impostor, err := e.platform(t, "sim-sgx", otherApp).Evidence(ctx, rd)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v2.VerifyFresh(ctx, &cs1, nonce, impostor); err == nil {
		t.Error("fresh evidence of another identity accepted")
	}
}

// Certificates are renewed before they expire, and on Refresh.
func TestRenewal(t *testing.T) {
	e := newSim(t)
	clk := &clock{t: simNow}
	srv := e.server(t, e.app, func(o *ServerOptions) {
		o.Now, o.Validity, o.RenewBefore = clk.Now, time.Hour, 15*time.Minute
	})
	first := srv.Certificate()
	get := func() *tls.Certificate {
		c, err := srv.GetCertificate(&tls.ClientHelloInfo{})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	clk.Add(44 * time.Minute)
	if !get().Leaf.Equal(first) {
		t.Fatal("renewed too early")
	}
	clk.Add(2 * time.Minute)
	second := get().Leaf
	if second.Equal(first) || !second.NotAfter.Equal(clk.Now().Add(time.Hour)) {
		t.Fatalf("not renewed 14 minutes before expiry: NotAfter %v", second.NotAfter)
	}
	if err := srv.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	third := get().Leaf
	if third.Equal(second) || string(third.RawSubjectPublicKeyInfo) == string(second.RawSubjectPublicKeyInfo) {
		t.Fatal("Refresh kept the certificate or its key")
	}
	// Every certificate verifies at the time it is served.
	o := e.opts()
	o.Now = clk.Now
	if _, err := Verify(context.Background(), third, o); err != nil {
		t.Fatal(err)
	}
}

// Hammer: concurrent handshakes-worth of Verify and GetCertificate while
// the clock moves through renewals and cache expiry (run under -race).
func TestConcurrentUse(t *testing.T) {
	e := newSim(t)
	clk := &clock{t: simNow}
	srv := e.server(t, e.app, func(o *ServerOptions) { o.Now, o.Validity, o.RenewBefore = clk.Now, time.Hour, 20*time.Minute })
	o := e.opts()
	o.Now, o.CacheTTL = clk.Now, 5*time.Minute
	v, err := NewVerifier(o)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 15; i++ {
				c, err := srv.GetCertificate(&tls.ClientHelloInfo{})
				if err == nil {
					_, err = v.Verify(context.Background(), c.Leaf)
				}
				if err != nil {
					errs <- err
					return
				}
				clk.Add(time.Minute)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// A change of the served evidence's TCB status (a TCB recovery, say)
// renews the certificate at the next check, without waiting for expiry.
func TestRenewalOnTCBStatusChange(t *testing.T) {
	e := newSim(t)
	clk := &clock{t: simNow}
	status := "UpToDate"
	var mu sync.Mutex
	srv := e.server(t, e.app, func(o *ServerOptions) {
		o.Now, o.Validity, o.TCBCheckEvery = clk.Now, 24*time.Hour, 10*time.Minute
		o.TCBStatus = func(context.Context, *x509.Certificate) (string, error) {
			mu.Lock()
			defer mu.Unlock()
			return status, nil
		}
	})
	first := srv.Certificate()
	get := func() *x509.Certificate {
		c, err := srv.GetCertificate(&tls.ClientHelloInfo{})
		if err != nil {
			t.Fatal(err)
		}
		return c.Leaf
	}
	clk.Add(11 * time.Minute)
	if !get().Equal(first) {
		t.Fatal("renewed with the status unchanged")
	}
	mu.Lock()
	status = "OutOfDate"
	mu.Unlock()
	clk.Add(5 * time.Minute)
	if !get().Equal(first) {
		t.Fatal("checked before TCBCheckEvery passed")
	}
	clk.Add(6 * time.Minute)
	if get().Equal(first) {
		t.Fatal("not renewed after the TCB status changed")
	}
}
