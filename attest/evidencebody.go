package attest

import (
	"bytes"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"

	"github.com/cloister-dev/cloister/evidence"
)

// submitted is the evidence of one /attest request, decoded from the
// request's quote or report member: the bytes the verifier judges and, for
// SEV-SNP, the certificates that travel with the report.
type submitted struct {
	raw   []byte
	vcek  []byte // DER or PEM VCEK/VLEK for a raw SNP report
	chain []byte // PEM ASK/ARK for SNP
}

// decodeEvidence turns the decoded quote/report member of a request to
// /attest/{typ} into what the verifier takes.
//
// For SevSnpVm, MAA's clients send a JSON document carrying the raw report
// and its certificate chain (docs/maa-contract.md §1, §6); it is unpacked
// here so the verifier gets the report and the VCEK apart. Anything else
// (a configfs-tsm report, a raw report) goes through unchanged and is the
// verifier's to judge.
func decodeEvidence(typ string, decoded []byte) (submitted, error) {
	switch typ {
	case TypeOpenEnclave:
		return submitted{raw: stripOEHeader(decoded)}, nil
	case TypeSgxEnclave, TypeTdxVm:
		return submitted{raw: decoded}, nil
	case TypeSevSnpVm:
		if !isMAASNPDocument(decoded) {
			return submitted{raw: decoded}, nil
		}
		doc, err := parseMAASNPDocument(decoded)
		if err != nil {
			return submitted{}, err
		}
		return submitted{raw: doc.report, vcek: doc.vcek, chain: doc.chain}, nil
	}
	return submitted{}, fmt.Errorf("unknown attestation type %q", typ)
}

// stripOEHeader removes an OpenEnclave report's 16-byte header
// (version 1, type, size) so the SGX quote inside reaches the verifier;
// anything else is passed through for the verifier to judge.
func stripOEHeader(raw []byte) []byte {
	if len(raw) > 16 && raw[0] == 1 && raw[1] == 0 && raw[2] == 0 && raw[3] == 0 {
		size := uint64(raw[8]) | uint64(raw[9])<<8 | uint64(raw[10])<<16 | uint64(raw[11])<<24 |
			uint64(raw[12])<<32 | uint64(raw[13])<<40 | uint64(raw[14])<<48 | uint64(raw[15])<<56
		if size == uint64(len(raw)-16) {
			return raw[16:]
		}
	}
	return raw
}

// Member names of MAA's SevSnpVm evidence document. MAA's clients write them
// with this capitalisation; they are matched ignoring ASCII case, so a client
// writing "snpReport" is understood, and a duplicate under any spelling is
// refused. Only ASCII case: Unicode folding would also let
// "Vce\u212aCertChain" (with a Kelvin sign) name the chain.
const (
	maaSNPReport       = "SnpReport"
	maaSNPCertChain    = "VcekCertChain"
	maaSNPEndorsements = "Endorsements"
)

// maxVCEKChainCerts caps the certificates in VcekCertChain: the VCEK or
// VLEK, ASK or ASVK and ARK are three; the rest is headroom, kept within
// what evidence.Options.SNPChain takes (8) plus the leaf.
const maxVCEKChainCerts = 9

// maaSNPDocument is MAA's SevSnpVm evidence, decoded.
type maaSNPDocument struct {
	report []byte // the raw 1184-byte attestation report
	vcek   []byte // DER of the certificate that signed it (VCEK or VLEK)
	chain  []byte // PEM of the other certificates (ASK/ASVK, ARK); may be empty
}

// isMAASNPDocument reports whether b is a JSON object with at least one of
// MAA's SevSnpVm member names. configfs-tsm's JSON form, the other object
// SevSnpVm takes, has none of them (and refuses unknown keys), so the two
// never overlap. Text that is not JSON at all is left to the verifier.
func isMAASNPDocument(b []byte) bool {
	if firstJSONByte(b) != '{' {
		return false
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	if _, err := dec.Token(); err != nil {
		return false
	}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return false
		}
		if key, ok := tok.(string); ok && maaSNPMember(key) != "" {
			return true
		}
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return false
		}
	}
	return false
}

// maaSNPMember returns the canonical name of key if it is one of MAA's
// SevSnpVm document members, or "".
func maaSNPMember(key string) string {
	for _, m := range []string{maaSNPReport, maaSNPCertChain, maaSNPEndorsements} {
		if asciiLower(key) == asciiLower(m) {
			return m
		}
	}
	return ""
}

// asciiLower lower-cases the ASCII letters of s and nothing else.
func asciiLower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

