package gramine

import (
	"context"
	"fmt"

	"github.com/cloister-dev/cloister/seal"
	"github.com/cloister-dev/cloister/tee"
)

// purposeGramine is the seal.DeriveKey purpose for keys derived from
// Gramine's raw seal keys. Deriving, rather than using the raw key, also
// keeps Cloister's keys apart from Gramine's own use of the same raw keys
// (encrypted mounts with key_name "_sgx_mrenclave"/"_sgx_mrsigner").
const purposeGramine = "gramine"

// SealKey returns seal.DeriveKey(raw, "gramine", req.Context()), a 32-byte
// key, where raw is Gramine's 16-byte SGX seal key for the policy:
// keys/_sgx_mrenclave under seal.PolicyEnclave, keys/_sgx_mrsigner under
// seal.PolicySigner. It implements seal.KeySource.
//
// Requests for another identity, or for an SVN above the running ISVSVN,
// are refused with tee.ErrKeyRequestDenied (tee.CheckKeyRequest).
//
// Limits that come from Gramine, not from SGX: Gramine asks EGETKEY for
// these keys at the enclave's own ISVSVN and CPUSVN and exposes no other.
// So (1) a signer-policy key for an SVN below the running one cannot be
// had: SealKey fails with an error wrapping tee.ErrSealNotSupported, and
// blobs sealed before an ISVSVN upgrade do not open after it; and (2)
// after a microcode or platform TCB update (a new CPUSVN) both keys
// change, and everything sealed before is unreadable. State that must
// survive either needs a key service outside the enclave (Cloister has
// none yet), or re-sealing before upgrading.
func (p *Platform) SealKey(ctx context.Context, req seal.KeyRequest) ([]byte, error) {
	if err := tee.CheckKeyRequest(p.id, req); err != nil {
		return nil, fmt.Errorf("gramine: seal key: %w", err)
	}
	var file string
	switch req.Policy {
	case seal.PolicyEnclave:
		file = fileKeyMRENCLAVE
	case seal.PolicySigner:
		if req.SVN != p.id.SVN {
			return nil, fmt.Errorf("gramine: seal key: no signer-policy key for SVN %d: Gramine's %s is bound to the running ISVSVN %d only: %w",
				req.SVN, fileKeyMRSIGNER, p.id.SVN, tee.ErrSealNotSupported)
		}
		file = fileKeyMRSIGNER
	default:
		// CheckKeyRequest refuses unknown policies; this keeps the switch
		// total.
		return nil, fmt.Errorf("gramine: seal key: unknown policy %v", req.Policy)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("gramine: seal key: %w", err)
	}
	raw, err := p.readCapped(file, maxKeyFile)
	if err != nil {
		return nil, fmt.Errorf("gramine: seal key: %w", err)
	}
	defer clear(raw)
	if len(raw) != sealKeySize {
		return nil, fmt.Errorf("gramine: seal key: %s is %d bytes, want %d", p.path(file), len(raw), sealKeySize)
	}
	key, err := seal.DeriveKey(raw, purposeGramine, req.Context())
	if err != nil {
		return nil, fmt.Errorf("gramine: seal key: %w", err)
	}
	return key, nil
}
