package dcap

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/cloister-dev/cloister/evidence/internal/verr"
	"github.com/cloister-dev/cloister/evidence/pcs"
)

// Collateral is a bundle whose signatures were checked: TCB info and QE
// identity by a signing chain that ends at a trusted root, the root CA CRL
// by that root. What depends on time (validity windows, issue and
// nextUpdate dates) is checked at every verification, so one Collateral
// serves any verification time.
type Collateral struct {
	TCBInfo    *TCBInfo
	QEIdentity *QEIdentity

	tcbChain *verifiedChain
	qeChain  *verifiedChain
	root     *x509.Certificate
	rootCRL  *crl   // nil when the bundle has none
	pckCRL   []byte // DER, checked against the quote's PCK CA when used; nil when absent
	digest   [32]byte

	// mu guards pckCRLs: the PCK CRL checked against each PCK CA it was
	// used with (a bundle serves one CA, so this stays tiny).
	mu      sync.Mutex
	pckCRLs map[*x509.Certificate]*crl
}

// pckCRLFor returns the bundle's PCK CRL with its signature checked by ca,
// the quote's (already verified) PCK CA.
func (c *Collateral) pckCRLFor(ca *x509.Certificate) (*crl, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if l := c.pckCRLs[ca]; l != nil {
		return l, nil
	}
	l, err := parseCRL(c.pckCRL, ca, "PCK CRL")
	if err != nil {
		return nil, err
	}
	if c.pckCRLs == nil || len(c.pckCRLs) >= 16 {
		c.pckCRLs = map[*x509.Certificate]*crl{}
	}
	c.pckCRLs[ca] = l
	return l, nil
}

// VerifyCollateral decodes b and checks every signature in it against roots.
// Nothing in b is parsed as JSON before its signature is verified.
func VerifyCollateral(b *pcs.Bundle, roots []*x509.Certificate) (*Collateral, error) {
	return verifyCollateral(b, roots, verifyChain)
}

// chainVerifier is verifyChain, or a caching wrapper around it.
type chainVerifier func(certs []*x509.Certificate, roots []*x509.Certificate, what string) (*verifiedChain, error)

func verifyCollateral(b *pcs.Bundle, roots []*x509.Certificate, verifyChain chainVerifier) (*Collateral, error) {
	d, err := b.DecodeUnverified()
	if err != nil {
		return nil, verr.Wrap("dcap", "collateral", verr.Malformed, err, "bundle does not decode")
	}
	c := &Collateral{digest: bundleDigest(b)}
	// Intel's TCB signing chain is the signing certificate and the root
	// (QVL TCBSigningChain::verify needs the root in it).
	for _, ch := range []struct {
		certs []*x509.Certificate
		what  string
	}{{d.TCBInfoChain, "TCB info issuer chain"}, {d.QEIdentityChain, "QE identity issuer chain"}} {
		if len(ch.certs) != 2 {
			return nil, verr.New("dcap", ch.what, verr.UntrustedRoot, "%d certificate(s); want the TCB signing certificate and the root", len(ch.certs))
		}
	}
	if c.tcbChain, err = verifyChain(d.TCBInfoChain, roots, "TCB info issuer chain"); err != nil {
		return nil, err
	}
	if c.qeChain, err = verifyChain(d.QEIdentityChain, roots, "QE identity issuer chain"); err != nil {
		return nil, err
	}
	for _, ch := range []*verifiedChain{c.tcbChain, c.qeChain} {
		if err := checkSigningChain(ch); err != nil {
			return nil, err
		}
	}
	if !c.tcbChain.root.Equal(c.qeChain.root) {
		return nil, verr.New("dcap", "collateral", verr.CollateralMismatch, "TCB info and QE identity are signed under different roots")
	}
	c.root = c.tcbChain.root
	if err := verifySigned(c.tcbChain.certs[0], d.TCBInfo, d.TCBInfoSignature, "TCB info signature"); err != nil {
		return nil, err
	}
	if err := verifySigned(c.qeChain.certs[0], d.QEIdentity, d.QEIdentitySignature, "QE identity signature"); err != nil {
		return nil, err
	}
	// Only now that the signatures hold is the signed text read.
	if c.TCBInfo, err = ParseTCBInfo(d.TCBInfo); err != nil {
		return nil, err
	}
	if c.QEIdentity, err = ParseQEIdentity(d.QEIdentity); err != nil {
		return nil, err
	}
	if d.RootCACRL != nil {
		if c.rootCRL, err = parseCRL(d.RootCACRL, c.root, "root CA CRL"); err != nil {
			return nil, err
		}
	}
	c.pckCRL = d.PCKCRL
	return c, nil
}

