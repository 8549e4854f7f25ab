// Package snp verifies AMD SEV-SNP attestation reports.
//
// The cryptographic work is go-sev-guest's (github.com/google/go-sev-guest):
// abi parses the report and the certificate table, verify checks the
// VCEK/VLEK certificate against AMD's KDS profile, its chain to an AMD root
// key (ARK) and the report signature. This package decides what goes in
// (the time, the certificates, the roots, never the network), classifies
// failures as *verr.Error reasons, checks that the certificate belongs to
// the report (CHIP_ID and REPORTED_TCB), and hands out only fields that
// were verified.
//
// Revocation is not checked: AMD publishes CRLs only online and Verify never
// touches the network, so every Report carries a warning saying so.
//
// Milan, Genoa and Turin ARK/ASK/ASVK roots are built in (go-sev-guest's
// embedded copies), but go-sev-guest v0.15.0 does not read Turin VCEK/VLEK
// certificates (their fmcSPL extension and 8-byte hwID are unknown to its
// kds package), so Turin evidence is reported as Unsupported until the
// library learns them.
package snp

import (
	"bytes"
	"context"
	"crypto/x509"
	"fmt"
	"time"

	"github.com/cloister-dev/cloister/evidence/internal/verr"
	"github.com/google/go-sev-guest/abi"
	"github.com/google/go-sev-guest/kds"
	spb "github.com/google/go-sev-guest/proto/sevsnp"
	"github.com/google/go-sev-guest/verify"
	"github.com/google/go-sev-guest/verify/trust"
)

const pkg = "snp"

// Steps named in errors.
const (
	stepOptions    = "options"
	stepFormat     = "report format"
	stepCertTable  = "certificate table"
	stepChainInput = "chain"
	stepProduct    = "product"
	stepSignature  = "report signature"
)

// WarnRevocationNotChecked is the warning every Report carries: AMD's CRLs
// are online only and Verify is offline by design.
const WarnRevocationNotChecked = "revocation not checked: AMD CRLs are not consulted offline"

// WarnChipIDMasked is the warning of a VCEK-signed report whose CHIP_ID is
// all zero: the host masked it, so the report does not name its chip and
// is not compared with the VCEK's hwID. The VCEK, unique to one chip, still
// signed it: the certificate, not the claims, says which chip that is.
const WarnChipIDMasked = "CHIP_ID masked by the host: the report does not name its chip (only the VCEK's hwID does)"

// Options carries everything Verify takes from outside.
type Options struct {
	// Time is the verification time for every certificate validity check.
	// Required: a zero Time is an error, never a hidden time.Now().
	Time time.Time
	// VCEK is the DER or PEM VCEK (or VLEK) certificate of the signing key.
	// It takes precedence over one in CertTable.
	VCEK []byte
	// CertTable is the SNP extended-report certificate table (the GUID
	// table in a configfs-tsm auxblob). Its VCEK/VLEK and ASK/ASVK entries
	// are used; an ARK in it is never trusted.
	CertTable []byte
	// Chain is optional PEM ASK/ARK (or ASVK/ARK) certificates. The
	// intermediates are offered for chain building; an ARK in it is never
	// trusted.
	Chain []byte
	// TrustRoots replaces the built-in ARKs when non-empty. The
	// intermediates still come from the built-in set, Chain or CertTable.
	TrustRoots []*x509.Certificate
	// Product is "Milan", "Genoa" or "Turin" to require that product; empty
	// means detect it from the report (version 3 and later carry CPUID
	// family/model) or else from the VCEK's productName extension.
	Product string
}

// Report holds the verified fields of an SEV-SNP attestation report.
type Report struct {
	// Measurement is MEASUREMENT: the launch digest of the guest.
	Measurement [abi.MeasurementSize]byte
	// HostData is HOST_DATA, supplied by the host at launch.
	HostData [abi.HostDataSize]byte
	// IDKeyDigest is ID_KEY_DIGEST (zero without an ID block).
	IDKeyDigest [abi.IDKeyDigestSize]byte
	// AuthorKeyDigest is AUTHOR_KEY_DIGEST (zero without an author key).
	AuthorKeyDigest [abi.AuthorKeyDigestSize]byte
	// ReportID is REPORT_ID.
	ReportID [abi.ReportIDSize]byte
	// ReportData is REPORT_DATA, supplied by the guest.
	ReportData [abi.ReportDataSize]byte
	// ChipID is CHIP_ID (all zero when the host masks it).
	ChipID [abi.ChipIDSize]byte
	// Policy is the guest POLICY.
	Policy uint64
	// VMPL is the VMPL the report was requested from.
	VMPL uint32
	// GuestSVN is GUEST_SVN.
	GuestSVN uint32
	// ReportedTCB is REPORTED_TCB, equal to the signing key certificate's
	// TCB (checked).
	ReportedTCB uint64
	// Debug is policy bit 19: the host may debug (read) the guest.
	Debug bool
	// Product is the product line: "Milan", "Genoa" or "Turin".
	Product string
	// SignerKind is "VCEK" or "VLEK".
	SignerKind string
	// LaunchTCB is LAUNCH_TCB: the TCB version the guest was launched at
	// (a migrated guest keeps its original launch TCB).
	LaunchTCB uint64
	// CurrentTCB is CURRENT_TCB: the TCB of the firmware running now.
	CurrentTCB uint64
	// CommittedTCB is COMMITTED_TCB: the TCB the firmware cannot be rolled
	// back below. Below CurrentTCB, the running firmware is a provisional
	// update the host can still undo.
	CommittedTCB uint64
	// BuiltinRoot is true when the signing key chains to one of AMD's
	// built-in ARKs; false when it chains only to a root from
	// Options.TrustRoots (simulator or test evidence).
	BuiltinRoot bool
	// Warnings lists checks that were not made; it always includes
	// WarnRevocationNotChecked.
	Warnings []string
}

