package kbs

import (
	"crypto/ecdh"
	"crypto/rsa"
	"encoding/base64"
	"errors"
	"fmt"
	"math/big"
	"strings"

	jsonv2 "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
)

// ProtocolVersion is the KBS protocol version this broker speaks. Like
// Trustee, it accepts exactly this version: 0.4.0 changed the Attestation
// layout (composite tee-evidence), so older clients cannot be served.
const ProtocolVersion = "0.4.0"

// Tee names of the Request, as kbs-types spells them, that this broker
// verifies evidence for.
const (
	TeeSGX = "sgx"
	TeeTDX = "tdx"
	TeeSNP = "snp"
)

// Hash algorithm names of the challenge's "selected-hash-algorithm" (and
// the client's "supported-hash-algorithms"), as kbs-types spells them.
const (
	HashSHA256 = "sha256"
	HashSHA384 = "sha384"
	HashSHA512 = "sha512"
)

// Request is the body of POST /kbs/v0/auth.
type Request struct {
	Version     string         `json:"version"`
	Tee         string         `json:"tee"`
	ExtraParams jsontext.Value `json:"extra-params"`
}

// ParseRequest reads a Request: strict JSON (no duplicate names, valid
// UTF-8, nothing after it), version exactly ProtocolVersion, a TEE this
// broker verifies. It returns the hash algorithm the challenge selects:
// SHA-384 (the clients' default) unless the client lists the algorithms it
// supports and SHA-384 is not among them.
func ParseRequest(body []byte) (*Request, string, error) {
	var req Request
	if err := jsonv2.Unmarshal(body, &req); err != nil {
		return nil, "", fmt.Errorf("kbs: request: %w", err)
	}
	switch {
	case req.Version == "":
		return nil, "", errors.New("kbs: request: no version")
	case req.Version != ProtocolVersion:
		return nil, "", fmt.Errorf("kbs: request: protocol version %q, this broker speaks %s only", req.Version, ProtocolVersion)
	}
	switch req.Tee {
	case TeeSGX, TeeTDX, TeeSNP:
	case "":
		return nil, "", errors.New("kbs: request: no tee")
	default:
		return nil, "", fmt.Errorf("kbs: request: tee %q is not supported (want %s, %s or %s)", req.Tee, TeeSGX, TeeTDX, TeeSNP)
	}
	hash, err := selectHash(req.ExtraParams, req.Tee)
	if err != nil {
		return nil, "", err
	}
	return &req, hash, nil
}

// selectHash reads extra-params' "supported-hash-algorithms" (absent, or
// extra-params an empty string as older clients send it, means SHA-384),
// and checks its "tee-metadata" against tee.
func selectHash(extra jsontext.Value, tee string) (string, error) {
	if len(extra) == 0 || extra.Kind() != '{' {
		return HashSHA384, nil
	}
	var p struct {
		Supported []string `json:"supported-hash-algorithms"`
		// TeeMetadata is protocol 0.4.0's description of the primary and
		// additional TEEs; the primary must be the request's tee, and
		// additional (device) TEEs are refused here already, since their
		// evidence would be (ParseAttestation).
		TeeMetadata *struct {
			Primary *struct {
				Tee string `json:"tee"`
			} `json:"primary_tee"`
			Additional []jsontext.Value `json:"additional_tees"`
		} `json:"tee-metadata"`
	}
	if err := jsonv2.Unmarshal(extra, &p); err != nil {
		return "", fmt.Errorf("kbs: request: extra-params: %w", err)
	}
	if m := p.TeeMetadata; m != nil {
		switch {
		case m.Primary != nil && m.Primary.Tee != tee:
			return "", fmt.Errorf("kbs: request: tee-metadata names primary tee %q, the request %q", m.Primary.Tee, tee)
		case len(m.Additional) > 0:
			return "", errors.New("kbs: request: tee-metadata lists additional (device) TEEs: this broker verifies no device evidence")
		}
	}
	if p.Supported == nil {
		return HashSHA384, nil
	}
	var found []string
	for _, name := range p.Supported {
		switch n := strings.ToLower(name); n {
		case HashSHA256, HashSHA384, HashSHA512:
			found = append(found, n)
		}
	}
	for _, pref := range []string{HashSHA384, HashSHA512, HashSHA256} {
		for _, n := range found {
			if n == pref {
				return n, nil
			}
		}
	}
	return "", fmt.Errorf("kbs: request: supported-hash-algorithms %q names none of sha256, sha384, sha512", p.Supported)
}