// checkSigningChain requires a collateral signing chain to be one end-entity
// certificate issued directly by the root, as Intel's TCB Signing
// certificate is. Without this, any key that chains to the root, a PCK
// key among them, could sign TCB info.
func checkSigningChain(ch *verifiedChain) error {
	if len(ch.certs) != 1 {
		return verr.New("dcap", "collateral signing chain", verr.UntrustedRoot, "signer %q is not issued directly by the root (%d certificates below it)", ch.certs[0].Subject.String(), len(ch.certs))
	}
	// QVL TCBSigningChain::verify: the names say what each certificate is.
	if cn := ch.certs[0].Subject.CommonName; !strings.Contains(cn, "SGX TCB Signing") {
		return verr.New("dcap", "collateral signing chain", verr.UntrustedRoot, "signer CN %q does not contain \"SGX TCB Signing\"", cn)
	}
	if cn := ch.root.Subject.CommonName; !strings.Contains(cn, "SGX Root CA") {
		return verr.New("dcap", "collateral signing chain", verr.UntrustedRoot, "root CN %q does not contain \"SGX Root CA\"", cn)
	}
	if ch.certs[0].IsCA {
		return verr.New("dcap", "collateral signing chain", verr.UntrustedRoot, "signer %q is a CA certificate", ch.certs[0].Subject.String())
	}
	for _, e := range ch.certs[0].Extensions {
		if e.Id.Equal(oidSGXExtensions) {
			return verr.New("dcap", "collateral signing chain", verr.UntrustedRoot, "signer %q is a PCK certificate", ch.certs[0].Subject.String())
		}
	}
	return nil
}

func verifySigned(signer *x509.Certificate, text, sig []byte, what string) error {
	key, err := certECDSAKey(signer, what)
	if err != nil {
		return err
	}
	if !verifyRawSignature(key, text, sig) {
		return verr.New("dcap", what, verr.BadSignature, "does not verify with the key of %q", signer.Subject.String())
	}
	return nil
}

// checkTime checks every time-dependent part of the collateral at t.
func (c *Collateral) checkTime(t time.Time) error {
	if err := c.tcbChain.checkTime(t, "TCB info issuer chain"); err != nil {
		return err
	}
	if err := c.qeChain.checkTime(t, "QE identity issuer chain"); err != nil {
		return err
	}
	if err := checkWindow(c.TCBInfo.IssueDate, c.TCBInfo.NextUpdate, t, "TCB info", "issueDate"); err != nil {
		return err
	}
	if err := checkWindow(c.QEIdentity.IssueDate, c.QEIdentity.NextUpdate, t, "QE identity", "issueDate"); err != nil {
		return err
	}
	if c.rootCRL != nil {
		if err := c.rootCRL.checkTime(t); err != nil {
			return err
		}
		for _, ch := range []*verifiedChain{c.tcbChain, c.qeChain} {
			for _, cert := range ch.certs {
				if err := c.rootCRL.checkCert(cert); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// bundleDigest identifies a bundle's content: each field length-prefixed,
// so no two bundles share a digest by moving bytes between fields.
func bundleDigest(b *pcs.Bundle) [32]byte {
	h := sha256.New()
	for _, f := range []string{b.TCBInfo, b.TCBInfoSignature, b.TCBInfoIssuerChain, b.QEIdentity,
		b.QEIdentitySignature, b.QEIdentityIssuerChain, b.PCKCRL, b.PCKCRLIssuerChain, b.RootCACRL} {
		var n [8]byte
		binary.BigEndian.PutUint64(n[:], uint64(len(f)))
		h.Write(n[:])
		io.WriteString(h, f)
	}
	var d [32]byte
	h.Sum(d[:0])
	return d
}
