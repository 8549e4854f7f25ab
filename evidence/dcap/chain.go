package dcap

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	_ "embed"
	"encoding/asn1"
	"encoding/pem"
	"fmt"
	"math/big"
	"slices"
	"time"

	"crypto/x509"
	"crypto/x509/pkix"

	"github.com/cloister-dev/cloister/evidence/internal/verr"
)

// intelRootDER is the Intel SGX Root CA certificate. It is trusted by its
// public key, whose SHA-256 (of the DER SubjectPublicKeyInfo) is pinned in
// intelRootSPKISHA256 and checked when the package is initialised.
//
//go:embed intel_sgx_root_ca.der
var intelRootDER []byte

const intelRootSPKISHA256 = "a0af031289f5d5d4132f9186068a7fc13628633ba235777472e29b6b6c67a49e"

// IntelRoot returns the built-in Intel SGX Root CA.
func IntelRoot() *x509.Certificate { return intelRoot }

var intelRoot = mustIntelRoot()

func mustIntelRoot() *x509.Certificate {
	c, err := x509.ParseCertificate(intelRootDER)
	if err != nil {
		panic("dcap: built-in Intel SGX Root CA does not parse: " + err.Error())
	}
	sum := sha256.Sum256(c.RawSubjectPublicKeyInfo)
	if fmt.Sprintf("%x", sum) != intelRootSPKISHA256 {
		panic("dcap: built-in Intel SGX Root CA does not match its pinned key")
	}
	return c
}

// IsIntelRoot reports whether c carries the Intel SGX Root CA's public key.
func IsIntelRoot(c *x509.Certificate) bool {
	return bytes.Equal(c.RawSubjectPublicKeyInfo, intelRoot.RawSubjectPublicKeyInfo)
}

// ParsePEMChain parses a PEM certificate chain, leaf first, as a quote's
// certification data carries it. Only CERTIFICATE blocks are allowed, and
// after the last one nothing but a single NUL terminator (which many quotes
// carry), as go-tdx-guest and Intel's format allow.
func ParsePEMChain(data []byte, what string) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	rest := data
	for {
		block, next := pem.Decode(rest)
		if block == nil {
			break
		}
		rest = next
		if block.Type != "CERTIFICATE" {
			return nil, verr.New("dcap", what, verr.Malformed, "PEM block %q, want CERTIFICATE", block.Type)
		}
		if len(certs) == MaxChainLength {
			return nil, verr.New("dcap", what, verr.Malformed, "more than %d certificates", MaxChainLength)
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, verr.Wrap("dcap", what, verr.Malformed, err, "certificate %d does not parse", len(certs))
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, verr.New("dcap", what, verr.Malformed, "no PEM certificates")
	}
	if len(rest) > 1 || (len(rest) == 1 && rest[0] != 0) {
		return nil, verr.New("dcap", what, verr.Malformed, "%d bytes after the last certificate (only one NUL may follow it)", len(rest))
	}
	return certs, nil
}

// verifiedChain is a chain whose signatures were checked up to a trusted
// root. Its validity window is the intersection of every certificate's
// (the root's included), so a cached chain is re-checked against the
// verification time with two comparisons.
type verifiedChain struct {
	certs     []*x509.Certificate // leaf first, without the root
	root      *x509.Certificate   // the trusted root it ends at
	notBefore time.Time
	notAfter  time.Time
	// expiring names the certificate whose notAfter is notAfter, for messages.
	expiring string
	starting string
}

