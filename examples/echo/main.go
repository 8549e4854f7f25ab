// Command echo is an example enclave app: an HTTPS echo and key-value
// service on the Cloister enclave SDK, served over attested TLS.
//
//	POST /echo       answers the request body
//	PUT  /kv/{key}   stores the body in the sealed store (package kv)
//	GET  /kv/{key}   reads it back
//	POST /.well-known/cloister/attestation (ratls.ChallengePath)
//	                 answers the client's nonce with fresh evidence bound
//	                 to the TLS session
//
// The service is package echoapp. TLS is RA-TLS (package ratls): a key pair made inside the enclave at
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
	"flag"
	"os"

	"github.com/cloister-dev/cloister/enclave"
	"github.com/cloister-dev/cloister/examples/echo/echoapp"
)

func main() {
	listen := flag.String("listen", ":8443", "address to listen on, through the host (must be allowed by cloister run --listen)")
	flag.Parse()
	enclave.Run(func(ctx context.Context, env *enclave.Env) error {
		return echoapp.Serve(ctx, env, *listen, os.Stdout)
	})
}
