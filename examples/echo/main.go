// Command echo is an example enclave app: an HTTPS echo and key-value
// service on the Cloister enclave SDK, served over attested TLS.
//
//	POST /echo       answers the request body
//	PUT  /kv/{key}   seals the body to this enclave and stores it on the host
//	GET  /kv/{key}   fetches and opens the record
//	POST /.well-known/cloister/attestation (ratls.ChallengePath)
//	                 answers the client's nonce with fresh evidence bound
//	                 to the TLS session
//
// TLS is RA-TLS (package ratls): a key pair made inside the enclave at
// start, in a certificate whose evidence (the CCC extension) binds it, so a
// client checks which code holds the key before it sends a byte.
//
// Build and run it under the simulator, then attest it:
//
//	go build -o echo ./examples/echo
//	cloister run ./echo --listen 127.0.0.1:8443
//	cloister sim root > sim-root.pem
//	cloister sim collateral > sim-collateral.json
//	cloister measure ./echo      # unsigned: a debug enclave
//	cloister verify https://127.0.0.1:8443 --fresh --trust-root sim-root.pem \
//	    --collateral sim-collateral.json --mrenclave HEX --allow-debug
//
// `cloister demo` does all of this, with a signed (non-debug) app, in one
// command.
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"

	"github.com/cloister-dev/cloister/enclave"
	"github.com/cloister-dev/cloister/ratls"
	"github.com/cloister-dev/cloister/seal"
	"github.com/cloister-dev/cloister/tee"
)

// Limits of the service.
const (
	maxEcho  = 1 << 20
	maxValue = 64 << 10
	// kvPrefix keeps this app's records apart from others in the store.
	kvPrefix = "kv/"
	// clockTimeout bounds one call for the host's clock.
	clockTimeout = 5 * time.Second
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
	// The attested certificate is issued before the listener opens, so the
	// first client already finds it.
	srv, err := ratls.NewServer(ctx, ratls.ServerOptions{
		Platform:   env.Platform(),
		Now:        hostClock(env),
		CommonName: "cloister echo",
	})
	if err != nil {
		return err
	}
	tlsCfg, err := ratls.ServerConfig(srv, nil)
	if err != nil {
		return err
	}
	l, err := env.Listen("tcp", addr)
	if err != nil {
		return err
	}
	// The address goes to stdout for clients (and the integration test).
	fmt.Fprintf(os.Stdout, "listening on %s\n", l.Addr())
	log.Info("echo: serving RA-TLS", "addr", l.Addr().String(), "tee", env.Platform().Kind())

	svc := &service{store: env.Store(), sealer: tee.NewSealer(env.Platform())}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /echo", svc.echo)
	mux.HandleFunc("GET /kv/{key}", svc.get)
	mux.HandleFunc("PUT /kv/{key}", svc.put)
	mux.Handle(ratls.ChallengePath, srv.ChallengeHandler())
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}

	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		<-ctx.Done()
		log.Info("echo: stopping")
		sctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		hs.Shutdown(sctx)
	}()
	err = hs.Serve(tls.NewListener(l, tlsCfg))
	if errors.Is(err, http.ErrServerClosed) {
		<-stopped
		return nil
	}
	return err
}

// hostClock is the certificates' clock: the host's, which is untrusted.
// It only sets validity periods and renewal; clients trust the evidence,
// which the host cannot forge, not the dates. If the host does not answer,
// the process clock (also the host's, in the end) stands in.
func hostClock(env *enclave.Env) func() time.Time {
	return func() time.Time {
		ctx, cancel := context.WithTimeout(context.Background(), clockTimeout)
		defer cancel()
		now, err := env.UntrustedNow(ctx)
		if err != nil {
			env.Logger().Warn("echo: host clock unavailable, using the process clock", "err", err)
			return time.Now()
		}
		return now
	}
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