// firstJSONByte is the first byte of b that is not JSON whitespace.
func firstJSONByte(b []byte) byte {
	if b = bytes.TrimLeft(b, " \t\r\n"); len(b) > 0 {
		return b[0]
	}
	return 0
}

// parseMAASNPDocument decodes MAA's SevSnpVm evidence document:
//
//	{"SnpReport": b64(raw report), "VcekCertChain": b64(PEM VCEK, ASK, ARK),
//	 "Endorsements": b64(JSON {"Uvm": [b64(COSE_Sign1), …]})}
//
// where b64 is base64url or base64, padded or not (clients differ, see the
// contract). It is pure: no time, no trust decisions; the verifier checks
// signatures and the chain. It refuses what it cannot read unambiguously:
// duplicate or null members, trailing data, a report that is not a raw SNP
// report, a chain that is not certificates or whose leaf is unclear.
func parseMAASNPDocument(b []byte) (maaSNPDocument, error) {
	members, err := readMAASNPMembers(b)
	if err != nil {
		return maaSNPDocument{}, err
	}
	var doc maaSNPDocument
	rep, ok := members[maaSNPReport]
	if !ok {
		return doc, errors.New("SEV-SNP evidence document: missing " + maaSNPReport)
	}
	if doc.report, err = decodeB64(rep); err != nil {
		return doc, fmt.Errorf("SEV-SNP evidence document: %s: bad base64/base64url: %w", maaSNPReport, err)
	}
	if evidence.Detect(doc.report) != evidence.KindSNPReport {
		return doc, fmt.Errorf("SEV-SNP evidence document: %s is %d bytes that are not a raw SEV-SNP attestation report (want 1184 bytes, version 2 to 5)",
			maaSNPReport, len(doc.report))
	}
	chain, ok := members[maaSNPCertChain]
	if !ok {
		// Without it a raw report cannot be verified at all; saying so
		// here is clearer than the verifier's "no VCEK".
		return doc, errors.New("SEV-SNP evidence document: missing " + maaSNPCertChain + " (the VCEK that signed the report, with its ASK and ARK)")
	}
	pemChain, err := decodeB64(chain)
	if err != nil {
		return doc, fmt.Errorf("SEV-SNP evidence document: %s: bad base64/base64url: %w", maaSNPCertChain, err)
	}
	if doc.vcek, doc.chain, err = splitVCEKChain(pemChain); err != nil {
		return doc, fmt.Errorf("SEV-SNP evidence document: %s: %w", maaSNPCertChain, err)
	}
	if e, ok := members[maaSNPEndorsements]; ok {
		if err := checkEndorsements(e); err != nil {
			return doc, fmt.Errorf("SEV-SNP evidence document: %s: %w", maaSNPEndorsements, err)
		}
	}
	return doc, nil
}

// readMAASNPMembers reads the document's top-level object token by token,
// because encoding/json's Unmarshal would let a duplicate silently replace
// the first value (and match names case-insensitively without saying
// which spelling won). MAA's members must be strings; other members are
// ignored, as they carry nothing Cloister verifies.
func readMAASNPMembers(b []byte) (map[string]string, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil, fmt.Errorf("SEV-SNP evidence document: want a JSON object: %w", orEOF(err))
	}
	out := map[string]string{}
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, fmt.Errorf("SEV-SNP evidence document: %w", err)
		}
		key, _ := tok.(string) // inside an object encoding/json yields string keys only
		fold := asciiLower(key)
		if seen[fold] {
			return nil, fmt.Errorf("SEV-SNP evidence document: duplicate member %q", key)
		}
		seen[fold] = true
		name := maaSNPMember(key)
		if name == "" {
			var skip json.RawMessage
			if err := dec.Decode(&skip); err != nil {
				return nil, fmt.Errorf("SEV-SNP evidence document: member %q: %w", key, err)
			}
			continue
		}
		var v *string
		if err := dec.Decode(&v); err != nil {
			return nil, fmt.Errorf("SEV-SNP evidence document: %s: want a base64url string: %w", name, err)
		}
		if v == nil {
			return nil, fmt.Errorf("SEV-SNP evidence document: %s is null, want a base64url string", name)
		}
		out[name] = *v
	}
	if _, err := dec.Token(); err != nil { // the closing brace
		return nil, fmt.Errorf("SEV-SNP evidence document: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("SEV-SNP evidence document: data after the JSON object")
	}
	return out, nil
}

// orEOF gives a nil decoder error (a first token that was not '{') a
// message of its own, so %w always wraps something.
func orEOF(err error) error {
	if err == nil {
		return errors.New("not an object")
	}
	return err
}

