package seal

import "fmt"

// Policy says what a sealed blob is bound to. Its value is written into
// every blob, so the numbers are a wire format: Do NOT renumber, and never
// reuse a retired value.
type Policy uint8

const (
	// PolicyEnclave binds a blob to the exact measurement of the enclave
	// that sealed it (SGX MRENCLAVE). Any change to the enclave, including
	// an upgrade, loses access; use it for data that must not outlive the
	// build.
	PolicyEnclave Policy = 1

	// PolicySigner binds a blob to the signer and product id, at the SVN it
	// was sealed at (SGX MRSIGNER + ISVPRODID + ISVSVN). Enclaves of the
	// same signer and product at an equal or higher SVN open it; lower SVNs
	// do not, so an upgrade can read old state but a rollback cannot read
	// new state.
	PolicySigner Policy = 2
)

// String returns the policy's name, or "Policy(n)" for values this version
// does not know.
func (p Policy) String() string {
	switch p {
	case PolicyEnclave:
		return "enclave"
	case PolicySigner:
		return "signer"
	default:
		return fmt.Sprintf("Policy(%d)", uint8(p))
	}
}

// valid reports whether p is a policy this version can seal and open.
func (p Policy) valid() bool {
	return p == PolicyEnclave || p == PolicySigner
}
