// Package verr defines the typed verification error shared by every evidence
// package. It lives under internal/ so that evidence/dcap, evidence/sgx,
// evidence/tdx, evidence/snp and evidence/pcs can all return it without an
// import cycle through package evidence, which re-exports it as
// evidence.VerifyError.
package verr

import (
	"errors"
	"fmt"
)

// Reason classifies a verification failure so that callers (the CLI, the
// attestation service, policy) can branch on it without matching strings.
// Values are explicit and must never be reordered: they cross process lines.
type Reason int

// Reasons. Do NOT reorder or renumber.
const (
	// Malformed: the input does not have the declared format.
	Malformed Reason = 1
	// Unsupported: a well-formed input uses a version, key type or
	// certification data type that Cloister does not verify.
	Unsupported Reason = 2
	// BadSignature: a signature does not verify over its signed bytes.
	BadSignature Reason = 3
	// UntrustedRoot: a chain does not end at a trusted root.
	UntrustedRoot Reason = 4
	// Expired: a certificate, CRL or collateral item is not valid at the
	// verification time (expired or not yet valid).
	Expired Reason = 5
	// Revoked: a certificate is listed in a CRL.
	Revoked Reason = 6
	// MissingCollateral: collateral needed for a check was not given.
	MissingCollateral Reason = 7
	// CollateralMismatch: collateral does not belong to this evidence
	// (FMSPC, PCE-ID, TEE type, issuer mismatch).
	CollateralMismatch Reason = 8
	// TCBNotSupported: no TCB level of the TCB info matches the platform.
	TCBNotSupported Reason = 9
	// IdentityMismatch: the quoting enclave or TDX module identity does not
	// match the signed identity collateral.
	IdentityMismatch Reason = 10
	// BadBinding: a value that must bind two parts of the evidence together
	// (QE report data, key hash) does not.
	BadBinding Reason = 11
)

var reasonNames = map[Reason]string{
	Malformed:          "malformed",
	Unsupported:        "unsupported",
	BadSignature:       "bad signature",
	UntrustedRoot:      "untrusted root",
	Expired:            "expired or not yet valid",
	Revoked:            "revoked",
	MissingCollateral:  "missing collateral",
	CollateralMismatch: "collateral mismatch",
	TCBNotSupported:    "TCB level not supported",
	IdentityMismatch:   "identity mismatch",
	BadBinding:         "bad binding",
}

// String returns the reason in words.
func (r Reason) String() string {
	if s, ok := reasonNames[r]; ok {
		return s
	}
	return fmt.Sprintf("reason(%d)", int(r))
}

// Error is a verification failure: which package and step failed, why, and
// the detail a person needs to act on it.
type Error struct {
	// Pkg is the package prefix of the message ("dcap", "sgx", "tdx", "snp", "pcs").
	Pkg string
	// Step names the check that failed, e.g. "quote signature" or "PCK chain".
	Step string
	// Reason classifies the failure.
	Reason Reason
	// Detail says what was wrong and where.
	Detail string
	// Err is the underlying error, if any.
	Err error
}

// Error formats as "pkg: step: detail: cause".
func (e *Error) Error() string {
	s := e.Pkg + ": " + e.Step + ": "
	if e.Detail != "" {
		s += e.Detail
	} else {
		s += e.Reason.String()
	}
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

// Unwrap returns the underlying error.
func (e *Error) Unwrap() error { return e.Err }

// New returns an *Error with a formatted detail.
func New(pkg, step string, r Reason, format string, args ...any) *Error {
	return &Error{Pkg: pkg, Step: step, Reason: r, Detail: fmt.Sprintf(format, args...)}
}

// Wrap returns an *Error around err with a formatted detail.
func Wrap(pkg, step string, r Reason, err error, format string, args ...any) *Error {
	return &Error{Pkg: pkg, Step: step, Reason: r, Detail: fmt.Sprintf(format, args...), Err: err}
}

// ReasonOf returns the Reason of the first *Error in err's chain, and false
// if there is none.
func ReasonOf(err error) (Reason, bool) {
	var e *Error
	if errors.As(err, &e) {
		return e.Reason, true
	}
	return 0, false
}
