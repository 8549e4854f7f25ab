package ratls

import (
	"errors"
	"fmt"

	"github.com/cloister-dev/cloister/evidence"
)

// Sentinels for the failures callers branch on. Every error from this
// package that carries a Reason is an *evidence.VerifyError (Pkg "ratls"),
// so evidence.ReasonOf works the same on certificate and on quote failures.
var (
	// ErrKeyNotBound: the evidence does not bind the certificate's public
	// key (or, for a freshness challenge, the TLS session), so it proves
	// nothing about the peer. Reason BadBinding.
	ErrKeyNotBound = errors.New("ratls: key not bound to the evidence")
	// ErrNoEvidence: the certificate carries no evidence extension we read.
	// Reason Malformed.
	ErrNoEvidence = errors.New("ratls: no RA-TLS evidence extension")
	// ErrPolicy: the evidence verified but the appraisal failed; the
	// joined *policy.Mismatch values follow it in the chain.
	ErrPolicy = errors.New("ratls: policy not satisfied")
	// ErrStale: a freshness challenge's evidence does not bind this
	// session's exporter value and nonce (replayed from another session,
	// or for another nonce). Reason BadBinding.
	ErrStale = errors.New("ratls: evidence not bound to this session and nonce")
)

// verifyErr returns a typed "ratls: step: detail" error.
func verifyErr(step string, r evidence.Reason, err error, format string, args ...any) error {
	return &evidence.VerifyError{Pkg: "ratls", Step: step, Reason: r, Detail: fmt.Sprintf(format, args...), Err: err}
}

// malformed is a format error in a certificate extension.
func malformed(step string, format string, args ...any) error {
	return verifyErr(step, evidence.Malformed, nil, format, args...)
}
