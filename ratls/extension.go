package ratls

import (
	"bytes"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/hex"
	"fmt"
	"hash"
	"sync"

	"github.com/fxamacker/cbor/v2"

	"github.com/cloister-dev/cloister/evidence"
)

// CBOR layout of the CCC interoperable extension (learned from the three
// interop certificates, see testdata/README.md "ratls/"):
//
//	d9 ea 60                  tag 60000
//	  82                      array(2)
//	    59 xx xx <evidence>   bstr: the raw quote
//	    58 xx <claims>        bstr: the claims buffer, itself CBOR:
//	      a1..                  map, text keys, bstr values, e.g.
//	        6b "pubkey-hash"
//	        58 24 82 01 58 20 <SHA-256(SPKI DER)>   bstr(CBOR [hash-alg, bstr(hash)])
const (
	// cccTag is the CBOR tag around the CCC evidence array.
	cccTag = 60000
	// ClaimPubKeyHash is the claims-buffer key whose value binds the
	// certificate key: the CBOR encoding of [hash-alg-id, bstr(hash of the
	// DER SubjectPublicKeyInfo)].
	ClaimPubKeyHash = "pubkey-hash"
)

// Hash algorithm identifiers of the IANA "Named Information Hash Algorithm"
// registry, which the interop certificates use in pubkey-hash (1 = sha-256).
const (
	hashAlgSHA256 = 1
	hashAlgSHA384 = 7
	hashAlgSHA512 = 8
)

// cccTagHead is tag 60000 in its only valid (shortest) encoding; any other
// spelling of the tag, or any other tag, is rejected.
var cccTagHead = []byte{0xd9, 0xea, 0x60}

// decMode is the strict decoder for everything inside the extension: no
// tags (the one tag allowed is checked by hand, where it is expected), no
// indefinite lengths, no duplicate map keys, text keys only, small caps.
var decModeOnce = sync.OnceValues(func() (cbor.DecMode, error) {
	return cbor.DecOptions{
		DupMapKey:        cbor.DupMapKeyEnforcedAPF,
		IndefLength:      cbor.IndefLengthForbidden,
		TagsMd:           cbor.TagsForbidden,
		MaxNestedLevels:  maxNesting,
		MaxArrayElements: 16,
		MaxMapPairs:      maxClaims,
		MapKeyByteString: cbor.MapKeyByteStringForbidden,
		UTF8:             cbor.UTF8RejectInvalid,
	}.DecMode()
})

// cborUnmarshal decodes data into v with the strict decoder. The options are
// constants, so an error building the decoder shows in every test run.
func cborUnmarshal(data []byte, v any) error {
	m, err := decModeOnce()
	if err != nil {
		return fmt.Errorf("ratls: CBOR decoder options: %w", err)
	}
	return m.Unmarshal(data, v)
}

// encMode writes deterministic CBOR (RFC 8949 core deterministic: shortest
// heads, sorted map keys), so a certificate's extension has one encoding.
var encModeOnce = sync.OnceValues(func() (cbor.EncMode, error) { return cbor.CoreDetEncOptions().EncMode() })

// cborMarshal encodes v deterministically.
func cborMarshal(v any) ([]byte, error) {
	m, err := encModeOnce()
	if err != nil {
		return nil, fmt.Errorf("ratls: CBOR encoder options: %w", err)
	}
	return m.Marshal(v)
}

// Evidence is what a certificate's RA-TLS extension says, parsed for format
// only. SAFETY: nothing in it is verified: the quote's signatures, its
// chain and the key binding are checked by Verify. Fields are named
// Unverified… to keep that visible at every use.
type Evidence struct {
	// Form is the extension form this evidence came from.
	Form Form
	// OID is the extension's OID as found (for Gramine, possibly the
	// mis-encoded one).
	OID asn1.ObjectIdentifier
	// UnverifiedEvidence is the raw evidence (a quote) from the extension.
	UnverifiedEvidence []byte
	// UnverifiedClaimsBuffer is the exact claims-buffer bytes (FormCCC
	// only): the quote's report_data binds their SHA-256.
	UnverifiedClaimsBuffer []byte
	// UnverifiedClaims is the decoded claims buffer (FormCCC only).
	UnverifiedClaims map[string][]byte
	// Others lists the other forms present in the certificate, which
	// ParseCertificate did not choose.
	Others []Form

	// spki is the certificate's DER SubjectPublicKeyInfo, which the
	// evidence must bind.
	spki []byte
	// sibling is the CCC claims buffer of the same certificate, if any:
	// the Intel SGX SDK's legacy extension binds it instead of the key.
	sibling *Evidence
}

