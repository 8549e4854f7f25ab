// Package evidence verifies attestation evidence from every TEE Cloister
// supports and turns it into one set of Claims.
//
// Verify detects the evidence type (SGX quote v3, TDX quote v4/v5, SEV-SNP
// report, configfs-tsm report in Veraison's JSON or CBOR form) and dispatches
// to the TEE-specific package. It checks authenticity only; appraisal
// against expected values is package policy's job.
package evidence

import (
	"context"
	"errors"

	"github.com/cloister-dev/cloister/evidence/pcs"
)

// Verify detects the type of raw and verifies it with opts. The returned
// Claims are built only from bytes whose signatures were checked.
func Verify(ctx context.Context, raw []byte, opts Options) (*Claims, error) {
	return nil, errors.New("evidence: not implemented yet")
}

// CollateralQuery reads, from an SGX or TDX quote's PCK certificate, what
// is needed to fetch its collateral: TEE kind, FMSPC and PCK CA.
func CollateralQuery(raw []byte) (pcs.Query, error) {
	return pcs.Query{}, errors.New("evidence: not implemented yet")
}
