// Command echo is an example enclave app: an HTTPS echo and key-value
// service on the Cloister enclave SDK.
//
//	POST /echo       answers the request body
//	PUT  /kv/{key}   seals the body to this enclave and stores it on the host
//	GET  /kv/{key}   fetches and opens the record
//
// TLS uses a key pair made inside the enclave at start, in a self-signed
// certificate whose SHA-256 fingerprint is printed on stdout so a client
// can pin it; attested TLS (package ratls) will replace it.
//
// Build and run it under the simulator:
//
//	go build -o echo ./examples/echo
//	cloister run ./echo --listen 127.0.0.1:8443
//	curl -sk https://127.0.0.1:8443/echo -d hello
package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"os"
	"time"

	"github.com/cloister-dev/cloister/enclave"
	"github.com/cloister-dev/cloister/seal"
	"github.com/cloister-dev/cloister/tee"
)

// Limits of the service.
const (
	maxEcho  = 1 << 20
	maxValue = 64 << 10
	// kvPrefix keeps this app's records apart from others in the store.
	kvPrefix = "kv/"
)

func main() {
	listen := flag.String("listen", ":8443", "address to listen on, through the host (must be allowed by cloister run --listen)")
	flag.Parse()
	enclave.Run(func(ctx context.Context, env *enclave.Env) error {
		return serve(ctx, env, *listen)
	})
}

// serve runs the HTTPS service until ctx ends, then drains it.
func serve(ctx context.Context, env *enclave.Env, addr string) error {
	log := env.Logger()
	cert, err := selfSigned(ctx, env)
	if err != nil {
		return err
	}
	l, err := env.Listen("tcp", addr)
	if err != nil {
		return err
	}
	// The fingerprint and address go to stdout, one per line, for clients
	// (and the integration test) to pin and dial.
	fp := sha256.Sum256(cert.Certificate[0])
	fmt.Fprintf(os.Stdout, "cert-sha256 %s\n", hex.EncodeToString(fp[:]))
	fmt.Fprintf(os.Stdout, "listening on %s\n", l.Addr())
	log.Info("echo: serving", "addr", l.Addr().String(), "tee", env.Platform().Kind())

	svc := &service{store: env.Store(), sealer: tee.NewSealer(env.Platform())}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /echo", svc.echo)
	mux.HandleFunc("GET /kv/{key}", svc.get)
	mux.HandleFunc("PUT /kv/{key}", svc.put)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}

	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		<-ctx.Done()
		log.Info("echo: stopping")
		sctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	}()
	err = srv.Serve(tls.NewListener(l, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS13}))
	if errors.Is(err, http.ErrServerClosed) {
		<-stopped
		return nil
	}
	return err
}

// selfSigned makes a fresh P-256 key and a self-signed certificate for it.
// Its validity starts from the host's clock, which is untrusted: that only
// matters to clients that check validity, and they should pin instead.
func selfSigned(ctx context.Context, env *enclave.Env) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	now, err := env.UntrustedNow(ctx)
	if err != nil {
		return tls.Certificate{}, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: "cloister echo (self-signed, not attested)"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}

// service holds the handlers' dependencies.
type service struct {
	store  *enclave.Store
	sealer seal.Sealer
}

func (s *service) echo(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxEcho))
	if err != nil {
		http.Error(w, err.Error(), http.StatusRequestEntityTooLarge)
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Write(body)
}

// put seals the value to this enclave's measurement, with the key as the
// label so the host cannot move a record to another key, and stores it.
// PolicyEnclave means a rebuilt app cannot read it; an app that must keep
// its state across upgrades seals with seal.PolicySigner instead.
func (s *service) put(w http.ResponseWriter, r *http.Request) {
	key := r.PathValue("key")
	value, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxValue))
	if err != nil {
		http.Error(w, err.Error(), http.StatusRequestEntityTooLarge)
		return
	}
	blob, err := s.sealer.Seal(r.Context(), seal.PolicyEnclave, []byte(key), value)
	if err != nil {
		http.Error(w, "sealing failed", http.StatusInternalServerError)
		return
	}
	if err := s.store.Put(r.Context(), []byte(kvPrefix+key), blob); err != nil {
		http.Error(w, "storing failed", http.StatusInternalServerError)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// get fetches and opens a record. A record that does not open is an error,
// never treated as absent: the host may have swapped or corrupted it.
func (s *service) get(w http.ResponseWriter, r *http.Request) {
	key := r.PathValue("key")
	blob, err := s.store.Get(r.Context(), []byte(kvPrefix+key))
	if errors.Is(err, enclave.ErrNotFound) {
		http.Error(w, "no such key", http.StatusNotFound)
		return
	}
	if err != nil {
		http.Error(w, "fetching failed", http.StatusBadGateway)
		return
	}
	value, err := s.sealer.Open(r.Context(), []byte(key), blob)
	if err != nil {
		http.Error(w, "record does not open: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Write(value)
}
