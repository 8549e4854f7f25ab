package ratls

import "encoding/asn1"

// Form names where in a certificate the evidence was found and, with it,
// how the evidence binds the certificate's key.
type Form int

// Evidence forms. Values are explicit and printed by the CLI: Do NOT reorder
// or renumber.
const (
	// FormCCC is the CCC interoperable RA-TLS extension (OID
	// 2.23.133.5.4.9): CBOR tag 60000 around [evidence, claims buffer];
	// report_data = SHA-256(claims buffer) ‖ 32 zero bytes and the claims
	// buffer's "pubkey-hash" is the hash of the SubjectPublicKeyInfo.
	FormCCC Form = 1
	// FormIntelSGX is the Intel SGX SDK's raw quote extension (OID
	// 1.2.840.113741.1.13.1, also read as 1.2.840.113741.1.13.1.0);
	// report_data[0:32] = SHA-256(SubjectPublicKeyInfo).
	FormIntelSGX Form = 2
	// FormIntelTDX is Intel's raw TDX quote extension (OID
	// 1.2.840.113741.1.5.5.1.6); report_data[0:32] = SHA-256(SPKI).
	FormIntelTDX Form = 3
	// FormGramine is Gramine's raw quote extension (OID
	// 1.2.840.113741.1337.6, which Gramine writes mis-encoded so that
	// parsers read 0.6.9.42.840.113741.1337.6; both are read);
	// report_data[0:32] = SHA-256(SPKI).
	FormGramine Form = 4
)

// String returns the form's name as the CLI prints it.
func (f Form) String() string {
	switch f {
	case FormCCC:
		return "ccc"
	case FormIntelSGX:
		return "intel-sgx-quote"
	case FormIntelTDX:
		return "intel-tdx-quote"
	case FormGramine:
		return "gramine-quote"
	}
	return "unknown"
}

// Extension OIDs. The Gramine one is listed twice: its correct value and
// the value parsers see for the bytes Gramine actually writes (the full DER
// of the OID, tag and length included, used as the OID's content).
var (
	// OIDCCCEvidence is the CCC interoperable evidence extension
	// (tcg-dice-conceptual-message-wrapper).
	OIDCCCEvidence = asn1.ObjectIdentifier{2, 23, 133, 5, 4, 9}
	// OIDIntelSGXQuote is the Intel SGX SDK's quote extension.
	OIDIntelSGXQuote = asn1.ObjectIdentifier{1, 2, 840, 113741, 1, 13, 1}
	// OIDIntelSGXQuoteAlt is the same extension with a trailing .0, as
	// DESIGN.md and some tools spell it.
	OIDIntelSGXQuoteAlt = asn1.ObjectIdentifier{1, 2, 840, 113741, 1, 13, 1, 0}
	// OIDIntelTDXQuote is Intel's TDX quote extension.
	OIDIntelTDXQuote = asn1.ObjectIdentifier{1, 2, 840, 113741, 1, 5, 5, 1, 6}
	// OIDGramineQuote is Gramine's quote extension, correctly encoded.
	OIDGramineQuote = asn1.ObjectIdentifier{1, 2, 840, 113741, 1337, 6}
	// OIDGramineQuoteMisencoded is how parsers read the OID Gramine writes.
	OIDGramineQuoteMisencoded = asn1.ObjectIdentifier{0, 6, 9, 42, 840, 113741, 1337, 6}
)

// formOIDs maps every OID we read to its form, in preference order: when a
// certificate carries several forms, ParseCertificate uses the first.
var formOIDs = []struct {
	oid  asn1.ObjectIdentifier
	form Form
}{
	{OIDCCCEvidence, FormCCC},
	{OIDIntelSGXQuote, FormIntelSGX},
	{OIDIntelSGXQuoteAlt, FormIntelSGX},
	{OIDIntelTDXQuote, FormIntelTDX},
	{OIDGramineQuote, FormGramine},
	{OIDGramineQuoteMisencoded, FormGramine},
}

// writeOID is the OID our writer uses for each form: the interop
// certificates' spelling for Intel SGX, and Gramine's OID encoded
// correctly (Gramine's own verifier finds it either way, since it searches
// for the OID's DER bytes).
func (f Form) writeOID() asn1.ObjectIdentifier {
	switch f {
	case FormCCC:
		return OIDCCCEvidence
	case FormIntelSGX:
		return OIDIntelSGXQuote
	case FormIntelTDX:
		return OIDIntelTDXQuote
	case FormGramine:
		return OIDGramineQuote
	}
	return nil
}
