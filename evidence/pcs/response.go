package pcs

import (
	"bytes"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/url"
	"time"
)

// PCS v4 response bodies and headers. This file only cuts and decodes; it
// trusts nothing. The signed text is cut from the body byte-exact, as the
// raw JSON value of the tcbInfo or enclaveIdentity member, and is never
// re-serialised.

// Member names of the PCS v4 response bodies.
const (
	tcbInfoKey         = "tcbInfo"
	enclaveIdentityKey = "enclaveIdentity"
	signatureKey       = "signature"
)

// Issuer-chain response headers, newest name first. PCS v4 sends
// TCB-Info-Issuer-Chain and SGX-Enclave-Identity-Issuer-Chain; older API
// versions and some caching services (PCCS) use the SGX-TCB-Info and
// SGX-QE-Identity names.
var (
	tcbInfoChainHeaders    = []string{"TCB-Info-Issuer-Chain", "SGX-TCB-Info-Issuer-Chain"}
	qeIdentityChainHeaders = []string{"SGX-Enclave-Identity-Issuer-Chain", "SGX-QE-Identity-Issuer-Chain"}
	pckCRLChainHeaders     = []string{"SGX-PCK-CRL-Issuer-Chain"}
)

// cutSigned splits a PCS body {"<key>":{...},"signature":"hex"} into the
// exact bytes of the signed object and the signature text.
func cutSigned(what string, body []byte, key string) (signed []byte, sig string, err error) {
	if len(body) > maxResponseSize {
		return nil, "", malformed(what, "%d bytes, larger than the %d-byte limit", len(body), maxResponseSize)
	}
	obj, err := readObject(body, what, func(k string) bool { return k == key || k == signatureKey })
	if err != nil {
		return nil, "", err
	}
	raw, ok := obj[key]
	if !ok {
		return nil, "", malformed(what, "missing %q", key)
	}
	if len(raw) == 0 || raw[0] != '{' {
		return nil, "", malformed(what, "%q is not a JSON object", key)
	}
	rawSig, ok := obj[signatureKey]
	if !ok {
		return nil, "", malformed(what, "missing %q", signatureKey)
	}
	if sig, err = jsonString(what+": "+signatureKey, rawSig); err != nil {
		return nil, "", err
	}
	return raw, sig, nil
}

// signedNextUpdate reads the nextUpdate field of a signed tcbInfo or
// enclaveIdentity object. It is used only to decide cache freshness, never
// trust.
func signedNextUpdate(what string, signed []byte) (time.Time, error) {
	var v struct {
		NextUpdate string `json:"nextUpdate"`
	}
	if err := json.Unmarshal(signed, &v); err != nil {
		return time.Time{}, malformedWrap(what, err, "reading nextUpdate")
	}
	t, err := time.Parse(time.RFC3339, v.NextUpdate)
	if err != nil {
		return time.Time{}, malformedWrap(what, err, "nextUpdate %q", v.NextUpdate)
	}
	return t, nil
}

// headerChain returns the URL-decoded issuer chain from the first of names
// present in h. It uses url.PathUnescape, not QueryUnescape: the base64 in
// PEM contains '+', which QueryUnescape would turn into a space.
func headerChain(what string, h http.Header, names []string) (string, error) {
	for _, name := range names {
		vs := h.Values(name)
		switch len(vs) {
		case 0:
			continue
		case 1:
		default:
			return "", malformed(what, "%d %s headers, want one", len(vs), name)
		}
		s, err := url.PathUnescape(vs[0])
		if err != nil {
			return "", malformedWrap(what, err, "header %s is not URL-encoded", name)
		}
		return s, nil
	}
	return "", malformed(what, "missing header %s", names[0])
}

// chainText returns a saved issuer chain as PEM text. The file may hold the
// PEM itself or, as saved from a response header, its URL encoding. PEM
// never contains '%' and URL-encoded PEM always does (%20 in "BEGIN
// CERTIFICATE", %0A for newlines), which tells the two apart; looking for
// "-----BEGIN" would not, since '-' is not escaped.
func chainText(field string, data []byte) (string, error) {
	if len(data) > maxResponseSize {
		return "", malformed(field, "%d bytes, larger than the %d-byte limit", len(data), maxResponseSize)
	}
	if bytes.IndexByte(data, '%') < 0 {
		return string(data), nil
	}
	s, err := url.PathUnescape(string(bytes.TrimSpace(data)))
	if err != nil {
		return "", malformedWrap(field, err, "neither PEM nor URL-encoded PEM")
	}
	return s, nil
}

// crlDER returns the DER of a CRL given as DER, PEM "X509 CRL" or hex text,
// after the same format checks as DecodeUnverified. DER is recognised by its leading
// SEQUENCE tag byte 0x30; hex text of a CRL starts with the character '3'
// (0x33) and PEM with '-', so the three cannot be confused.
func crlDER(field string, data []byte) ([]byte, error) {
	switch {
	case len(data) == 0:
		return nil, malformed(field, "empty")
	case len(data) > maxResponseSize:
		return nil, malformed(field, "%d bytes, larger than the %d-byte limit", len(data), maxResponseSize)
	case data[0] == 0x30:
		return checkCRLDER(field, bytes.Clone(data))
	case bytes.Contains(data, []byte("-----BEGIN")):
		return decodeCRLPEM(field, data)
	default:
		return decodeCRLText(field, string(bytes.TrimSpace(data)))
	}
}

// crlHex is the bundle encoding of a DER CRL: lowercase hex.
func crlHex(der []byte) string { return hex.EncodeToString(der) }

// crlNextUpdate reads a DER CRL's nextUpdate, for cache freshness only.
func crlNextUpdate(what string, der []byte) (time.Time, error) {
	crl, err := x509.ParseRevocationList(der)
	if err != nil {
		return time.Time{}, malformedWrap(what, err, "not a DER CRL")
	}
	if crl.NextUpdate.IsZero() {
		return time.Time{}, malformed(what, "CRL has no nextUpdate")
	}
	return crl.NextUpdate, nil
}
