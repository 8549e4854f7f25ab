package snp

import (
	"encoding/binary"

	"github.com/cloister-dev/cloister/evidence/internal/verr"
	"github.com/google/go-sev-guest/abi"
	spb "github.com/google/go-sev-guest/proto/sevsnp"
)

// ReportSize is the exact size of an SEV-SNP ATTESTATION_REPORT (0x4A0
// bytes, SEV-SNP ABI specification, table "ATTESTATION_REPORT Structure").
const ReportSize = abi.ReportSize

// Parse checks the format of a raw SEV-SNP attestation report and returns
// go-sev-guest's representation of it. It checks the size (exactly
// ReportSize: a certificate table or padding after the report is an error,
// so that nothing unsigned rides along unnoticed), the version range, the
// signature algorithm, the guest policy's reserved bits and every
// must-be-zero range, and nothing else.
//
// SAFETY: Parse does not verify the signature. Every field of the result is
// unverified and must not be trusted; Verify is the only source of verified
// fields.
func Parse(raw []byte) (*spb.Report, error) {
	if len(raw) != abi.ReportSize {
		return nil, verr.New(pkg, stepFormat, verr.Malformed,
			"report is %d bytes, want exactly %d (0x%X)", len(raw), abi.ReportSize, abi.ReportSize)
	}
	// ValidateReportFormat checks the version range and the policy, which
	// ReportToProto leaves to a later step.
	if err := abi.ValidateReportFormat(raw); err != nil {
		return nil, verr.Wrap(pkg, stepFormat, verr.Malformed, err, "bad report header")
	}
	// Only ECDSA P-384 with SHA-384 is defined; ReportToProto would accept
	// any value and leave the signature area unchecked.
	if algo := binary.LittleEndian.Uint32(raw[0x34:0x38]); algo != abi.SignEcdsaP384Sha384 {
		return nil, verr.New(pkg, stepFormat, verr.Malformed,
			"signature algorithm %d, want %d (ECDSA P-384 with SHA-384)", algo, abi.SignEcdsaP384Sha384)
	}
	r, err := abi.ReportToProto(raw)
	if err != nil {
		return nil, verr.Wrap(pkg, stepFormat, verr.Malformed, err, "bad report layout")
	}
	return r, nil
}
