// Package tee is Cloister's one enclaving abstraction: the Platform an
// enclave app or service runs on, whatever the hardware. Backends live in
// sub-packages (tee/sim, tee/tsm for TDX and SEV-SNP through configfs-tsm,
// tee/gramine for SGX) and are chosen at run time by tee/probe.
//
// Evidence produced by a Platform is verified by package evidence; keys
// from SealKey are used by package seal.
package tee

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	"github.com/cloister-dev/cloister/seal"
)

// Kind names a platform. The values are the `tee` of evidence.Claims.
type Kind string

// Platform kinds.
const (
	KindSimSGX Kind = "sim-sgx"
	KindSimTDX Kind = "sim-tdx"
	KindSGX    Kind = "sgx"
	KindTDX    Kind = "tdx"
	KindSNP    Kind = "sev-snp"
)

// Identity is who the running code is, as the platform measures it.
type Identity struct {
	// Measurement is MRENCLAVE (SGX, 32 bytes), MRTD (TDX, 48 bytes) or
	// the launch MEASUREMENT (SEV-SNP, 48 bytes).
	Measurement []byte
	// Signer is MRSIGNER (SGX, 32 bytes); the author key digest on SNP
	// when there is one; nil on TDX.
	Signer []byte
	// ProductID and SVN come from the signed enclave configuration (SGX)
	// or the guest policy (SNP guest SVN).
	ProductID uint16
	SVN       uint16
	// Debug is true when the host can inspect the enclave or guest.
	Debug bool
}

// Platform is the one interface every enclave app and service uses.
// Implementations are safe for concurrent use.
type Platform interface {
	// Kind names the platform.
	Kind() Kind
	// Identity returns the running identity.
	Identity() Identity
	// Evidence returns fresh evidence binding reportData: a raw quote
	// (SGX, TDX, sims) or a configfs-tsm report in Veraison's JSON form
	// (SEV-SNP, and TDX through configfs-tsm), which evidence.Verify reads.
	Evidence(ctx context.Context, reportData [64]byte) ([]byte, error)
	// SealKey returns a 32-byte key bound to req (the measurement for
	// seal.PolicyEnclave; signer, product and SVN for seal.PolicySigner),
	// and so implements seal.KeySource. Like SGX EGETKEY, it refuses a
	// request for another identity than the running one, or for an SVN
	// above the running SVN.
	SealKey(ctx context.Context, req seal.KeyRequest) ([]byte, error)
}

// ErrSealNotSupported is returned by SealKey on platforms without a
// hardware sealing key (TDX): sealed state there needs a key service that
// releases keys to attested TDs: the key broker, through enclave.Env.BrokerSealer.
var ErrSealNotSupported = errors.New("tee: sealing keys are not supported on this platform")

// ErrKeyRequestDenied is returned by SealKey for a request the running
// identity may not have: another measurement, signer or product, or an SVN
// above its own.
var ErrKeyRequestDenied = errors.New("tee: sealing key request denied")

// CheckKeyRequest applies the EGETKEY rule every backend shares: a key is
// handed out only for the running measurement (enclave policy), or for the
// running signer and product at an SVN no higher than the running SVN
// (signer policy).
func CheckKeyRequest(id Identity, req seal.KeyRequest) error {
	switch req.Policy {
	case seal.PolicyEnclave:
		if !bytes.Equal(req.Measurement, id.Measurement) {
			return fmt.Errorf("%w: measurement %x is not the running one", ErrKeyRequestDenied, req.Measurement)
		}
	case seal.PolicySigner:
		if len(id.Signer) == 0 || !bytes.Equal(req.Signer, id.Signer) || req.ProductID != id.ProductID {
			return fmt.Errorf("%w: signer %x product %d is not the running signer and product", ErrKeyRequestDenied, req.Signer, req.ProductID)
		}
		if req.SVN > id.SVN {
			return fmt.Errorf("%w: SVN %d is above the running SVN %d", ErrKeyRequestDenied, req.SVN, id.SVN)
		}
	default:
		return fmt.Errorf("%w: unknown policy %v", ErrKeyRequestDenied, req.Policy)
	}
	return nil
}

// SealIdentity is id as package seal sees it.
func SealIdentity(id Identity) seal.Identity {
	return seal.Identity{Measurement: id.Measurement, Signer: id.Signer, ProductID: id.ProductID, SVN: id.SVN}
}

// NewSealer returns a seal.Sealer that seals to p's running identity with
// p's keys.
func NewSealer(p Platform) seal.Sealer {
	return seal.Sealer{Keys: p, Identity: SealIdentity(p.Identity())}
}
