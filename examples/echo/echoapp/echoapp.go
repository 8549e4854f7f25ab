// Package echoapp is the example enclave app's service: an HTTPS echo and
// key-value service on the Cloister enclave SDK, served over attested TLS.
// examples/echo runs it as its own binary; 'cloister demo' runs it inside
// the cloister binary (a hidden subcommand), so the demo needs no source
// tree.
//
//	POST /echo       answers the request body
//	PUT  /kv/{key}   stores the body in the sealed store (package kv)
//	GET  /kv/{key}   reads it back
//	POST /.well-known/cloister/attestation (ratls.ChallengePath)
//	                 answers the client's nonce with fresh evidence bound
//	                 to the TLS session
package echoapp

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/cloister-dev/cloister/enclave"
	"github.com/cloister-dev/cloister/kv"
	"github.com/cloister-dev/cloister/ratls"
)

// Limits of the service.
const (
	maxEcho  = 1 << 20
	maxValue = 64 << 10
	// clockTimeout bounds one call for the host's clock.
	clockTimeout = 5 * time.Second
)

// Serve runs the HTTPS service on addr (through the host) until ctx
// ends, then drains it. It writes "listening on ADDR" to stdout once the
// listener is open.
func Serve(ctx context.Context, env *enclave.Env, addr string, stdout io.Writer) error {
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
	fmt.Fprintf(stdout, "listening on %s\n", l.Addr())
	log.Info("echo: serving RA-TLS", "addr", l.Addr().String(), "tee", env.Platform().Kind())

	// The sealed store: the host sees keyed-MAC record ids and sealed
	// values. While the app runs, a swapped, replayed, changed or deleted
	// record is an error, never wrong data. Across a restart it uses the
	// default in-memory counter, so the app trusts the first sealed state
	// the host serves: a rollback or wipe of the whole store made while it
	// was down is NOT detected (that needs Options.MinVersion or a
	// persistent counter; see package kv).
	store, err := kv.OpenEnv(ctx, env, "echo", kv.Options{Create: true})
	if err != nil {
		return fmt.Errorf("echo: opening the sealed store: %w", err)
	}
	svc := &service{kv: store}
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
	kv *kv.Store
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

// put stores the value in the sealed store, which seals it to this
// enclave's measurement with the record's id and version in the label.
func (s *service) put(w http.ResponseWriter, r *http.Request) {
	key := r.PathValue("key")
	value, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxValue))
	if err != nil {
		http.Error(w, err.Error(), http.StatusRequestEntityTooLarge)
		return
	}
	if err := s.kv.Put(r.Context(), key, value); err != nil {
		http.Error(w, "storing failed: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// get reads a value. A record that does not open, or a store the host
// rolled back, is an error, never treated as absent.
func (s *service) get(w http.ResponseWriter, r *http.Request) {
	value, err := s.kv.Get(r.Context(), r.PathValue("key"))
	if errors.Is(err, kv.ErrNotFound) {
		http.Error(w, "no such key", http.StatusNotFound)
		return
	}
	if err != nil {
		http.Error(w, "reading failed: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Write(value)
}
