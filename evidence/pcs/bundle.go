// Package pcs holds Intel DCAP collateral: the on-disk collateral bundle that
// `cloister collateral fetch` writes and `--collateral` reads, and a client for
// the Intel Provisioning Certification Service (PCS) v4 API with an on-disk
// cache.
//
// The bundle uses the shape of dcap-qvl's QuoteCollateralV3 so that bundles
// move between tools. Signed JSON text is kept byte-exact and never
// re-serialised: the signatures cover those exact bytes.
//
// Nothing in this package decides trust. ParseBundle and DecodeUnverified check
// format only, the Client and AssembleBundle cut and decode what Intel
// serves, and the Cache stores bytes; evidence/dcap verifies every
// signature, chain, validity time and CRL before anything is used.
package pcs

import (
	"bytes"
	"encoding/json"
	"fmt"
	"unicode/utf8"
)

// Bundle is the collateral needed to evaluate one SGX or TDX quote. All
// values are strings, as in dcap-qvl's JSON. A Bundle is unverified input:
// evidence/dcap checks every signature and chain in it before using it.
type Bundle struct {
	// TCBInfo is the signed tcbInfo JSON object, byte-exact.
	TCBInfo string `json:"tcb_info"`
	// TCBInfoSignature is the hex of the raw r||s ECDSA P-256 signature over TCBInfo.
	TCBInfoSignature string `json:"tcb_info_signature"`
	// TCBInfoIssuerChain is the PEM chain (TCB signing certificate, then root).
	TCBInfoIssuerChain string `json:"tcb_info_issuer_chain"`
	// QEIdentity is the signed enclaveIdentity JSON object, byte-exact.
	QEIdentity string `json:"qe_identity"`
	// QEIdentitySignature is the hex of the raw r||s signature over QEIdentity.
	QEIdentitySignature string `json:"qe_identity_signature"`
	// QEIdentityIssuerChain is the PEM chain that signed QEIdentity.
	QEIdentityIssuerChain string `json:"qe_identity_issuer_chain"`
	// PCKCRL is the hex of the DER PCK CRL (issued by the PCK Processor or Platform CA).
	// Empty when absent. DecodeUnverified also accepts one PEM "X509 CRL" block here,
	// which some tools store instead.
	PCKCRL string `json:"pck_crl,omitempty"`
	// PCKCRLIssuerChain is the PEM chain of the PCK CRL issuer.
	PCKCRLIssuerChain string `json:"pck_crl_issuer_chain,omitempty"`
	// RootCACRL is the hex of the DER Intel SGX Root CA CRL. Empty when
	// absent. As for PCKCRL, a PEM "X509 CRL" block is also accepted.
	RootCACRL string `json:"root_ca_crl,omitempty"`
}

// TEE selects the PCS endpoint family.
type TEE string

// PCS endpoint families.
const (
	SGX TEE = "sgx"
	TDX TEE = "tdx"
)

// Query names the collateral of one platform.
type Query struct {
	// TEE selects the SGX or TDX endpoints.
	TEE TEE
	// FMSPC is the 6-byte FMSPC from the PCK certificate.
	FMSPC []byte
	// CA is "processor" or "platform": the PCK CA that issued the PCK certificate.
	CA string
}

// pckCertificateChainKey is an optional key of dcap-qvl's QuoteCollateralV3.
// ParseBundle accepts and ignores it: Cloister takes the PCK chain from the
// quote, never from collateral.
const pckCertificateChainKey = "pck_certificate_chain"

// bundleField describes one key of the bundle JSON.
type bundleField struct {
	key      string
	value    *string
	required bool
}

// fields lists the bundle keys in struct (and Marshal) order with a pointer
// to each value. It is the single list that ParseBundle, Marshal and the
// tests walk, so a key can never be handled by one and forgotten by another.
// The CRL fields are optional: a bundle without them is well-formed, and
// verification decides (AllowMissingCRL) whether that is acceptable.
func (b *Bundle) fields() []bundleField {
	return []bundleField{
		{"tcb_info", &b.TCBInfo, true},
		{"tcb_info_signature", &b.TCBInfoSignature, true},
		{"tcb_info_issuer_chain", &b.TCBInfoIssuerChain, true},
		{"qe_identity", &b.QEIdentity, true},
		{"qe_identity_signature", &b.QEIdentitySignature, true},
		{"qe_identity_issuer_chain", &b.QEIdentityIssuerChain, true},
		{"pck_crl", &b.PCKCRL, false},
		{"pck_crl_issuer_chain", &b.PCKCRLIssuerChain, false},
		{"root_ca_crl", &b.RootCACRL, false},
	}
}

// ParseBundle reads a collateral bundle file (dcap-qvl's QuoteCollateralV3
// JSON). It checks the JSON shape only: one object, every value a string,
// the six required keys present and non-empty, no unknown or duplicate
// keys, no trailing data, at most 1 MiB. It does not decode or check the
// values; call DecodeUnverified for the format of the values and evidence/dcap for
// their signatures.
func ParseBundle(data []byte) (*Bundle, error) {
	if len(data) > maxBundleSize {
		return nil, malformed("bundle", "%d bytes, larger than the %d-byte limit", len(data), maxBundleSize)
	}
	b := new(Bundle)
	fields := b.fields()
	known := func(k string) bool {
		if k == pckCertificateChainKey {
			return true
		}
		for _, f := range fields {
			if f.key == k {
				return true
			}
		}
		return false
	}
	obj, err := readObject(data, "bundle", known)
	if err != nil {
		return nil, err
	}
	if raw, ok := obj[pckCertificateChainKey]; ok {
		// Ignored, but it must still be a string: a tool that puts
		// something else there does not write the format we accept.
		if _, err := jsonString(pckCertificateChainKey, raw); err != nil {
			return nil, err
		}
	}
	for _, f := range fields {
		raw, ok := obj[f.key]
		if !ok {
			if f.required {
				return nil, malformed(f.key, "missing")
			}
			continue
		}
		s, err := jsonString(f.key, raw)
		if err != nil {
			return nil, err
		}
		if f.required && s == "" {
			return nil, malformed(f.key, "empty")
		}
		*f.value = s
	}
	return b, nil
}

// Marshal encodes b as indented JSON with the keys in field order, ending
// in a newline; empty optional fields are left out. It refuses a bundle
// that ParseBundle would refuse (missing required value, too large) and any
// value that is not valid UTF-8, because JSON encoding would replace those
// bytes and so silently change signed text.
func (b *Bundle) Marshal() ([]byte, error) {
	for _, f := range b.fields() {
		if f.required && *f.value == "" {
			return nil, malformed(f.key, "missing")
		}
		if !utf8.ValidString(*f.value) {
			return nil, malformed(f.key, "not valid UTF-8")
		}
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	// Keep '<', '>' and '&' readable; the decoded strings are the same
	// either way.
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(b); err != nil {
		return nil, fmt.Errorf("pcs: encode bundle: %w", err)
	}
	if buf.Len() > maxBundleSize {
		return nil, malformed("bundle", "%d bytes, larger than the %d-byte limit", buf.Len(), maxBundleSize)
	}
	return buf.Bytes(), nil
}
