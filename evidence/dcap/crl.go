package dcap

import (
	"bytes"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"math/big"
	"slices"
	"time"

	"github.com/cloister-dev/cloister/evidence/internal/verr"
)

var (
	oidCRLNumber      = asn1.ObjectIdentifier{2, 5, 29, 20}
	oidAuthorityKeyID = asn1.ObjectIdentifier{2, 5, 29, 35}
)

// crl is a CRL whose signature was checked against its issuer.
type crl struct {
	issuer     *x509.Certificate
	thisUpdate time.Time
	nextUpdate time.Time
	revoked    map[string]bool // serial numbers, by serialKey
	what       string
}

// parseCRL parses a DER (or PEM) CRL and checks its signature by issuer.
func parseCRL(der []byte, issuer *x509.Certificate, what string) (*crl, error) {
	if b, _ := pem.Decode(der); b != nil && b.Type == "X509 CRL" {
		der = b.Bytes
	}
	rl, err := x509.ParseRevocationList(der)
	if err != nil {
		return nil, verr.Wrap("dcap", what, verr.Malformed, err, "does not parse")
	}
	if len(rl.RevokedCertificateEntries) > MaxCRLEntries {
		return nil, verr.New("dcap", what, verr.Malformed, "%d entries (cap %d)", len(rl.RevokedCertificateEntries), MaxCRLEntries)
	}
	if !bytes.Equal(rl.RawIssuer, issuer.RawSubject) {
		return nil, verr.New("dcap", what, verr.CollateralMismatch, "issued by %q, want %q", rl.Issuer.String(), issuer.Subject.String())
	}
	if err := rl.CheckSignatureFrom(issuer); err != nil {
		return nil, verr.Wrap("dcap", what, verr.BadSignature, err, "not signed by %q", issuer.Subject.String())
	}
	// Intel's library requires both extensions (QVL PckCrlVerifier,
	// CRL_REQUIRED_EXTENSIONS); only their presence is checked there.
	for _, need := range []struct {
		oid  asn1.ObjectIdentifier
		name string
	}{{oidCRLNumber, "CRL number"}, {oidAuthorityKeyID, "authority key identifier"}} {
		if !slices.ContainsFunc(rl.Extensions, func(e pkix.Extension) bool { return e.Id.Equal(need.oid) }) {
			return nil, verr.New("dcap", what, verr.Malformed, "no %s extension (Intel requires it)", need.name)
		}
	}
	if rl.NextUpdate.IsZero() {
		return nil, verr.New("dcap", what, verr.Malformed, "no nextUpdate")
	}
	c := &crl{issuer: issuer, thisUpdate: rl.ThisUpdate, nextUpdate: rl.NextUpdate, revoked: map[string]bool{}, what: what}
	for _, e := range rl.RevokedCertificateEntries {
		c.revoked[serialKey(e.SerialNumber)] = true
	}
	return c, nil
}

func (c *crl) checkTime(t time.Time) error {
	return checkWindow(c.thisUpdate, c.nextUpdate, t, c.what, "thisUpdate")
}

// checkCert fails if cert is listed.
func (c *crl) checkCert(cert *x509.Certificate) error {
	if c.revoked[serialKey(cert.SerialNumber)] {
		return verr.New("dcap", c.what, verr.Revoked, "certificate %q (serial %x) is revoked", cert.Subject.String(), cert.SerialNumber)
	}
	return nil
}

// checkWindow fails when t is outside [from, until], naming the item.
func checkWindow(from, until, t time.Time, what, fromName string) error {
	if t.Before(from) {
		return verr.New("dcap", what, verr.Expired, "not valid yet: %s is %s, time is %s", fromName, from.UTC().Format(time.RFC3339), t.UTC().Format(time.RFC3339))
	}
	if t.After(until) {
		return verr.New("dcap", what, verr.Expired, "expired: nextUpdate was %s, time is %s", until.UTC().Format(time.RFC3339), t.UTC().Format(time.RFC3339))
	}
	return nil
}

// serialKey is a map key for a serial number: its magnitude's bytes. The
// sign is dropped as Intel drops it (QVL CrlStore::isRevoked compares the
// CRL entry's ASN1_INTEGER bytes with BN_bn2bin of the certificate's
// serial): a non-conforming negative entry revokes the certificate whose
// serial has its magnitude.
func serialKey(n *big.Int) string {
	return string(n.Bytes())
}