// ParseCertificate finds the RA-TLS evidence in cert and parses it for
// format. When several forms are present it picks, in this order, the CCC
// extension, the Intel SGX quote, the Intel TDX quote, Gramine's quote; the
// rest are listed in Others (Verify checks every form, not only this one).
// It verifies nothing.
func ParseCertificate(cert *x509.Certificate) (*Evidence, error) {
	all, err := ParseAll(cert)
	if err != nil {
		return nil, err
	}
	ev := all[0]
	for _, o := range all[1:] {
		ev.Others = append(ev.Others, o.Form)
	}
	return ev, nil
}

// ParseAll returns every RA-TLS evidence form in cert, in ParseCertificate's
// preference order. Two extensions of one form (for example Gramine's OID in
// both encodings) are rejected as ambiguous. It verifies nothing.
func ParseAll(cert *x509.Certificate) ([]*Evidence, error) {
	if cert == nil {
		return nil, malformed("certificate", "no certificate")
	}
	byForm := map[Form]*Evidence{}
	for _, ext := range cert.Extensions {
		form := formOf(ext.Id)
		if form == 0 {
			continue
		}
		if prev, dup := byForm[form]; dup {
			return nil, malformed("certificate", "two %s extensions (%s and %s)", form, prev.OID, ext.Id)
		}
		ev, err := parseExtension(form, ext)
		if err != nil {
			return nil, err
		}
		ev.spki = cert.RawSubjectPublicKeyInfo
		byForm[form] = ev
	}
	var all []*Evidence
	for _, f := range []Form{FormCCC, FormIntelSGX, FormIntelTDX, FormGramine} {
		if ev := byForm[f]; ev != nil {
			ev.sibling = byForm[FormCCC]
			all = append(all, ev)
		}
	}
	if len(all) == 0 {
		return nil, verifyErr("certificate", evidence.Malformed, ErrNoEvidence,
			"none of the extensions %s (CCC), %s / %s (Intel SGX), %s (Intel TDX), %s / %s (Gramine)",
			OIDCCCEvidence, OIDIntelSGXQuote, OIDIntelSGXQuoteAlt, OIDIntelTDXQuote, OIDGramineQuote, OIDGramineQuoteMisencoded)
	}
	return all, nil
}

func formOf(id asn1.ObjectIdentifier) Form {
	for _, f := range formOIDs {
		if id.Equal(f.oid) {
			return f.form
		}
	}
	return 0
}

// parseExtension parses one extension value of a known form.
func parseExtension(form Form, ext pkix.Extension) (*Evidence, error) {
	step := form.String() + " extension"
	if len(ext.Value) == 0 || len(ext.Value) > maxExtensionSize {
		return nil, malformed(step, "%d bytes, want 1..%d", len(ext.Value), maxExtensionSize)
	}
	ev := &Evidence{Form: form, OID: ext.Id}
	if form != FormCCC {
		// Legacy forms hold the raw quote as the extension value itself.
		ev.UnverifiedEvidence = bytes.Clone(ext.Value)
		return ev, nil
	}
	quote, claims, err := decodeCCC(ext.Value)
	if err != nil {
		return nil, err
	}
	ev.UnverifiedEvidence, ev.UnverifiedClaimsBuffer = quote, claims
	if ev.UnverifiedClaims, err = decodeClaims(claims); err != nil {
		return nil, err
	}
	if ph, ok := ev.UnverifiedClaims[ClaimPubKeyHash]; ok {
		if _, _, err := decodePubKeyHash(ph); err != nil {
			return nil, err
		}
	}
	return ev, nil
}

// decodeCCC splits the CCC extension value into evidence and claims buffer.
func decodeCCC(v []byte) (quote, claims []byte, err error) {
	const step = "ccc extension"
	if !bytes.HasPrefix(v, cccTagHead) {
		return nil, nil, malformed(step, "does not start with CBOR tag %d (d9 ea 60): % x", cccTag, v[:min(len(v), 5)])
	}
	var items []cbor.RawMessage
	if err := cborUnmarshal(v[len(cccTagHead):], &items); err != nil {
		return nil, nil, verifyErr(step, evidence.Malformed, err, "tag %d content is not a strict CBOR array", cccTag)
	}
	if len(items) != 2 {
		return nil, nil, malformed(step, "tag %d array has %d elements, want 2 [evidence, claims buffer]", cccTag, len(items))
	}
	if quote, err = bstr(step+": evidence", items[0], maxExtensionSize); err != nil {
		return nil, nil, err
	}
	if claims, err = bstr(step+": claims buffer", items[1], maxClaimsBufferSize); err != nil {
		return nil, nil, err
	}
	if len(quote) == 0 {
		return nil, nil, malformed(step, "empty evidence")
	}
	return quote, claims, nil
}

