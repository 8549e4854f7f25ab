package evidence

import (
	"crypto/x509"
	"time"

	"github.com/cloister-dev/cloister/evidence/internal/verr"
	"github.com/cloister-dev/cloister/evidence/pcs"
)

// VerifyError is a typed verification failure: which step failed, why (a
// Reason callers can branch on), and the detail a person needs.
type VerifyError = verr.Error

// Reason classifies a VerifyError.
type Reason = verr.Reason

// Reasons of VerifyError; see package verr for their meaning.
const (
	Malformed          = verr.Malformed
	Unsupported        = verr.Unsupported
	BadSignature       = verr.BadSignature
	UntrustedRoot      = verr.UntrustedRoot
	Expired            = verr.Expired
	Revoked            = verr.Revoked
	MissingCollateral  = verr.MissingCollateral
	CollateralMismatch = verr.CollateralMismatch
	TCBNotSupported    = verr.TCBNotSupported
	IdentityMismatch   = verr.IdentityMismatch
	BadBinding         = verr.BadBinding
)

// ReasonOf returns the Reason of the first VerifyError in err's chain.
func ReasonOf(err error) (Reason, bool) { return verr.ReasonOf(err) }

// Options carries everything verification takes from outside. There are no
// hidden defaults for time: a zero Time is an error.
type Options struct {
	// Time is the verification time for every validity check.
	Time time.Time
	// Collateral is the DCAP collateral bundle for SGX and TDX quotes.
	// Required unless SkipTCBEvaluation is set.
	Collateral *pcs.Bundle
	// SkipTCBEvaluation checks every signature and the certificate chain
	// but uses no collateral: Claims.TCBStatus is NotEvaluated. Needed for
	// quotes that travel without collateral (RA-TLS certificates).
	SkipTCBEvaluation bool
	// AllowMissingCRL lets verification pass when the bundle carries no
	// CRLs; the Claims then carry a warning that revocation was not checked.
	AllowMissingCRL bool
	// TrustRoots replaces the built-in roots (Intel SGX Root CA, AMD ARKs).
	// Evidence that chains to a root given here which is not the built-in
	// Intel root is reported as a sim-* TEE: this is how simulator
	// evidence is trusted, explicitly.
	TrustRoots []*x509.Certificate
	// VCEK is the DER (or PEM) VCEK or VLEK certificate for a raw SNP report
	// that does not carry its own certificate table.
	VCEK []byte
	// SNPChain is optional PEM ASK/ARK (or ASVK/ARK) certificates for SNP,
	// checked against the built-in AMD roots.
	SNPChain []byte
}
