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
	"encoding/binary"
	"fmt"
	"time"

	"github.com/cloister-dev/cloister/evidence/dcap"
	"github.com/cloister-dev/cloister/evidence/internal/verr"
	"github.com/cloister-dev/cloister/evidence/pcs"
	"github.com/cloister-dev/cloister/evidence/sgx"
	"github.com/cloister-dev/cloister/evidence/tdx"
)

// Verifier verifies evidence and keeps the caches that make repeated
// verification cheap (verified collateral and PCK chains; see dcap.Verifier).
// It is safe for concurrent use.
type Verifier struct {
	dcap *dcap.Verifier
}

// NewVerifier returns a Verifier with empty caches.
func NewVerifier() *Verifier { return &Verifier{dcap: dcap.NewVerifier()} }

// defaultVerifier backs the package-level Verify. Its caches are keyed by
// content and trust roots and never change a result, only its cost.
var defaultVerifier = NewVerifier()

// Verify detects the type of raw and verifies it with opts, using a shared
// Verifier. The returned Claims are built only from bytes whose signatures
// were checked.
func Verify(ctx context.Context, raw []byte, opts Options) (*Claims, error) {
	return defaultVerifier.Verify(ctx, raw, opts)
}

// Kind names a detected evidence format.
type Kind int

// Evidence kinds. Do NOT reorder.
const (
	KindUnknown   Kind = 0
	KindSGXQuote  Kind = 1
	KindTDXQuote  Kind = 2
	KindSNPReport Kind = 3
	KindTSMReport Kind = 4
)

// snpReportSize is the size of an SEV-SNP attestation report.
const snpReportSize = 0x4A0

// Detect names the format of raw from its shape, without verifying it.
func Detect(raw []byte) Kind {
	if len(raw) == 0 {
		return KindUnknown
	}
	if c := firstNonSpace(raw); c == '{' || (c >= 0xA0 && c <= 0xBF) {
		return KindTSMReport
	}
	if len(raw) >= dcap.HeaderSize {
		ver := binary.LittleEndian.Uint16(raw[0:])
		key := binary.LittleEndian.Uint16(raw[2:])
		tee := binary.LittleEndian.Uint32(raw[4:])
		if key == dcap.AttestationKeyECDSAP256 || key == 3 {
			switch {
			case ver == 3 || (ver >= 4 && ver <= 5 && tee == dcap.TEETypeSGX):
				return KindSGXQuote
			case ver >= 4 && ver <= 5 && tee == dcap.TEETypeTDX:
				return KindTDXQuote
			}
		}
	}
	if len(raw) == snpReportSize {
		if v := binary.LittleEndian.Uint32(raw); v >= 2 && v <= 5 {
			return KindSNPReport
		}
	}
	return KindUnknown
}

func firstNonSpace(b []byte) byte {
	for _, c := range b {
		switch c {
		case ' ', '\t', '\r', '\n':
			continue
		}
		return c
	}
	return 0
}

// Verify detects the type of raw and verifies it with opts.
func (v *Verifier) Verify(ctx context.Context, raw []byte, opts Options) (*Claims, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if opts.Time.IsZero() {
		return nil, verr.New("evidence", "options", verr.MissingCollateral, "no verification time given")
	}
	switch Detect(raw) {
	case KindSGXQuote:
		return v.verifySGX(raw, opts)
	case KindTDXQuote:
		return v.verifyTDX(raw, opts)
	case KindSNPReport:
		return v.verifySNP(raw, nil, opts)
	case KindTSMReport:
		return v.verifyTSM(raw, opts)
	}
	return nil, verr.New("evidence", "detect", verr.Malformed,
		"unrecognised evidence (%d bytes): tried SGX quote v3 (version 3, key type 2), TDX quote v4/v5 (TEE type 0x81), SEV-SNP report (%d bytes, version 2..5) and configfs-tsm report (JSON or CBOR map)",
		len(raw), snpReportSize)
}

func (v *Verifier) dcapOptions(opts Options) dcap.Options {
	return dcap.Options{
		Time: opts.Time, Collateral: opts.Collateral, SkipTCBEvaluation: opts.SkipTCBEvaluation,
		AllowMissingCRL: opts.AllowMissingCRL, TrustRoots: opts.TrustRoots,
	}
}

func (v *Verifier) verifySGX(raw []byte, opts Options) (*Claims, error) {
	q, res, err := sgx.Verify(v.dcap, raw, v.dcapOptions(opts))
	if err != nil {
		return nil, err
	}
	c := dcapClaims(res, TEESGX, TEESimSGX, q.Trailing)
	r := q.Report
	c.ReportData = HexBytes(r.ReportData[:])
	c.Debug = r.Debug()
	c.SGXClaims = &SGXClaims{
		MRENCLAVE: HexBytes(r.MRENCLAVE[:]), MRSIGNER: HexBytes(r.MRSIGNER[:]),
		ISVProdID: r.ISVProdID, ISVSVN: r.ISVSVN, Attributes: HexBytes(r.Attributes[:]), MiscSelect: r.MiscSelect,
	}
	if r.KSS() || r.ConfigID != ([64]byte{}) || r.ConfigSVN != 0 || r.ISVExtProdID != ([16]byte{}) || r.ISVFamilyID != ([16]byte{}) {
		c.SGXKSSClaims = &SGXKSSClaims{
			ConfigID: HexBytes(r.ConfigID[:]), ConfigSVN: r.ConfigSVN,
			ISVExtProdID: HexBytes(r.ISVExtProdID[:]), ISVFamilyID: HexBytes(r.ISVFamilyID[:]),
		}
	}
	return c, nil
}