// Verify checks a raw SEV-SNP attestation report (exactly ReportSize
// bytes) at opts.Time: its format, the VCEK/VLEK chain to a trusted AMD
// root, the report signature, and that the certificate is the one for this
// report (CHIP_ID equals the VCEK's hwID unless CHIP_ID is all zero, the
// host's MASK_CHIP_ID case, which adds WarnChipIDMasked;
// REPORTED_TCB equals the certificate's TCB, which exceeds CURRENT_TCB in
// no component). It never uses the network.
// Errors are *verr.Error with Pkg "snp".
//
// Verify does not appraise: policy bits, TCB minimums, measurements and
// report data are the caller's (package policy's) to compare.
func Verify(raw []byte, opts Options) (*Report, error) {
	if opts.Time.IsZero() {
		return nil, verr.New(pkg, stepOptions, verr.MissingCollateral, "verification time is zero")
	}
	if opts.Product != "" && !knownProduct(opts.Product) {
		return nil, verr.New(pkg, stepOptions, verr.Unsupported,
			"unknown product %q (want %s, %s or %s)", opts.Product, ProductMilan, ProductGenoa, ProductTurin)
	}
	if len(opts.TrustRoots) > maxTrustRoots {
		return nil, verr.New(pkg, stepOptions, verr.Malformed, "%d trust roots, limit %d", len(opts.TrustRoots), maxTrustRoots)
	}
	for i, c := range opts.TrustRoots {
		if c == nil {
			return nil, verr.New(pkg, stepOptions, verr.Malformed, "trust root %d is nil", i)
		}
	}

	report, err := Parse(raw)
	if err != nil {
		return nil, err
	}
	info, err := abi.ParseSignerInfo(report.GetSignerInfo())
	if err != nil { // Parse checked it already; kept so no path skips it.
		return nil, verr.Wrap(pkg, stepFormat, verr.Malformed, err, "bad signer info")
	}
	switch info.SigningKey {
	case abi.VcekReportSigner, abi.VlekReportSigner:
	default:
		return nil, verr.New(pkg, stepSignature, verr.BadSignature, "report is not signed (SIGNING_KEY %v)", info.SigningKey)
	}
	signer := info.SigningKey
	kind := signerName(signer)

	table, err := parseCertTable(opts.CertTable)
	if err != nil {
		return nil, err
	}
	chain, err := parsePEMChain(opts.Chain)
	if err != nil {
		return nil, err
	}
	var warnings []string
	ekDER := opts.VCEK
	tableEK := table.vcek
	if signer == abi.VlekReportSigner {
		tableEK = table.vlek
	}
	switch {
	case len(ekDER) == 0 && len(tableEK) == 0:
		return nil, verr.New(pkg, "no "+kind, verr.MissingCollateral, "pass --vcek or a certificate table")
	case len(ekDER) == 0:
		ekDER = tableEK
	case len(tableEK) != 0 && !bytes.Equal(tableEK, ekDER):
		warnings = append(warnings, fmt.Sprintf("certificate table %s ignored: the one given explicitly is used", kind))
	}
	ek, err := parseCert(ekDER, kind+" certificate", kind)
	if err != nil {
		return nil, err
	}
	extra := chain
	for i, b := range table.icas {
		c, err := parseCert(b, stepCertTable, fmt.Sprintf("intermediate %d", i))
		if err != nil {
			return nil, err
		}
		extra = append(extra, c)
	}

	product, err := detectProduct(report, ek, signer, opts.Product)
	if err != nil {
		return nil, err
	}
	// go-sev-guest rejects a certificate whose AMD extensions it cannot
	// read only deep inside its checks; say so here, and precisely for
	// Turin, whose KDS certificates (fmcSPL, 8-byte hwID) v0.15.0 does not
	// know.
	if _, err := kds.CertificateExtensions(ek, signer); err != nil {
		if product == ProductTurin {
			return nil, verr.Wrap(pkg, kind+" certificate", verr.Unsupported, err,
				"go-sev-guest v0.15.0 cannot read Turin %s extensions", kind)
		}
		return nil, verr.Wrap(pkg, kind+" certificate", verr.Malformed, err, "bad AMD extensions")
	}
	roots, err := trustedRoots(product, signer, opts.TrustRoots, extra)
	if err != nil {
		return nil, verr.Wrap(pkg, kind+" chain", verr.UntrustedRoot, err, "no usable roots")
	}

	sevOpts := &verify.Options{
		// Offline: never fill in missing certificates from AMD's KDS, and
		// a getter that refuses in case a code path asks anyway.
		DisableCertFetching: true,
		Getter:              offlineGetter{},
		CheckRevocations:    false,
		Now:                 opts.Time,
		TrustedRoots:        roots,
	}
	if report.GetCpuid1EaxFms() == 0 {
		// Only used by go-sev-guest for reports without CPUID; it then
		// compares it with the VCEK's productName (name only, no stepping).
		p, err := kds.ParseProductLine(product)
		if err != nil {
			return nil, verr.Wrap(pkg, stepProduct, verr.Unsupported, err, "product %q", product)
		}
		sevOpts.Product = p
	}
	certs := &spb.CertificateChain{}
	if signer == abi.VlekReportSigner {
		certs.VlekCert = ek.Raw
	} else {
		certs.VcekCert = ek.Raw
	}
	att := &spb.Attestation{Report: report, CertificateChain: certs}
	if err := verify.SnpAttestationContext(context.Background(), att, sevOpts); err != nil {
		return nil, classify(err, raw, ek, signer, roots[product], opts.Time)
	}

	bindWarn, err := checkBinding(report, ek, signer)
	if err != nil {
		return nil, err
	}
	warnings = append(warnings, bindWarn...)
	warnings = append(warnings, WarnRevocationNotChecked)
	out, err := buildReport(report, product, kind, warnings)
	if err != nil {
		return nil, err
	}
	// Which root vouched for the key: AMD's, unless the caller replaced the
	// roots and the key chains only to one of theirs. A caller naming AMD's
	// own ARK still gets hardware evidence.
	out.BuiltinRoot = len(opts.TrustRoots) == 0
	if !out.BuiltinRoot {
		amd, err := trustedRoots(product, signer, nil, extra)
		out.BuiltinRoot = err == nil && chainsAt(ek, signer, amd[product], opts.Time)
	}
	return out, nil
}

