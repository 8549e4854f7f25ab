package pcs

import (
	"bytes"
	"crypto/x509"
	"encoding/asn1"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"strings"
)

// UnverifiedCollateral is the raw material of a Bundle, decoded from its text encodings
// (hex, PEM) but still UNVERIFIED: no signature, chain, validity time or CRL
// has been checked. SAFETY: nothing in it may be trusted until evidence/dcap
// has verified it; in particular TCBInfo and QEIdentity must not be parsed
// for decisions before their signatures are checked against their chains
// and the chains against the pinned Intel SGX Root CA.
type UnverifiedCollateral struct {
	// TCBInfo is the exact bytes of the signed tcbInfo JSON object
	// (UNVERIFIED).
	TCBInfo []byte
	// TCBInfoSignature is the raw 64-byte r||s P-256 signature over TCBInfo
	// (UNVERIFIED).
	TCBInfoSignature []byte
	// TCBInfoChain is the issuer chain of TCBInfo in bundle order, normally
	// TCB Signing certificate then root (UNVERIFIED).
	TCBInfoChain []*x509.Certificate
	// QEIdentity is the exact bytes of the signed enclaveIdentity JSON
	// object (UNVERIFIED).
	QEIdentity []byte
	// QEIdentitySignature is the raw 64-byte r||s signature over QEIdentity
	// (UNVERIFIED).
	QEIdentitySignature []byte
	// QEIdentityChain is the issuer chain of QEIdentity (UNVERIFIED).
	QEIdentityChain []*x509.Certificate
	// PCKCRL is the DER PCK CRL, nil if the bundle has none (UNVERIFIED).
	PCKCRL []byte
	// PCKCRLChain is the issuer chain of PCKCRL, nil if the bundle has none
	// (UNVERIFIED).
	PCKCRLChain []*x509.Certificate
	// RootCACRL is the DER Intel SGX Root CA CRL, nil if the bundle has none
	// (UNVERIFIED).
	RootCACRL []byte
}

// DecodeUnverified decodes the values of b into raw bytes and certificates and checks
// their format only: signed texts are JSON objects, signatures are exactly
// 128 hex characters, chains are 1 to 4 PEM CERTIFICATE blocks that parse,
// CRLs are hex (or PEM "X509 CRL") of a DER CRL that parses, and a PCK CRL
// comes with its issuer chain. The result is UNVERIFIED (see UnverifiedCollateral).
// DecodeUnverified never re-serialises the signed text; the returned slices are
// copies, so the caller may keep them while b changes.
func (b *Bundle) DecodeUnverified() (*UnverifiedCollateral, error) {
	var (
		d   UnverifiedCollateral
		err error
	)
	if d.TCBInfo, err = decodeSignedText("tcb_info", b.TCBInfo); err != nil {
		return nil, err
	}
	if d.TCBInfoSignature, err = decodeSignature("tcb_info_signature", b.TCBInfoSignature); err != nil {
		return nil, err
	}
	if d.TCBInfoChain, err = decodeChain("tcb_info_issuer_chain", b.TCBInfoIssuerChain); err != nil {
		return nil, err
	}
	if d.QEIdentity, err = decodeSignedText("qe_identity", b.QEIdentity); err != nil {
		return nil, err
	}
	if d.QEIdentitySignature, err = decodeSignature("qe_identity_signature", b.QEIdentitySignature); err != nil {
		return nil, err
	}
	if d.QEIdentityChain, err = decodeChain("qe_identity_issuer_chain", b.QEIdentityIssuerChain); err != nil {
		return nil, err
	}
	if b.PCKCRL != "" {
		if d.PCKCRL, err = decodeCRLText("pck_crl", b.PCKCRL); err != nil {
			return nil, err
		}
		if b.PCKCRLIssuerChain == "" {
			return nil, malformed("pck_crl_issuer_chain", "missing (required when pck_crl is set)")
		}
	}
	if b.PCKCRLIssuerChain != "" {
		if d.PCKCRLChain, err = decodeChain("pck_crl_issuer_chain", b.PCKCRLIssuerChain); err != nil {
			return nil, err
		}
	}
	if b.RootCACRL != "" {
		if d.RootCACRL, err = decodeCRLText("root_ca_crl", b.RootCACRL); err != nil {
			return nil, err
		}
	}
	return &d, nil
}

// decodeSignedText returns a copy of the signed JSON text s. It must be one
// JSON object with nothing around it: Intel signs exactly the object text,
// so surrounding whitespace would mean the text was not cut byte-exact.
func decodeSignedText(field, s string) ([]byte, error) {
	switch {
	case s == "":
		return nil, malformed(field, "missing")
	case len(s) > maxSignedTextSize:
		return nil, malformed(field, "%d bytes, larger than the %d-byte limit", len(s), maxSignedTextSize)
	case s[0] != '{' || s[len(s)-1] != '}':
		return nil, malformed(field, "want a JSON object with nothing before or after it")
	case !json.Valid([]byte(s)):
		return nil, malformed(field, "not valid JSON")
	}
	return []byte(s), nil
}

// decodeSignature decodes the hex of a raw r||s P-256 signature. Upper and
// lower case are both accepted; the length must be exact, because a DER
// signature or a stray newline is a different format, not a variant.
func decodeSignature(field, s string) ([]byte, error) {
	if len(s) != signatureHexLen {
		return nil, malformed(field, "want %d hex characters, got %d", signatureHexLen, len(s))
	}
	sig, err := hex.DecodeString(s)
	if err != nil {
		return nil, malformedWrap(field, err, "not hex")
	}
	return sig, nil
}