// Attestation is the body of POST /kbs/v0/attest (protocol 0.4.0).
type Attestation struct {
	InitData    jsontext.Value `json:"init-data,omitempty"`
	RuntimeData RuntimeData    `json:"runtime-data"`
	TeeEvidence TeeEvidence    `json:"tee-evidence"`
}

// RuntimeData is what the evidence binds: the challenge nonce and the key
// the resources are encrypted to.
type RuntimeData struct {
	Nonce     string    `json:"nonce"`
	TeePubKey TeePubKey `json:"tee-pubkey"`
}

// TeeEvidence is kbs-types' CompositeEvidence.
type TeeEvidence struct {
	// PrimaryEvidence is the TEE's evidence object; see decodeEvidence.
	PrimaryEvidence jsontext.Value `json:"primary_evidence"`
	// AdditionalEvidence is a JSON string mapping device TEEs to their
	// evidence. This broker verifies no device evidence, so it must be
	// empty ("" or an empty object): evidence it cannot judge is refused
	// rather than passed over.
	AdditionalEvidence string `json:"additional_evidence"`
}

// TeePubKey is the tee-pubkey JWK as kbs-types defines it: RSA (alg, n, e)
// or EC (crv, alg, x, y). Other members are refused, because the binding
// hash (BindingDigests) is computed over exactly these, as Trustee does.
type TeePubKey struct {
	Kty string `json:"kty"`
	Alg string `json:"alg"`
	// RSA
	N string `json:"n,omitempty"`
	E string `json:"e,omitempty"`
	// EC
	Crv string `json:"crv,omitempty"`
	X   string `json:"x,omitempty"`
	Y   string `json:"y,omitempty"`
}

// JWE key-management algorithms a tee-pubkey may name.
const (
	AlgECDHESA256KW = "ECDH-ES+A256KW"
	AlgRSAOAEP256   = "RSA-OAEP-256"
	// EncA256GCM is the content encryption of every response.
	EncA256GCM = "A256GCM"
)

// ParseAttestation reads an Attestation: strict JSON (no duplicate or
// unknown members at any level this broker reads), a nonce, a usable
// tee-pubkey and a primary evidence object. The nonce is compared with the
// session's by the caller.
func ParseAttestation(body []byte) (*Attestation, error) {
	var a Attestation
	if err := jsonv2.Unmarshal(body, &a, jsonv2.RejectUnknownMembers(true)); err != nil {
		return nil, fmt.Errorf("kbs: attestation: %w", err)
	}
	if a.RuntimeData.Nonce == "" {
		return nil, errors.New("kbs: attestation: runtime-data has no nonce")
	}
	if _, err := a.RuntimeData.TeePubKey.Parse(); err != nil {
		return nil, err
	}
	if k := a.TeeEvidence.PrimaryEvidence.Kind(); k != '{' {
		return nil, errors.New("kbs: attestation: tee-evidence.primary_evidence is not an object")
	}
	if !emptyAdditional(a.TeeEvidence.AdditionalEvidence) {
		return nil, errors.New("kbs: attestation: tee-evidence.additional_evidence is not empty: this broker verifies no device (additional) evidence")
	}
	return &a, nil
}

// emptyAdditional reports whether additional_evidence lists no device:
// "" or a JSON object without members.
func emptyAdditional(s string) bool {
	if s == "" {
		return true
	}
	var m map[string]jsontext.Value
	return jsonv2.Unmarshal([]byte(s), &m) == nil && m != nil && len(m) == 0
}