// detectProduct returns the product line of the report: from the CPUID
// family/model that report version 3 and later carry, else from the
// signing key certificate's productName extension (1.3.6.1.4.1.3704.1.2),
// which is what go-sev-guest itself uses in those two cases. want, if
// set, must match.
func detectProduct(r *spb.Report, ek *x509.Certificate, signer abi.ReportSigner, want string) (string, error) {
	var product string
	if fms := r.GetCpuid1EaxFms(); fms != 0 {
		product = kds.ProductLineFromFms(fms)
		if !knownProduct(product) {
			family, model, _ := abi.FmsFromCpuid1Eax(fms)
			return "", verr.New(pkg, stepProduct, verr.Unsupported,
				"report CPUID family 0x%X model 0x%X is not a known SEV-SNP product", family, model)
		}
	} else {
		kind := signerName(signer)
		exts, err := kds.CertificateExtensions(ek, signer)
		if err != nil {
			return "", verr.Wrap(pkg, kind+" certificate", verr.Malformed, err, "bad AMD extensions")
		}
		p, err := kds.ParseProductName(exts.ProductName, signer)
		if err != nil {
			return "", verr.Wrap(pkg, stepProduct, verr.Unsupported, err, "%s productName %q", kind, exts.ProductName)
		}
		product = kds.ProductLine(p)
		if !knownProduct(product) {
			return "", verr.New(pkg, stepProduct, verr.Unsupported, "%s productName %q is not a known product", kind, exts.ProductName)
		}
	}
	if want != "" && want != product {
		return "", verr.New(pkg, stepProduct, verr.CollateralMismatch, "evidence is from %s, want %s", product, want)
	}
	return product, nil
}

