package kvtest

import (
	"bytes"
	"context"
	"fmt"

	"github.com/cloister-dev/cloister/seal"
)

// Keys is a seal.KeySource over one root secret that follows the KeySource
// contract the way a platform does: it refuses other measurements, other
// signers or products, and SVNs above its own.
type Keys struct {
	Root []byte        // at least seal.MinKeyMaterialSize bytes
	ID   seal.Identity // the running identity
}

// SealKey implements seal.KeySource.
func (k Keys) SealKey(_ context.Context, req seal.KeyRequest) ([]byte, error) {
	switch req.Policy {
	case seal.PolicyEnclave:
		if !bytes.Equal(req.Measurement, k.ID.Measurement) {
			return nil, fmt.Errorf("kvtest: keys: measurement refused")
		}
	case seal.PolicySigner:
		if !bytes.Equal(req.Signer, k.ID.Signer) || req.ProductID != k.ID.ProductID || req.SVN > k.ID.SVN {
			return nil, fmt.Errorf("kvtest: keys: signer request refused")
		}
	default:
		return nil, fmt.Errorf("kvtest: keys: policy %d refused", req.Policy)
	}
	return seal.DeriveKey(k.Root, "kvtest "+req.Policy.String(), req.Context())
}

// Sealer returns a Sealer for an enclave with the given measurement byte,
// signer byte and SVN on a platform whose root secret is root.
func Sealer(root []byte, measurement, signer byte, svn uint16) seal.Sealer {
	id := seal.Identity{
		Measurement: bytes.Repeat([]byte{measurement}, 32),
		Signer:      bytes.Repeat([]byte{signer}, 32),
		ProductID:   1,
		SVN:         svn,
	}
	return seal.Sealer{Keys: Keys{Root: root, ID: id}, Identity: id}
}
