package ratls

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"testing"
	"time"
)

// BenchmarkHandshake measures full TLS 1.3 handshakes over loopback, a new
// connection each time (no session resumption):
//
//   - plain-tls: a P-256 certificate verified against a CA pool;
//   - ratls-cold: RA-TLS with the result cache disabled, so every handshake
//     verifies the quote (the evidence verifier's own PCK-chain and
//     collateral caches stay warm, as they would in a server);
//   - ratls-warm: RA-TLS with the cache, as in steady state.
func BenchmarkHandshake(b *testing.B) {
	e := newSim(b)
	srv := e.server(b, e.app, nil)
	ratlsCfg, err := ServerConfig(srv, nil)
	if err != nil {
		b.Fatal(err)
	}
	plainCfg, pool := plainServer(b)

	run := func(b *testing.B, scfg, ccfg *tls.Config) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		defer ln.Close()
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				go func() {
					tc := tls.Server(c, scfg)
					tc.HandshakeContext(context.Background())
					tc.Close()
				}()
			}
		}()
		addr := ln.Addr().String()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				b.Fatal(err)
			}
			tc := tls.Client(c, ccfg)
			if err := tc.HandshakeContext(context.Background()); err != nil {
				b.Fatal(err)
			}
			tc.Close()
		}
		b.StopTimer()
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "handshakes/s")
	}

	b.Run("plain-tls", func(b *testing.B) {
		run(b, plainCfg, &tls.Config{MinVersion: tls.VersionTLS13, RootCAs: pool, ServerName: "bench.local"})
	})
	for _, tc := range []struct {
		name  string
		cache bool
	}{{"ratls-cold", false}, {"ratls-warm", true}} {
		b.Run(tc.name, func(b *testing.B) {
			o := e.opts()
			o.DisableCache = !tc.cache
			v, err := NewVerifier(o)
			if err != nil {
				b.Fatal(err)
			}
			run(b, ratlsCfg, v.ClientConfig(nil))
		})
	}
}

// plainServer is an ordinary TLS 1.3 server with a self-signed P-256 CA
// certificate, and the pool that trusts it.
func plainServer(b *testing.B) (*tls.Config, *x509.CertPool) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "bench.local"}, DNSNames: []string{"bench.local"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true,
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		b.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}}}, pool
}