// bstr decodes one definite-length CBOR byte string of at most limit bytes.
// Other types are rejected by their major type before decoding, because the
// generic decoder would turn a text string into bytes as well.
func bstr(step string, raw cbor.RawMessage, limit int) ([]byte, error) {
	if len(raw) == 0 || raw[0]>>5 != 2 {
		return nil, malformed(step, "not a CBOR byte string (initial byte %s)", firstByte(raw))
	}
	var b []byte
	if err := cborUnmarshal(raw, &b); err != nil {
		return nil, verifyErr(step, evidence.Malformed, err, "byte string")
	}
	if len(b) > limit {
		return nil, malformed(step, "%d bytes, more than %d", len(b), limit)
	}
	return b, nil
}

func firstByte(raw []byte) string {
	if len(raw) == 0 {
		return "(none)"
	}
	return fmt.Sprintf("%#02x", raw[0])
}

// decodeClaims decodes the claims buffer: a map of text keys to byte strings.
func decodeClaims(buf []byte) (map[string][]byte, error) {
	const step = "ccc claims buffer"
	if len(buf) == 0 || buf[0]>>5 != 5 {
		return nil, malformed(step, "not a CBOR map (initial byte %s)", firstByte(buf))
	}
	var raw map[string]cbor.RawMessage
	if err := cborUnmarshal(buf, &raw); err != nil {
		return nil, verifyErr(step, evidence.Malformed, err, "not a strict CBOR map of text keys")
	}
	out := make(map[string][]byte, len(raw))
	for k, v := range raw {
		b, err := bstr(step+": "+k, v, maxClaimsBufferSize)
		if err != nil {
			return nil, err
		}
		out[k] = b
	}
	return out, nil
}

// decodePubKeyHash decodes the pubkey-hash claim, the CBOR encoding of
// [hash-alg-id, bstr(hash)], and returns a hash function for the algorithm.
func decodePubKeyHash(v []byte) (func() hash.Hash, []byte, error) {
	const step = "ccc claims buffer: pubkey-hash"
	if len(v) == 0 || v[0]>>5 != 4 {
		return nil, nil, malformed(step, "not a CBOR array (initial byte %s)", firstByte(v))
	}
	var items []cbor.RawMessage
	if err := cborUnmarshal(v, &items); err != nil {
		return nil, nil, verifyErr(step, evidence.Malformed, err, "not a strict CBOR array")
	}
	if len(items) != 2 {
		return nil, nil, malformed(step, "%d elements, want 2 [hash-alg, hash]", len(items))
	}
	if len(items[0]) == 0 || items[0][0]>>5 != 0 {
		return nil, nil, malformed(step, "hash-alg is not an unsigned integer (initial byte %s)", firstByte(items[0]))
	}
	var alg uint64
	if err := cborUnmarshal(items[0], &alg); err != nil {
		return nil, nil, verifyErr(step, evidence.Malformed, err, "hash-alg")
	}
	sum, err := bstr(step+": hash", items[1], sha512.Size)
	if err != nil {
		return nil, nil, err
	}
	var h func() hash.Hash
	switch alg {
	case hashAlgSHA256:
		h = sha256.New
	case hashAlgSHA384:
		h = sha512.New384
	case hashAlgSHA512:
		h = sha512.New
	default:
		return nil, nil, verifyErr(step, evidence.Unsupported, nil, "hash-alg %d: want 1 (sha-256), 7 (sha-384) or 8 (sha-512)", alg)
	}
	if len(sum) != h().Size() {
		return nil, nil, malformed(step, "hash of %d bytes for hash-alg %d, want %d", len(sum), alg, h().Size())
	}
	return h, sum, nil
}

// encodeCCC builds the CCC extension value for quote and claims buffer.
func encodeCCC(quote, claims []byte) ([]byte, error) {
	v, err := cborMarshal(cbor.Tag{Number: cccTag, Content: [][]byte{quote, claims}})
	if err != nil {
		return nil, fmt.Errorf("ratls: encoding ccc extension: %w", err)
	}
	return v, nil
}