// checkBinding checks that the verified signing key certificate is the one
// for this report. go-sev-guest leaves both checks to its validate package,
// but they are about authenticity, not policy: a VCEK is specific to one
// chip and one TCB, so a report naming another chip or TCB would hand the
// caller fields the certificate does not vouch for.
func checkBinding(r *spb.Report, ek *x509.Certificate, signer abi.ReportSigner) ([]string, error) {
	kind := signerName(signer)
	step := kind + " binding"
	exts, err := kds.CertificateExtensions(ek, signer)
	if err != nil {
		return nil, verr.Wrap(pkg, kind+" certificate", verr.Malformed, err, "bad AMD extensions")
	}
	if uint64(exts.TCBVersion) != r.GetReportedTcb() {
		return nil, verr.New(pkg, step, verr.BadBinding,
			"REPORTED_TCB 0x%016x, %s is for TCB 0x%016x", r.GetReportedTcb(), kind, uint64(exts.TCBVersion))
	}
	// Firmware derives keys only at or below the TCB it runs, so a
	// certificate TCB above CURRENT_TCB in any component cannot be this
	// firmware's key (go-sev-guest's validate refuses it too).
	if cert, cur := kds.DecomposeTCBVersion(exts.TCBVersion), kds.DecomposeTCBVersion(kds.TCBVersion(r.GetCurrentTcb())); !kds.TCBPartsLE(cert, cur) {
		return nil, verr.New(pkg, step, verr.BadBinding,
			"%s is for TCB 0x%016x, above CURRENT_TCB 0x%016x in at least one component", kind, uint64(exts.TCBVersion), r.GetCurrentTcb())
	}
	var warnings []string
	if signer == abi.VcekReportSigner {
		// The skip is keyed on the CHIP_ID itself, as go-sev-guest's
		// validate does, not on SIGNER_INFO's MASK_CHIP_KEY bit: that bit
		// is about the chip key (the VCEK), while the host's separate
		// MASK_CHIP_ID setting is what zeroes CHIP_ID. The bit excuses no
		// other chip's ID.
		if allZero(r.GetChipId()) {
			warnings = append(warnings, WarnChipIDMasked)
		} else if !bytes.Equal(r.GetChipId(), exts.HWID) {
			return nil, verr.New(pkg, step, verr.BadBinding,
				"CHIP_ID %x, VCEK hwID %x", r.GetChipId(), exts.HWID)
		}
	}
	return warnings, nil
}

// allZero reports whether every byte of b is zero.
func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// buildReport copies the verified fields out of go-sev-guest's report.
func buildReport(r *spb.Report, product, kind string, warnings []string) (*Report, error) {
	pol, err := abi.ParseSnpPolicy(r.GetPolicy())
	if err != nil { // Parse checked it already.
		return nil, verr.Wrap(pkg, stepFormat, verr.Malformed, err, "bad policy")
	}
	out := &Report{
		Policy:       r.GetPolicy(),
		VMPL:         r.GetVmpl(),
		GuestSVN:     r.GetGuestSvn(),
		ReportedTCB:  r.GetReportedTcb(),
		LaunchTCB:    r.GetLaunchTcb(),
		CurrentTCB:   r.GetCurrentTcb(),
		CommittedTCB: r.GetCommittedTcb(),
		Debug:        pol.Debug,
		Product:      product,
		SignerKind:   kind,
		Warnings:     warnings,
	}
	// abi.ReportToProto slices every field at its fixed size, so each copy
	// fills its array exactly.
	copy(out.Measurement[:], r.GetMeasurement())
	copy(out.HostData[:], r.GetHostData())
	copy(out.IDKeyDigest[:], r.GetIdKeyDigest())
	copy(out.AuthorKeyDigest[:], r.GetAuthorKeyDigest())
	copy(out.ReportID[:], r.GetReportId())
	copy(out.ReportData[:], r.GetReportData())
	copy(out.ChipID[:], r.GetChipId())
	return out, nil
}

// offlineGetter refuses every fetch. With DisableCertFetching and
// CheckRevocations off go-sev-guest should never call it; it is here so
// that a future code path that does fails closed instead of going online.
type offlineGetter struct{}

// Get refuses.
func (offlineGetter) Get(url string) ([]byte, error) {
	return nil, fmt.Errorf("snp: network access refused for %s: verification is offline", url)
}

var _ trust.HTTPSGetter = offlineGetter{}

// TCBParts are the security patch levels of a TCB_VERSION that AMD
// certifies in a VCEK (its blSPL, teeSPL, snpSPL and ucodeSPL extensions).
type TCBParts struct {
	BootLoader, TEE, SNP, Microcode uint8
}

// SplitTCB splits a TCB_VERSION in the Milan/Genoa layout (byte 0 boot
// loader, 1 TEE, 6 SNP, 7 microcode; go-sev-guest's
// kds.DecomposeTCBVersion). Turin moves the fields (FMC first) but Verify
// refuses Turin evidence, so no verified report has that layout.
func SplitTCB(v uint64) TCBParts {
	p := kds.DecomposeTCBVersion(kds.TCBVersion(v))
	return TCBParts{BootLoader: p.BlSpl, TEE: p.TeeSpl, SNP: p.SnpSpl, Microcode: p.UcodeSpl}
}