// splitVCEKChain splits VcekCertChain into the leaf that signs reports (as
// DER) and the other certificates (as PEM). MAA's clients put the VCEK
// first, then ASK and ARK (Azure's THIM service hands them out in that
// order), but the leaf is found by issuer links rather than position, so a
// chain in another order still verifies. A lone DER certificate is taken
// as the VCEK, for clients that send just that.
func splitVCEKChain(b []byte) (leaf, rest []byte, err error) {
	certs, err := parseCertList(b)
	if err != nil {
		return nil, nil, err
	}
	leafAt := -1
	for i, c := range certs {
		if isIssuerOfAnother(c, certs) {
			continue
		}
		if leafAt >= 0 {
			return nil, nil, fmt.Errorf("certificates %d (%s) and %d (%s) both look like the signing key: they issue none of the others",
				leafAt, certs[leafAt].Subject, i, c.Subject)
		}
		leafAt = i
	}
	if leafAt < 0 {
		// Every certificate issues another: only possible with a loop or
		// all self-signed, neither of which has a VCEK in it.
		return nil, nil, errors.New("no certificate in it is a VCEK/VLEK: each one issues another")
	}
	var others bytes.Buffer
	for i, c := range certs {
		if i != leafAt {
			_ = pem.Encode(&others, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw}) // writes to memory; cannot fail
		}
	}
	return certs[leafAt].Raw, others.Bytes(), nil
}

// isIssuerOfAnother reports whether c's subject is the issuer of a
// certificate in certs other than c itself.
func isIssuerOfAnother(c *x509.Certificate, certs []*x509.Certificate) bool {
	for _, d := range certs {
		if d != c && bytes.Equal(d.RawIssuer, c.RawSubject) {
			return true
		}
	}
	return false
}

// parseCertList reads PEM CERTIFICATE blocks with nothing but whitespace
// around them, or else one DER certificate.
func parseCertList(b []byte) ([]*x509.Certificate, error) {
	if len(bytes.TrimSpace(b)) == 0 {
		return nil, errors.New("empty")
	}
	if !bytes.Contains(b, []byte("-----BEGIN")) {
		c, err := x509.ParseCertificate(b)
		if err != nil {
			return nil, fmt.Errorf("neither PEM nor a DER certificate: %w", err)
		}
		return []*x509.Certificate{c}, nil
	}
	var out []*x509.Certificate
	rest := b
	for {
		// pem.Decode skips any text before a block; only whitespace may
		// stand between ours.
		rest = bytes.TrimLeft(rest, " \t\r\n")
		if len(rest) == 0 {
			break
		}
		if !bytes.HasPrefix(rest, []byte("-----BEGIN ")) {
			return nil, fmt.Errorf("%d bytes after certificate %d are not a PEM certificate", len(rest), len(out))
		}
		var blk *pem.Block
		if blk, rest = pem.Decode(rest); blk == nil {
			return nil, fmt.Errorf("PEM block %d is malformed", len(out))
		}
		if blk.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("PEM block %d is %q, want CERTIFICATE", len(out), blk.Type)
		}
		if len(out) == maxVCEKChainCerts {
			return nil, fmt.Errorf("more than %d certificates", maxVCEKChainCerts)
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("certificate %d: %w", len(out), err)
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, errors.New("no PEM certificate found")
	}
	return out, nil
}

// checkEndorsements checks the encoding of MAA's optional Endorsements
// member: base64url of a JSON object whose "Uvm" member, if present, is an
// array of base64url strings (COSE_Sign1 UVM endorsements). Only the
// encoding: verifying them needs the signing identities of Azure's
// container platform, so Cloister draws no claim from them, and checking
// the encoding still turns a garbled request into a 400 that says so.
func checkEndorsements(s string) error {
	raw, err := decodeB64(s)
	if err != nil {
		return fmt.Errorf("bad base64/base64url: %w", err)
	}
	var doc map[string]json.RawMessage
	if err := json.Unmarshal(raw, &doc); err != nil {
		return fmt.Errorf("want a JSON object: %w", err)
	}
	uvm, ok := doc["Uvm"]
	if !ok {
		return nil
	}
	var list []string
	if err := json.Unmarshal(uvm, &list); err != nil {
		return fmt.Errorf("Uvm: want an array of base64url strings: %w", err)
	}
	for i, e := range list {
		if _, err := decodeB64(e); err != nil {
			return fmt.Errorf("Uvm[%d]: bad base64/base64url: %w", i, err)
		}
	}
	return nil
}