func (v *Verifier) verifyTDX(raw []byte, opts Options) (*Claims, error) {
	q, res, err := tdx.Verify(v.dcap, raw, v.dcapOptions(opts))
	if err != nil {
		return nil, err
	}
	c := dcapClaims(res, TEETDX, TEESimTDX, q.Trailing)
	b := q.Body
	c.ReportData = HexBytes(b.ReportData[:])
	c.Debug = b.Debug()
	c.TDXClaims = &TDXClaims{
		MRTD: HexBytes(b.MRTD[:]), RTMR0: HexBytes(b.RTMR[0][:]), RTMR1: HexBytes(b.RTMR[1][:]),
		RTMR2: HexBytes(b.RTMR[2][:]), RTMR3: HexBytes(b.RTMR[3][:]), MRSEAM: HexBytes(b.MRSEAM[:]),
		MRConfigID: HexBytes(b.MRConfigID[:]), MROwner: HexBytes(b.MROwner[:]), MROwnerConfig: HexBytes(b.MROwnerConfig[:]),
		TDAttributes: HexBytes(b.TDAttributes[:]), XFAM: HexBytes(b.XFAM[:]), TEETCBSVN: HexBytes(b.TEETCBSVN[:]),
	}
	if b.MRServiceTD != nil {
		c.MRServiceTD = HexBytes(b.MRServiceTD[:])
	}
	if b.TEETCBSVN2 != nil {
		c.TEETCBSVN2 = HexBytes(b.TEETCBSVN2[:])
	}
	c.RelaunchAdvised = res.RelaunchAdvised
	return c, nil
}

// dcapClaims fills what SGX and TDX share. Evidence chaining to a root
// other than Intel's can only have come from a root the caller named, so it
// is reported as the simulated kind.
func dcapClaims(res *dcap.Result, hw, sim string, trailing int) *Claims {
	c := &Claims{TEE: hw, TCBStatus: res.TCBStatus, AdvisoryIDs: res.AdvisoryIDs, Warnings: res.Warnings}
	if trailing > 0 {
		c.Warnings = append(c.Warnings, fmt.Sprintf("%d bytes after the quote's declared end were ignored (not signed)", trailing))
	}
	if !res.IntelRoot {
		c.TEE = sim
	}
	c.DCAPClaims = &DCAPClaims{FMSPC: HexBytes(res.PCK.FMSPC[:]), PCESVN: res.PCK.PCESVN, QESVN: res.QEReport.ISVSVN,
		SGXType: dcap.SGXTypeName(res.PCK.SGXType)}
	if id := res.PCK.PlatformInstanceID; id != nil {
		c.PlatformInstanceID = HexBytes(id[:])
	}
	if cfg := res.PCK.Configuration; cfg != nil {
		c.DynamicPlatform, c.CachedKeys, c.SMTEnabled = &cfg.DynamicPlatform, &cfg.CachedKeys, &cfg.SMTEnabled
	}
	if !res.TCBDate.IsZero() {
		c.TCBDate = res.TCBDate.UTC().Format(time.RFC3339)
	}
	return c
}

// CollateralQuery reads, from an SGX or TDX quote's PCK certificate, what
// is needed to fetch its collateral: TEE kind, FMSPC and PCK CA. A
// configfs-tsm report carrying a TDX quote is queried for that quote
// (DCAPQuote). Nothing is verified here: the fetched collateral is verified
// when it is used.
func CollateralQuery(raw []byte) (pcs.Query, error) {
	if q, ok := DCAPQuote(raw); ok {
		raw = q
	}
	var sig *dcap.SignatureData
	var tee pcs.TEE
	switch Detect(raw) {
	case KindSGXQuote:
		q, err := sgx.Parse(raw)
		if err != nil {
			return pcs.Query{}, err
		}
		sig, tee = q.Sig, pcs.SGX
	case KindTDXQuote:
		q, err := tdx.Parse(raw)
		if err != nil {
			return pcs.Query{}, err
		}
		sig, tee = q.Sig, pcs.TDX
	default:
		return pcs.Query{}, verr.New("evidence", "collateral query", verr.Unsupported, "not an SGX or TDX quote: only DCAP quotes have PCS collateral")
	}
	certs, err := dcap.ParsePEMChain(sig.PCKChainPEM, "PCK certificate chain")
	if err != nil {
		return pcs.Query{}, err
	}
	ext, err := dcap.ParsePCKExtensions(certs[0])
	if err != nil {
		return pcs.Query{}, err
	}
	ca, err := dcap.PCKCA(certs[0])
	if err != nil {
		return pcs.Query{}, err
	}
	return pcs.Query{TEE: tee, FMSPC: ext.FMSPC[:], CA: ca}, nil
}
