package receipt

import (
	"errors"
	"fmt"
)

// Step names the verification step that failed. Values are explicit and
// never reordered: callers and the CLI's JSON output name them.
type Step int

// Steps, in the order Verify runs them (the reference's order).
const (
	StepParse         Step = 1 // the receipt document's format
	StepClaims        Step = 2 // application claims and the claims digest
	StepServiceCert   Step = 3 // the trusted service certificate given by the caller
	StepNodeCert      Step = 4 // the node certificate in the receipt
	StepEndorsement   Step = 5 // node certificate endorsed by the service (through serviceEndorsements)
	StepTransactionID Step = 6 // the response's transactionId against the commit evidence
	StepNodeID        Step = 7 // nodeId = SHA-256 of the node key
	StepSignature     Step = 8 // signature over the Merkle root by the node key
)

var stepNames = map[Step]string{
	StepParse:         "parse",
	StepClaims:        "application claims",
	StepServiceCert:   "service certificate",
	StepNodeCert:      "node certificate",
	StepEndorsement:   "endorsement",
	StepTransactionID: "transaction id",
	StepNodeID:        "node id",
	StepSignature:     "signature",
}

// String names the step as error messages do ("signature", "endorsement", ...).
func (s Step) String() string {
	if n, ok := stepNames[s]; ok {
		return n
	}
	return fmt.Sprintf("step(%d)", int(s))
}

// VerifyError is every error of this package: which step failed, where in
// the input (a JSON path such as "receipt.proof[2].left", or a certificate
// such as "serviceEndorsements[0]"), and why.
type VerifyError struct {
	Step  Step
	Where string
	Err   error
}

// Error is "receipt: STEP: WHERE: why".
func (e *VerifyError) Error() string {
	if e.Where == "" {
		return fmt.Sprintf("receipt: %s: %v", e.Step, e.Err)
	}
	return fmt.Sprintf("receipt: %s: %s: %v", e.Step, e.Where, e.Err)
}

// Unwrap returns the cause (e.g. an x509 error), for errors.Is and errors.As.
func (e *VerifyError) Unwrap() error { return e.Err }

// StepOf returns the Step of the first VerifyError in err's chain.
func StepOf(err error) (Step, bool) {
	var v *VerifyError
	if errors.As(err, &v) {
		return v.Step, true
	}
	return 0, false
}

func fail(step Step, where, format string, args ...any) error {
	return &VerifyError{Step: step, Where: where, Err: fmt.Errorf(format, args...)}
}

func wrap(step Step, where string, err error) error {
	return &VerifyError{Step: step, Where: where, Err: err}
}