// isPEMSpace reports whether c is whitespace allowed around PEM blocks.
func isPEMSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\n' }

// decodeChain parses a PEM certificate chain. Only CERTIFICATE blocks
// without headers are accepted, at most maxChainCerts of them, with only
// whitespace around them and optionally one NUL at the very end (quote
// certification data and some tools' output are NUL-terminated). Anything
// else is rejected, because pem.Decode on its own silently skips text
// between blocks and blocks it cannot parse.
func decodeChain(field, s string) ([]*x509.Certificate, error) {
	if s == "" {
		return nil, malformed(field, "missing")
	}
	data := []byte(s)
	rest := data
	var certs []*x509.Certificate
	for {
		rest = bytes.TrimLeftFunc(rest, func(r rune) bool { return r < 0x80 && isPEMSpace(byte(r)) })
		if len(rest) == 0 {
			break
		}
		if len(certs) > 0 && string(bytes.TrimRightFunc(rest, func(r rune) bool { return r < 0x80 && isPEMSpace(byte(r)) })) == "\x00" {
			break
		}
		off := len(data) - len(rest)
		if !bytes.HasPrefix(rest, []byte("-----BEGIN ")) {
			return nil, malformed(field, "unexpected data at byte %d, want a PEM block", off)
		}
		if len(certs) == maxChainCerts {
			return nil, malformed(field, "more than %d certificates", maxChainCerts)
		}
		block, after := pem.Decode(rest)
		// pem.Decode skips a block it cannot parse and returns a later
		// one; the consumed text must therefore hold exactly one BEGIN.
		if block == nil || bytes.Count(rest[:len(rest)-len(after)], []byte("-----BEGIN ")) != 1 {
			return nil, malformed(field, "PEM block %d at byte %d is malformed", len(certs), off)
		}
		if block.Type != "CERTIFICATE" {
			return nil, malformed(field, "PEM block %d is %q, want CERTIFICATE", len(certs), block.Type)
		}
		if len(block.Headers) != 0 {
			return nil, malformed(field, "PEM block %d has headers", len(certs))
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, malformedWrap(field, err, "certificate %d", len(certs))
		}
		certs = append(certs, cert)
		rest = after
	}
	if len(certs) == 0 {
		return nil, malformed(field, "no certificates")
	}
	return certs, nil
}

// decodeCRLText decodes a CRL bundle value: hex of the DER (either case),
// or one PEM "X509 CRL" block, which some tools store instead.
func decodeCRLText(field, s string) ([]byte, error) {
	if strings.Contains(s, "-----BEGIN") {
		return decodeCRLPEM(field, []byte(s))
	}
	if len(s) > 2*maxCRLSize {
		return nil, malformed(field, "%d hex characters, more than the %d-byte limit", len(s), maxCRLSize)
	}
	if len(s)%2 != 0 {
		return nil, malformed(field, "odd number of hex characters (%d)", len(s))
	}
	der, err := hex.DecodeString(s)
	if err != nil {
		return nil, malformedWrap(field, err, "not hex")
	}
	return checkCRLDER(field, der)
}

// decodeCRLPEM decodes exactly one PEM "X509 CRL" block with only
// whitespace around it.
func decodeCRLPEM(field string, data []byte) ([]byte, error) {
	trimmed := bytes.TrimFunc(data, func(r rune) bool { return r < 0x80 && isPEMSpace(byte(r)) })
	if !bytes.HasPrefix(trimmed, []byte("-----BEGIN ")) {
		return nil, malformed(field, "unexpected data before the PEM block")
	}
	block, rest := pem.Decode(trimmed)
	if block == nil || bytes.Count(trimmed, []byte("-----BEGIN ")) != 1 {
		return nil, malformed(field, "want exactly one well-formed PEM block")
	}
	if len(bytes.TrimFunc(rest, func(r rune) bool { return r < 0x80 && isPEMSpace(byte(r)) })) != 0 {
		return nil, malformed(field, "unexpected data after the PEM block")
	}
	if block.Type != "X509 CRL" {
		return nil, malformed(field, "PEM block is %q, want X509 CRL", block.Type)
	}
	if len(block.Headers) != 0 {
		return nil, malformed(field, "PEM block has headers")
	}
	return checkCRLDER(field, block.Bytes)
}

// checkCRLDER checks that der is one DER CRL with no trailing bytes, within
// the size cap, and returns it. Parsing is a format check only; the CRL's
// signature is verified in evidence/dcap.
func checkCRLDER(field string, der []byte) ([]byte, error) {
	if len(der) > maxCRLSize {
		return nil, malformed(field, "%d bytes, larger than the %d-byte limit", len(der), maxCRLSize)
	}
	// x509.ParseRevocationList ignores bytes after the outer SEQUENCE.
	var outer asn1.RawValue
	rest, err := asn1.Unmarshal(der, &outer)
	if err != nil {
		return nil, malformedWrap(field, err, "not a DER CRL")
	}
	if len(rest) != 0 {
		return nil, malformed(field, "%d bytes of trailing data after the DER CRL", len(rest))
	}
	if _, err := x509.ParseRevocationList(der); err != nil {
		return nil, malformedWrap(field, err, "not a DER CRL")
	}
	return der, nil
}