// verifyChain checks that certs (leaf first, optionally ending in a copy of
// the root) chain by signature to one of roots. The root carried in certs
// is never trusted itself: it is only compared, byte for byte, with the
// trusted ones. Time is not checked here; see checkTime.
func verifyChain(certs []*x509.Certificate, roots []*x509.Certificate, what string) (*verifiedChain, error) {
	if len(certs) == 0 {
		return nil, verr.New("dcap", what, verr.Malformed, "empty chain")
	}
	chain := certs
	last := chain[len(chain)-1]
	if len(chain) > 1 && bytes.Equal(last.RawIssuer, last.RawSubject) && last.CheckSignatureFrom(last) == nil {
		// A self-signed copy of a root: it must be one of the trusted
		// roots, byte for byte. Intel compares the two certificates'
		// signatures (QVL PckCertVerifier, TCBSigningChain), so another
		// certificate for the same key, with other dates, is not the root.
		var found bool
		for _, r := range roots {
			if bytes.Equal(r.Raw, last.Raw) {
				found = true
			}
		}
		if !found {
			return nil, verr.New("dcap", what, verr.UntrustedRoot, "chain ends at %q, which is not a trusted root certificate", last.Subject.String())
		}
		chain = chain[:len(chain)-1]
	}
	for i := 0; i+1 < len(chain); i++ {
		if !bytes.Equal(chain[i].RawIssuer, chain[i+1].RawSubject) {
			return nil, verr.New("dcap", what, verr.UntrustedRoot, "%q is not issued by %q", chain[i].Subject.String(), chain[i+1].Subject.String())
		}
		if err := chain[i].CheckSignatureFrom(chain[i+1]); err != nil {
			return nil, verr.Wrap("dcap", what, verr.BadSignature, err, "signature of %q by %q", chain[i].Subject.String(), chain[i+1].Subject.String())
		}
	}
	top := chain[len(chain)-1]
	var root *x509.Certificate
	for _, r := range roots {
		if bytes.Equal(top.RawIssuer, r.RawSubject) && top.CheckSignatureFrom(r) == nil {
			root = r
			break
		}
	}
	if root == nil {
		return nil, verr.New("dcap", what, verr.UntrustedRoot, "%q (issuer %q) is not signed by a trusted root", top.Subject.String(), top.Issuer.String())
	}
	// Intel checks every certificate signature of these chains, the root's
	// own included, as ECDSA over SHA-256 with a P-256 key
	// (crypto::verifySha256EcdsaSignature), whatever else the certificate
	// names; so does Cloister.
	for _, c := range append(chain[:len(chain):len(chain)], root) {
		if c.SignatureAlgorithm != x509.ECDSAWithSHA256 {
			return nil, verr.New("dcap", what, verr.Unsupported, "%q is signed with %v; want ECDSA-SHA256 (ECDSAWithSHA256)", c.Subject.String(), c.SignatureAlgorithm)
		}
	}
	for _, c := range append(chain[1:len(chain):len(chain)], root) {
		if _, err := certECDSAKey(c, what); err != nil {
			return nil, err
		}
	}
	for _, c := range append(chain[:len(chain):len(chain)], root) {
		if err := checkRequiredExtensions(c, what); err != nil {
			return nil, err
		}
	}
	v := &verifiedChain{certs: chain, root: root, notBefore: root.NotBefore, notAfter: root.NotAfter,
		expiring: root.Subject.CommonName, starting: root.Subject.CommonName}
	for _, c := range chain {
		if c.NotBefore.After(v.notBefore) {
			v.notBefore, v.starting = c.NotBefore, c.Subject.CommonName
		}
		if c.NotAfter.Before(v.notAfter) {
			v.notAfter, v.expiring = c.NotAfter, c.Subject.CommonName
		}
	}
	return v, nil
}

// requiredExtensions are the extensions Intel's certificate parser
// requires of every certificate it reads (QVL REQUIRED_X509_EXTENSIONS).
var requiredExtensions = []struct {
	oid  asn1.ObjectIdentifier
	name string
}{
	{asn1.ObjectIdentifier{2, 5, 29, 35}, "authority key identifier"},
	{asn1.ObjectIdentifier{2, 5, 29, 31}, "CRL distribution points"},
	{asn1.ObjectIdentifier{2, 5, 29, 14}, "subject key identifier"},
	{asn1.ObjectIdentifier{2, 5, 29, 15}, "key usage"},
	{asn1.ObjectIdentifier{2, 5, 29, 19}, "basic constraints"},
}

// checkRequiredExtensions fails unless c carries every required extension.
func checkRequiredExtensions(c *x509.Certificate, what string) error {
	for _, need := range requiredExtensions {
		if !slices.ContainsFunc(c.Extensions, func(e pkix.Extension) bool { return e.Id.Equal(need.oid) }) {
			return verr.New("dcap", what, verr.Malformed, "certificate %q has no %s extension (Intel requires it)", c.Subject.String(), need.name)
		}
	}
	return nil
}

// checkTime fails when t is outside the chain's validity, naming the
// certificate that is not valid.
func (v *verifiedChain) checkTime(t time.Time, what string) error {
	if t.Before(v.notBefore) {
		return verr.New("dcap", what, verr.Expired, "certificate %q is not valid before %s (time %s)", v.starting, v.notBefore.UTC().Format(time.RFC3339), t.UTC().Format(time.RFC3339))
	}
	if t.After(v.notAfter) {
		return verr.New("dcap", what, verr.Expired, "certificate %q expired at %s (time %s)", v.expiring, v.notAfter.UTC().Format(time.RFC3339), t.UTC().Format(time.RFC3339))
	}
	return nil
}

// verifyRawSignature checks a raw r||s ECDSA P-256 signature over msg.
func verifyRawSignature(pub *ecdsa.PublicKey, msg []byte, sig []byte) bool {
	if len(sig) != SignatureSize || pub == nil || pub.Curve != elliptic.P256() {
		return false
	}
	h := sha256.Sum256(msg)
	r := new(big.Int).SetBytes(sig[:32])
	s := new(big.Int).SetBytes(sig[32:])
	return ecdsa.Verify(pub, h[:], r, s)
}

// certECDSAKey returns the P-256 key of c.
func certECDSAKey(c *x509.Certificate, what string) (*ecdsa.PublicKey, error) {
	k, ok := c.PublicKey.(*ecdsa.PublicKey)
	if !ok || k.Curve != elliptic.P256() {
		return nil, verr.New("dcap", what, verr.Unsupported, "certificate %q does not carry a P-256 key", c.Subject.String())
	}
	return k, nil
}

// rawP256Key decodes a raw X||Y attestation key.
func rawP256Key(raw []byte) (*ecdsa.PublicKey, error) {
	b := make([]byte, 0, 65)
	b = append(b, 4)
	b = append(b, raw...)
	k, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), b)
	if err != nil {
		return nil, verr.Wrap("dcap", "attestation key", verr.Malformed, err, "not a P-256 point")
	}
	return k, nil
}
