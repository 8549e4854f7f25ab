package snp

import (
	"crypto/x509"
	"time"

	"github.com/cloister-dev/cloister/evidence/internal/verr"
	"github.com/google/go-sev-guest/abi"
	"github.com/google/go-sev-guest/verify"
	"github.com/google/go-sev-guest/verify/trust"
)

// classify turns a go-sev-guest verification failure into a *verr.Error.
// go-sev-guest formats its errors with %v, so the type of the cause (an
// x509.CertificateInvalidError, an ECDSA failure) is lost. We find the
// failing check by re-running, with typed results, the two checks whose
// outcome the caller branches on: the chain (x509, at opts.Time and at a
// time inside every validity window) and the signature (go-sev-guest's
// own SnpReportSignature). What remains is the certificate profile
// (version, algorithms, names, AMD extensions). The original error is
// always kept as the cause.
func classify(sevErr error, raw []byte, ek *x509.Certificate, signer abi.ReportSigner, entries []*trust.AMDRootCerts, at time.Time) error {
	kind := signerName(signer)
	if reason, detail, bad := diagnoseChain(ek, signer, entries, at); bad {
		return verr.Wrap(pkg, kind+" chain", reason, sevErr, "%s", detail)
	}
	if err := verify.SnpReportSignature(raw, ek); err != nil {
		return verr.Wrap(pkg, stepSignature, verr.BadSignature, err, "signature does not verify with the %s key", kind)
	}
	return verr.Wrap(pkg, kind+" certificate", verr.Malformed, sevErr, "%s does not match AMD's KDS certificate profile", kind)
}

// diagnoseChain reports whether and why the signing key certificate does
// not chain to a trusted ARK at time at. A chain that verifies at some
// other time inside every certificate's validity window is a time problem
// (Expired); one that verifies at no time is an untrusted root.
func diagnoseChain(ek *x509.Certificate, signer abi.ReportSigner, entries []*trust.AMDRootCerts, at time.Time) (verr.Reason, string, bool) {
	kind := signerName(signer)
	if chainsAt(ek, signer, entries, at) {
		return 0, "", false
	}
	if at.Before(ek.NotBefore) || at.After(ek.NotAfter) {
		return verr.Expired, kind + " not valid at " + at.UTC().Format(time.RFC3339) +
			" (valid " + ek.NotBefore.UTC().Format(time.RFC3339) + " to " + ek.NotAfter.UTC().Format(time.RFC3339) + ")", true
	}
	for _, e := range entries {
		pc := e.ProductCerts
		ica := pc.Ask
		if signer == abi.VlekReportSigner {
			ica = pc.Asvk
		}
		if ica == nil || pc.Ark == nil {
			continue
		}
		// The latest NotBefore is inside every window if any time is.
		t := ek.NotBefore
		for _, c := range []*x509.Certificate{ica, pc.Ark} {
			if c.NotBefore.After(t) {
				t = c.NotBefore
			}
		}
		if o := e.X509Options(t, signer); o != nil {
			if _, err := ek.Verify(*o); err == nil {
				return verr.Expired, "chain via " + ica.Subject.CommonName + " to " + pc.Ark.Subject.CommonName +
					" not valid at " + at.UTC().Format(time.RFC3339), true
			}
		}
	}
	return verr.UntrustedRoot, kind + " does not chain to a trusted AMD root", true
}

// chainsAt reports whether the signing key certificate chains, at time at,
// to the ARK of one of entries through that entry's intermediate.
func chainsAt(ek *x509.Certificate, signer abi.ReportSigner, entries []*trust.AMDRootCerts, at time.Time) bool {
	for _, e := range entries {
		if o := e.X509Options(at, signer); o != nil {
			if _, err := ek.Verify(*o); err == nil {
				return true
			}
		}
	}
	return false
}
