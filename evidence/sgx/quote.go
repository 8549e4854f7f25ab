// Package sgx parses Intel SGX ECDSA quotes, version 3: a 48-byte header,
// the 384-byte ISV enclave report, and signature data with certification
// data type 5 (the PCK chain). Parsing is format only; evidence/dcap
// verifies. Accessors on a parsed quote are unverified until Verify returns.
package sgx

import (
	"github.com/cloister-dev/cloister/evidence/dcap"
	"github.com/cloister-dev/cloister/evidence/internal/le"
	"github.com/cloister-dev/cloister/evidence/internal/verr"
)

// Layout of an SGX quote v3.
const (
	// Version is the only SGX quote version parsed here.
	Version = 3
	// SignedSize is the size of the signed region: header and report.
	SignedSize = dcap.HeaderSize + dcap.EnclaveReportSize
	// MinSize is the smallest possible quote: the signed region, the
	// signature data length and the fixed part of the signature data.
	MinSize = SignedSize + 4 + 64 + 64 + 384 + 64 + 2 + 2 + 4
)

// Quote is a parsed, unverified SGX quote.
type Quote struct {
	Header dcap.Header
	// Report is the ISV enclave report. UNVERIFIED until Verify succeeds.
	Report *dcap.EnclaveReport
	Sig    *dcap.SignatureData
	// Trailing counts the bytes after the declared end of the signature
	// data. They are not signed and never read; see DESIGN.md.
	Trailing int
	raw      []byte
}

// SignedRegion returns the bytes the attestation key signs: header and
// report body. The verifier, the simulator's signer and the byte-flip
// tests all use this one function.
func SignedRegion(raw []byte) []byte {
	if len(raw) < SignedSize {
		return nil
	}
	return raw[:SignedSize]
}

// Parse parses an SGX quote v3 strictly: every declared size must match and
// every length is bounded. Bytes after the declared end of the signature data
// (fixed-size quote buffers leave them) are counted in Trailing, not read.
func Parse(raw []byte) (*Quote, error) {
	if len(raw) > dcap.MaxQuoteSize {
		return nil, verr.New("sgx", "quote", verr.Malformed, "%d bytes exceeds the cap of %d", len(raw), dcap.MaxQuoteSize)
	}
	if len(raw) < MinSize {
		return nil, verr.New("sgx", "quote", verr.Malformed, "%d bytes is shorter than the smallest quote v3 (%d)", len(raw), MinSize)
	}
	h, err := dcap.ParseHeader(raw)
	if err != nil {
		return nil, err
	}
	if h.Version != Version {
		return nil, verr.New("sgx", "quote header", verr.Unsupported, "version %d; want %d", h.Version, Version)
	}
	if err := dcap.CheckHeader(h, dcap.TEETypeSGX); err != nil {
		return nil, err
	}
	rep, err := dcap.ParseEnclaveReport(raw[dcap.HeaderSize:SignedSize], "ISV enclave report")
	if err != nil {
		return nil, err
	}
	r := le.New(raw[SignedSize:])
	var sigLen uint32
	var sigData []byte
	if !r.U32(&sigLen) || !r.Bytes(&sigData, int(sigLen)) {
		return nil, verr.New("sgx", "quote", verr.Malformed, "signature data declares %d bytes, %d remain", sigLen, len(raw)-SignedSize-4)
	}
	sig, err := dcap.ParseSignatureData(sigData, false)
	if err != nil {
		return nil, err
	}
	return &Quote{Header: h, Report: rep, Sig: sig, Trailing: r.Len(), raw: raw}, nil
}

// DCAP returns the view of q that evidence/dcap verifies.
func (q *Quote) DCAP() *dcap.Quote {
	return &dcap.Quote{TEE: dcap.SGX, Header: q.Header, Signed: SignedRegion(q.raw), Sig: q.Sig}
}

// Verify parses and verifies raw with v, returning the quote and the
// verification result.
func Verify(v *dcap.Verifier, raw []byte, opts dcap.Options) (*Quote, *dcap.Result, error) {
	q, err := Parse(raw)
	if err != nil {
		return nil, nil, err
	}
	res, err := v.Verify(q.DCAP(), opts)
	if err != nil {
		return nil, nil, err
	}
	return q, res, nil
}
