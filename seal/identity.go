package seal

import (
	"bytes"
	"encoding/binary"
	"fmt"
)

// Identity is what the running enclave is, as the platform reports it.
// Seal binds a blob to part of it (by Policy) and Open compares a blob
// against it before asking for any key.
type Identity struct {
	// Measurement is the enclave measurement (SGX MRENCLAVE, TDX MRTD, SNP
	// launch measurement); 1 to MaxMeasurementSize bytes. Needed for
	// PolicyEnclave.
	Measurement []byte

	// Signer identifies who signed the enclave (SGX MRSIGNER, SNP author key
	// digest); 1 to MaxSignerSize bytes. Needed for PolicySigner.
	Signer []byte

	// ProductID tells apart products of one signer (SGX ISVPRODID).
	ProductID uint16

	// SVN is the security version (SGX ISVSVN). A PolicySigner blob opens
	// only for an SVN equal to or higher than the one it was sealed at.
	SVN uint16
}

// KeyRequest names the one key Seal or Open needs: the policy and the
// identity fields that policy binds. Under PolicyEnclave only Measurement is
// set; under PolicySigner only Signer, ProductID and SVN, where SVN is the
// SVN the blob was (or is being) sealed at, which may be lower than the
// running enclave's.
type KeyRequest struct {
	// Policy is PolicyEnclave or PolicySigner.
	Policy Policy
	// Measurement is the measurement the key is bound to (PolicyEnclave).
	Measurement []byte
	// Signer is the signer the key is bound to (PolicySigner).
	Signer []byte
	// ProductID is the product id the key is bound to (PolicySigner).
	ProductID uint16
	// SVN is the SVN the key is bound to (PolicySigner).
	SVN uint16
}

// Context returns the kdf context of r: exactly the bytes written into the
// blob header, and what a KeySource should feed its key derivation (for
// instance DeriveKey's kdfContext), so that the key is bound to the same
// bytes the blob declares. It is the measurement under PolicyEnclave and
// signer ‖ product id (u16 big-endian) ‖ SVN (u16 big-endian) under
// PolicySigner; the fixed-size tail makes the split unambiguous. It
// returns nil for an unknown policy.
func (r KeyRequest) Context() []byte {
	switch r.Policy {
	case PolicyEnclave:
		return bytes.Clone(r.Measurement)
	case PolicySigner:
		b := make([]byte, 0, len(r.Signer)+signerTailSize)
		b = append(b, r.Signer...)
		b = binary.BigEndian.AppendUint16(b, r.ProductID)
		b = binary.BigEndian.AppendUint16(b, r.SVN)
		return b
	default:
		return nil
	}
}

// signerTailSize is the product id and SVN after the signer in a
// PolicySigner kdf context.
const signerTailSize = 4

// requestFor returns the request for sealing as id under p, checking that
// id has what p needs.
func requestFor(id Identity, p Policy) (KeyRequest, error) {
	switch p {
	case PolicyEnclave:
		if n := len(id.Measurement); n == 0 || n > MaxMeasurementSize {
			return KeyRequest{}, fmt.Errorf("seal: identity: measurement is %d bytes, want 1 to %d", n, MaxMeasurementSize)
		}
		return KeyRequest{Policy: p, Measurement: bytes.Clone(id.Measurement)}, nil
	case PolicySigner:
		if n := len(id.Signer); n == 0 || n > MaxSignerSize {
			return KeyRequest{}, fmt.Errorf("seal: identity: signer is %d bytes, want 1 to %d", n, MaxSignerSize)
		}
		return KeyRequest{Policy: p, Signer: bytes.Clone(id.Signer), ProductID: id.ProductID, SVN: id.SVN}, nil
	default:
		return KeyRequest{}, fmt.Errorf("seal: policy: unknown policy %d", uint8(p))
	}
}

// parseContext decodes a kdf context read from a blob under p. It accepts
// exactly the contexts KeyRequest.Context produces for identities Seal
// accepts, so that decoding and re-encoding give the same bytes.
func parseContext(p Policy, ctx []byte) (KeyRequest, error) {
	switch p {
	case PolicyEnclave:
		if n := len(ctx); n == 0 || n > MaxMeasurementSize {
			return KeyRequest{}, malformed("kdf context", "measurement is %d bytes, want 1 to %d", n, MaxMeasurementSize)
		}
		return KeyRequest{Policy: p, Measurement: bytes.Clone(ctx)}, nil
	case PolicySigner:
		n := len(ctx) - signerTailSize
		if n < 1 || n > MaxSignerSize {
			return KeyRequest{}, malformed("kdf context", "%d bytes, want signer (1 to %d bytes) + 4", len(ctx), MaxSignerSize)
		}
		return KeyRequest{
			Policy:    p,
			Signer:    bytes.Clone(ctx[:n]),
			ProductID: binary.BigEndian.Uint16(ctx[n:]),
			SVN:       binary.BigEndian.Uint16(ctx[n+2:]),
		}, nil
	default:
		return KeyRequest{}, malformed("policy", "unknown policy %d", uint8(p))
	}
}

// check compares the binding r read from a blob with the running identity
// id. It runs before any key is requested, so a platform is never asked
// for a key it should not hand out, and the caller learns why.
func (r KeyRequest) check(id Identity) error {
	switch r.Policy {
	case PolicyEnclave:
		if !bytes.Equal(r.Measurement, id.Measurement) {
			return fmt.Errorf("%w: measurement: blob %x, running %x", ErrWrongIdentity, r.Measurement, id.Measurement)
		}
	case PolicySigner:
		if !bytes.Equal(r.Signer, id.Signer) {
			return fmt.Errorf("%w: signer: blob %x, running %x", ErrWrongIdentity, r.Signer, id.Signer)
		}
		if r.ProductID != id.ProductID {
			return fmt.Errorf("%w: product id: blob %d, running %d", ErrWrongIdentity, r.ProductID, id.ProductID)
		}
		if r.SVN > id.SVN {
			return fmt.Errorf("%w: blob sealed at SVN %d, running SVN %d", ErrSVNTooHigh, r.SVN, id.SVN)
		}
	default:
		// parseContext rejects unknown policies; this is defence in depth.
		return malformed("policy", "unknown policy %d", uint8(r.Policy))
	}
	return nil
}