// Parse checks k and returns the public key it describes: an
// *ecdh.PublicKey on P-256, P-384 or P-521 (alg ECDH-ES+A256KW), or an
// *rsa.PublicKey of 2048 to 8192 bits (alg RSA-OAEP-256). RSA1_5, which
// Trustee still accepts with a warning, is refused (Bleichenbacher).
func (k *TeePubKey) Parse() (any, error) {
	switch k.Kty {
	case "EC":
		if k.N != "" || k.E != "" {
			return nil, errors.New("kbs: tee-pubkey: an EC key with RSA members n or e")
		}
		if k.Alg != AlgECDHESA256KW {
			return nil, fmt.Errorf("kbs: tee-pubkey: EC alg %q, want %s", k.Alg, AlgECDHESA256KW)
		}
		var curve ecdh.Curve
		var size int
		switch k.Crv {
		case "P-256":
			curve, size = ecdh.P256(), 32
		case "P-384":
			curve, size = ecdh.P384(), 48
		case "P-521":
			curve, size = ecdh.P521(), 66
		default:
			return nil, fmt.Errorf("kbs: tee-pubkey: curve %q, want P-256, P-384 or P-521", k.Crv)
		}
		x, err := b64url("x", k.X, size)
		if err != nil {
			return nil, err
		}
		y, err := b64url("y", k.Y, size)
		if err != nil {
			return nil, err
		}
		pub, err := curve.NewPublicKey(append(append([]byte{4}, x...), y...))
		if err != nil {
			return nil, fmt.Errorf("kbs: tee-pubkey: not a point on %s: %w", k.Crv, err)
		}
		return pub, nil
	case "RSA":
		if k.Crv != "" || k.X != "" || k.Y != "" {
			return nil, errors.New("kbs: tee-pubkey: an RSA key with EC members crv, x or y")
		}
		if k.Alg != AlgRSAOAEP256 {
			return nil, fmt.Errorf("kbs: tee-pubkey: RSA alg %q, want %s", k.Alg, AlgRSAOAEP256)
		}
		n, err := b64url("n", k.N, 0)
		if err != nil {
			return nil, err
		}
		e, err := b64url("e", k.E, 0)
		if err != nil {
			return nil, err
		}
		nn := new(big.Int).SetBytes(n)
		if bits := nn.BitLen(); bits < 2048 || bits > 8192 || nn.Bit(0) == 0 {
			return nil, fmt.Errorf("kbs: tee-pubkey: RSA modulus of %d bits, want an odd modulus of 2048 to 8192 bits", bits)
		}
		if len(e) == 0 || len(e) > 4 {
			return nil, errors.New("kbs: tee-pubkey: RSA exponent e must be 1 to 4 bytes")
		}
		ee := new(big.Int).SetBytes(e).Int64()
		// crypto/rsa encrypts to exponents up to 2^31-1 only: a larger one
		// would be attested and tokenised, then fail every release.
		if ee < 3 || ee%2 == 0 || ee > 1<<31-1 {
			return nil, fmt.Errorf("kbs: tee-pubkey: RSA exponent %d, want an odd exponent from 3 to 2^31-1", ee)
		}
		return &rsa.PublicKey{N: nn, E: int(ee)}, nil
	case "":
		return nil, errors.New("kbs: tee-pubkey: no kty")
	}
	return nil, fmt.Errorf("kbs: tee-pubkey: kty %q, want EC or RSA", k.Kty)
}

// b64url decodes a JWK member (base64url without padding); size > 0
// requires exactly that many bytes.
func b64url(name, s string, size int) ([]byte, error) {
	b, err := base64.RawURLEncoding.Strict().DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("kbs: tee-pubkey: %s is not base64url: %w", name, err)
	}
	if size > 0 && len(b) != size {
		return nil, fmt.Errorf("kbs: tee-pubkey: %s is %d bytes, want %d", name, len(b), size)
	}
	return b, nil
}
