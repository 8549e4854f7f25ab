package qvldiff

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"encoding/asn1"
	"encoding/binary"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"math/big"
	"testing"
	"time"

	"github.com/cloister-dev/cloister/evidence/pcs"
)

// testPKI is a copy of Intel's DCAP PKI with new keys: every certificate is
// a clone of a real Intel certificate from testdata (subject, issuer,
// extensions, SGX extension, validity) signed by the test key of its issuer.
// Intel's library requires Intel's distinguished names (CRL issuers are
// compared with them) and a root with CRL Distribution Points and Key
// Usage; the clones carry both, as the originals do.
type testPKI struct {
	root, platformCA, processorCA, tcbSigning *x509.Certificate
	rootKey, platformKey, processorKey        *ecdsa.PrivateKey
	tcbKey, pckKey, attKey                    *ecdsa.PrivateKey
}

func newKey(t testing.TB) *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// ski is the RFC 5280 method-1 key identifier of pub.
func ski(pub *ecdsa.PublicKey) []byte {
	b, _ := pub.Bytes()
	s := sha1.Sum(b)
	return s[:]
}

// certEdit changes a clone's template before it is signed.
type certEdit func(*x509.Certificate)

// clone re-issues orig for pub, signed by parent's key. Self-signed when
// parent is nil.
func clone(t testing.TB, orig *x509.Certificate, pub *ecdsa.PublicKey, parent *x509.Certificate, parentKey *ecdsa.PrivateKey, edits ...certEdit) *x509.Certificate {
	t.Helper()
	tmpl := *orig
	tmpl.SubjectKeyId = ski(pub)
	tmpl.Extensions = nil
	tmpl.ExtraExtensions = nil
	for _, e := range orig.Extensions {
		if e.Id.Equal(oidSGXExtension) {
			tmpl.ExtraExtensions = append(tmpl.ExtraExtensions, e)
		}
	}
	tmpl.SignatureAlgorithm = x509.ECDSAWithSHA256
	if parent == nil {
		tmpl.AuthorityKeyId = tmpl.SubjectKeyId
		p := tmpl
		p.PublicKey = pub
		parent = &p
	} else {
		tmpl.AuthorityKeyId = parent.SubjectKeyId
	}
	for _, e := range edits {
		e(&tmpl)
	}
	der, err := x509.CreateCertificate(rand.Reader, &tmpl, parent, pub, parentKey)
	if err != nil {
		t.Fatalf("clone %q: %v", orig.Subject.CommonName, err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

var oidSGXExtension = asn1.ObjectIdentifier{1, 2, 840, 113741, 1, 13, 1}

// realCerts are the Intel certificates the test PKI clones.
type realCerts struct {
	root, platformCA, processorCA, tcbSigning *x509.Certificate
	sgxPCK, tdxPCK                            *x509.Certificate
}

func newTestPKI(t testing.TB, rc *realCerts) *testPKI {
	p := &testPKI{rootKey: newKey(t), platformKey: newKey(t), processorKey: newKey(t), tcbKey: newKey(t), pckKey: newKey(t), attKey: newKey(t)}
	p.root = clone(t, rc.root, &p.rootKey.PublicKey, nil, p.rootKey)
	p.platformCA = clone(t, rc.platformCA, &p.platformKey.PublicKey, p.root, p.rootKey)
	p.processorCA = clone(t, rc.processorCA, &p.processorKey.PublicKey, p.root, p.rootKey)
	p.tcbSigning = clone(t, rc.tcbSigning, &p.tcbKey.PublicKey, p.root, p.rootKey)
	return p
}

func (p *testPKI) rootPEM() []byte { return pemCert(p.root.Raw) }

// caFor returns the test CA that matches the issuer of a real PCK certificate.
func (p *testPKI) caFor(pck *x509.Certificate) (*x509.Certificate, *ecdsa.PrivateKey) {
	if bytes.Equal(pck.RawIssuer, p.processorCA.RawSubject) {
		return p.processorCA, p.processorKey
	}
	return p.platformCA, p.platformKey
}

func (p *testPKI) tcbChainPEM() string {
	return string(pemCert(p.tcbSigning.Raw)) + string(pemCert(p.root.Raw))
}

// rawSign returns the raw r||s ECDSA P-256 signature over SHA-256(msg).
func rawSign(t testing.TB, k *ecdsa.PrivateKey, msg []byte) []byte {
	h := sha256.Sum256(msg)
	r, s, err := ecdsa.Sign(rand.Reader, k, h[:])
	if err != nil {
		t.Fatal(err)
	}
	out := make([]byte, 64)
	r.FillBytes(out[:32])
	s.FillBytes(out[32:])
	return out
}

// crlSpec describes a CRL the test PKI issues.
type crlSpec struct {
	thisUpdate, nextUpdate time.Time
	number                 *big.Int
	revoked                []x509.RevocationListEntry
}

func specOf(t testing.TB, der []byte) crlSpec {
	c, err := x509.ParseRevocationList(der)
	if err != nil {
		t.Fatal(err)
	}
	n := c.Number
	if n == nil {
		n = big.NewInt(1)
	}
	return crlSpec{thisUpdate: c.ThisUpdate, nextUpdate: c.NextUpdate, number: n, revoked: c.RevokedCertificateEntries}
}

func (p *testPKI) crl(t testing.TB, s crlSpec, issuer *x509.Certificate, key *ecdsa.PrivateKey) string {
	der, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{
		Number: s.number, ThisUpdate: s.thisUpdate, NextUpdate: s.nextUpdate, RevokedCertificateEntries: s.revoked,
	}, issuer, key)
	if err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(der)
}

// quoteLayout locates the parts of a DCAP quote v3/v4/v5 this harness
// mutates and re-signs. It is deliberately independent of evidence/dcap:
// an oracle harness that shared the verifier's parser would share its bugs.
type quoteLayout struct {
	version    uint16
	signedEnd  int // end of header + body: the region the attestation key signs
	sigData    int // start of the signature data (after its u32 length)
	attKey     int // offset of the attestation key
	qeReport   int // offset of the QE report
	qeSig      int
	authLen    int
	auth       int
	certType   int
	certSize   int
	cert       int // start of the PEM chain
	certEnd    int
	outerType  int // v4/v5: the type-6 wrapper, else -1
	outerSize  int
	bodyOffset int
}

func layoutOf(q []byte) (quoteLayout, error) {
	var l quoteLayout
	if len(q) < 48 {
		return l, fmt.Errorf("quote shorter than its header")
	}
	l.version = binary.LittleEndian.Uint16(q)
	l.bodyOffset = 48
	switch l.version {
	case 3:
		l.signedEnd = 48 + 384
	case 4:
		l.signedEnd = 48 + 584
	case 5:
		if len(q) < 54 {
			return l, fmt.Errorf("short v5 quote")
		}
		l.bodyOffset = 54
		l.signedEnd = 54 + int(binary.LittleEndian.Uint32(q[50:]))
	default:
		return l, fmt.Errorf("version %d", l.version)
	}
	u16 := func(o int) int { return int(binary.LittleEndian.Uint16(q[o:])) }
	u32 := func(o int) int { return int(binary.LittleEndian.Uint32(q[o:])) }
	if len(q) < l.signedEnd+4+128 {
		return l, fmt.Errorf("truncated")
	}
	l.sigData = l.signedEnd + 4
	l.attKey = l.sigData + 64
	o := l.attKey + 64
	l.outerType, l.outerSize = -1, -1
	if l.version >= 4 {
		l.outerType, l.outerSize = o, o+2
		o += 6
	}
	l.qeReport = o
	l.qeSig = o + 384
	l.authLen = l.qeSig + 64
	if len(q) < l.authLen+2 {
		return l, fmt.Errorf("truncated")
	}
	l.auth = l.authLen + 2
	l.certType = l.auth + u16(l.authLen)
	l.certSize = l.certType + 2
	if len(q) < l.certSize+4 {
		return l, fmt.Errorf("truncated")
	}
	l.cert = l.certSize + 4
	l.certEnd = l.cert + u32(l.certSize)
	if l.certEnd > len(q) {
		return l, fmt.Errorf("truncated")
	}
	return l, nil
}

// regions names every part of a quote, for mutations.
func (l quoteLayout) regions() [][3]any {
	r := [][3]any{
		{"header", 0, 48}, {"body", l.bodyOffset, l.signedEnd}, {"sigdata-len", l.signedEnd, l.sigData},
		{"quote-sig", l.sigData, l.attKey}, {"att-key", l.attKey, l.attKey + 64},
		{"qe-report", l.qeReport, l.qeSig}, {"qe-report-sig", l.qeSig, l.authLen}, {"auth-len", l.authLen, l.auth},
		{"auth-data", l.auth, l.certType}, {"cert-type", l.certType, l.certSize}, {"cert-size", l.certSize, l.cert},
		{"pck-chain", l.cert, l.certEnd},
	}
	if l.version == 5 {
		r = append(r, [3]any{"v5-body-desc", 48, 54})
	}
	if l.outerType >= 0 {
		r = append(r, [3]any{"outer-cert-type", l.outerType, l.outerSize}, [3]any{"outer-cert-size", l.outerSize, l.qeReport})
	}
	return r
}

// resign rewrites q under the test PKI: the PCK chain is replaced by
// chainPEM (leaf signed by the test CA), the attestation key by the test
// one, the QE report data re-binds key and auth data (unless keepBinding),
// and the QE report and quote are signed again. q must have a valid layout.
func (p *testPKI) resign(t testing.TB, q []byte, chainPEM []byte, keepBinding bool) []byte {
	l, err := layoutOf(q)
	if err != nil {
		t.Fatalf("resign: %v", err)
	}
	signed := append([]byte{}, q[:l.signedEnd]...)
	qeReport := append([]byte{}, q[l.qeReport:l.qeSig]...)
	auth := append([]byte{}, q[l.auth:l.certType]...)
	certType := binary.LittleEndian.Uint16(q[l.certType:])
	pub, _ := p.attKey.PublicKey.Bytes()
	att := pub[1:]
	if !keepBinding {
		bind := sha256.Sum256(append(append([]byte{}, att...), auth...))
		copy(qeReport[320:352], bind[:])
		clear(qeReport[352:384])
	}
	inner := append([]byte{}, qeReport...)
	inner = append(inner, rawSign(t, p.pckKey, qeReport)...)
	inner = binary.LittleEndian.AppendUint16(inner, uint16(len(auth)))
	inner = append(inner, auth...)
	inner = binary.LittleEndian.AppendUint16(inner, certType)
	inner = binary.LittleEndian.AppendUint32(inner, uint32(len(chainPEM)))
	inner = append(inner, chainPEM...)
	sd := append(rawSign(t, p.attKey, signed), att...)
	if l.version >= 4 {
		sd = binary.LittleEndian.AppendUint16(sd, binary.LittleEndian.Uint16(q[l.outerType:]))
		sd = binary.LittleEndian.AppendUint32(sd, uint32(len(inner)))
	}
	sd = append(sd, inner...)
	out := binary.LittleEndian.AppendUint32(signed, uint32(len(sd)))
	out = append(out, sd...)
	return append(out, q[len(q)-trailing(q, l):]...)
}

// trailing counts bytes after the declared end of the quote.
func trailing(q []byte, l quoteLayout) int {
	end := l.sigData + int(binary.LittleEndian.Uint32(q[l.signedEnd:]))
	if end > len(q) || end < 0 {
		return 0
	}
	return len(q) - end
}

// chainOf returns the PEM certificates in a quote's type-5 data.
func chainOf(t testing.TB, q []byte) ([]*x509.Certificate, bool) {
	l, err := layoutOf(q)
	if err != nil {
		t.Fatal(err)
	}
	data := q[l.cert:l.certEnd]
	nul := bytes.HasSuffix(data, []byte{0})
	var certs []*x509.Certificate
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			break
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		certs = append(certs, c)
	}
	return certs, nul
}

// chainPEM is leaf, CA, root in PEM, with a NUL after the last when nul.
func chainPEM(nul bool, certs ...*x509.Certificate) []byte {
	var b []byte
	for _, c := range certs {
		b = append(b, pemCert(c.Raw)...)
	}
	if nul {
		b = append(b, 0)
	}
	return b
}

// resignBundle signs b's JSON bodies with the test TCB signing key and
// re-issues both CRLs (same times and entries unless given) under the test
// root and ca.
func (p *testPKI) resignBundle(t testing.TB, b pcs.Bundle, rootCRL, pckCRL crlSpec, ca *x509.Certificate, caKey *ecdsa.PrivateKey) pcs.Bundle {
	b.TCBInfoSignature = hex.EncodeToString(rawSign(t, p.tcbKey, []byte(b.TCBInfo)))
	b.QEIdentitySignature = hex.EncodeToString(rawSign(t, p.tcbKey, []byte(b.QEIdentity)))
	b.TCBInfoIssuerChain, b.QEIdentityIssuerChain = p.tcbChainPEM(), p.tcbChainPEM()
	b.RootCACRL = p.crl(t, rootCRL, p.root, p.rootKey)
	b.PCKCRL = p.crl(t, pckCRL, ca, caKey)
	b.PCKCRLIssuerChain = string(pemCert(ca.Raw)) + string(pemCert(p.root.Raw))
	return b
}