// encodeClaims builds a claims buffer: pubkey-hash = CBOR [1, SHA-256(spki)]
// as the interop certificates write it, plus the caller's extra claims.
func encodeClaims(spki []byte, extra map[string][]byte) ([]byte, error) {
	sum := sha256.Sum256(spki)
	ph, err := cborMarshal([]any{uint64(hashAlgSHA256), sum[:]})
	if err != nil {
		return nil, fmt.Errorf("ratls: encoding pubkey-hash: %w", err)
	}
	m := make(map[string][]byte, len(extra)+1)
	for k, v := range extra {
		m[k] = v
	}
	m[ClaimPubKeyHash] = ph
	b, err := cborMarshal(m)
	if err != nil {
		return nil, fmt.Errorf("ratls: encoding claims buffer: %w", err)
	}
	return b, nil
}

// cccReportData is the report_data a CCC claims buffer is bound with.
func cccReportData(claims []byte) [64]byte {
	var rd [64]byte
	sum := sha256.Sum256(claims)
	copy(rd[:], sum[:])
	return rd
}

// legacyReportData is the report_data of the legacy forms.
func legacyReportData(spki []byte) [64]byte {
	var rd [64]byte
	sum := sha256.Sum256(spki)
	copy(rd[:], sum[:])
	return rd
}

// CheckKeyBinding reports whether reportData, the report data of the
// VERIFIED evidence, binds the certificate's public key under this form's
// rule. It is pure; Verify calls it with the verified claims' report data.
//
//   - CCC: the claims buffer's pubkey-hash is the hash of the SPKI, and
//     report_data = SHA-256(claims buffer) ‖ 32 zero bytes.
//   - Intel SGX, Intel TDX, Gramine: report_data[0:32] = SHA-256(SPKI)
//     (DESIGN.md; the second half is the producer's and is not checked).
//   - Intel SGX SDK quirk: its legacy extension holds the same quote as its
//     CCC extension, so its report_data binds the CCC claims buffer, not the
//     key. The legacy form is then accepted as bound through the CCC claims
//     buffer of the same certificate, and only if that buffer itself binds
//     the key. (ParseCertificate prefers the CCC form anyway.)
func (e *Evidence) CheckKeyBinding(reportData []byte) error {
	const step = "key binding"
	if len(reportData) != 64 {
		return verifyErr(step, evidence.BadBinding, ErrKeyNotBound, "report_data of %d bytes, want 64", len(reportData))
	}
	if e.Form == FormCCC {
		if err := e.checkPubKeyHash(); err != nil {
			return err
		}
		want := cccReportData(e.UnverifiedClaimsBuffer)
		if !bytes.Equal(reportData, want[:]) {
			return verifyErr(step, evidence.BadBinding, ErrKeyNotBound,
				"report_data %s, want SHA-256(claims buffer) ‖ zeros %s", hex.EncodeToString(reportData), hex.EncodeToString(want[:]))
		}
		return nil
	}
	want := legacyReportData(e.spki)
	if bytes.Equal(reportData[:32], want[:32]) {
		return nil
	}
	if e.sibling != nil && e.sibling.checkPubKeyHash() == nil {
		viaClaims := cccReportData(e.sibling.UnverifiedClaimsBuffer)
		if bytes.Equal(reportData, viaClaims[:]) {
			return nil
		}
	}
	return verifyErr(step, evidence.BadBinding, ErrKeyNotBound,
		"%s: report_data[0:32] %s, want SHA-256(SubjectPublicKeyInfo) %s", e.Form,
		hex.EncodeToString(reportData[:32]), hex.EncodeToString(want[:32]))
}

// checkPubKeyHash checks that the CCC claims buffer names the certificate's key.
func (e *Evidence) checkPubKeyHash() error {
	const step = "key binding"
	ph, ok := e.UnverifiedClaims[ClaimPubKeyHash]
	if !ok {
		return verifyErr(step, evidence.BadBinding, ErrKeyNotBound, "claims buffer has no %q claim", ClaimPubKeyHash)
	}
	h, sum, err := decodePubKeyHash(ph)
	if err != nil {
		return err
	}
	d := h()
	d.Write(e.spki)
	if got := d.Sum(nil); !bytes.Equal(got, sum) {
		return verifyErr(step, evidence.BadBinding, ErrKeyNotBound,
			"pubkey-hash %s is not the hash of the certificate's SubjectPublicKeyInfo %s", hex.EncodeToString(sum), hex.EncodeToString(got))
	}
	return nil
}
