package kbsclient

import (
	"crypto/ecdsa"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"fmt"
	"hash"
)

// JWK is the tee-pubkey as kbs-types defines an EC key: exactly these
// members, which the broker hashes.
type JWK struct {
	Kty string `json:"kty"`
	Alg string `json:"alg"`
	Crv string `json:"crv"`
	X   string `json:"x"`
	Y   string `json:"y"`
}

// publicJWK is key's public half as a tee-pubkey for ECDH-ES+A256KW.
func publicJWK(key *ecdsa.PrivateKey) (JWK, error) {
	pk, err := key.PublicKey.ECDH()
	if err != nil {
		return JWK{}, fmt.Errorf("kbsclient: tee key: %w", err)
	}
	b := pk.Bytes() // 0x04 ‖ X ‖ Y, 32 bytes each on P-256
	if len(b) != 65 || b[0] != 4 {
		return JWK{}, fmt.Errorf("kbsclient: tee key: unexpected P-256 encoding of %d bytes", len(b))
	}
	enc := base64.RawURLEncoding
	return JWK{Kty: "EC", Alg: "ECDH-ES+A256KW", Crv: "P-256", X: enc.EncodeToString(b[1:33]), Y: enc.EncodeToString(b[33:])}, nil
}

// ReportData is the report data binding the runtime data {nonce,
// tee-pubkey} (with an empty additional evidence), as guest-components'
// client computes it: the hash (sha256, sha384 or sha512, as the
// challenge selects) of the runtime data's canonical JSON (RFC 8785:
// members sorted, no white space), zero-padded to 64 bytes.
func ReportData(nonce string, key JWK, hashAlg string) ([64]byte, error) {
	var h hash.Hash
	switch hashAlg {
	case "sha256":
		h = sha256.New()
	case "sha384":
		h = sha512.New384()
	case "sha512":
		h = sha512.New()
	default:
		return [64]byte{}, fmt.Errorf("kbsclient: the challenge selects hash %q; want sha256, sha384 or sha512", hashAlg)
	}
	h.Write(canonicalRuntimeData(nonce, key))
	var rd [64]byte
	copy(rd[:], h.Sum(nil))
	return rd, nil
}

// canonicalRuntimeData is the RFC 8785 form of {"additional-evidence":
// "", "nonce": N, "tee-pubkey": K}. Member names are fixed ASCII, so
// their order is written out: additional-evidence < nonce < tee-pubkey,
// and alg < crv < kty < x < y.
func canonicalRuntimeData(nonce string, k JWK) []byte {
	b := []byte(`{"additional-evidence":"","nonce":`)
	b = appendJCSString(b, nonce)
	b = append(b, `,"tee-pubkey":{"alg":`...)
	b = appendJCSString(b, k.Alg)
	b = append(b, `,"crv":`...)
	b = appendJCSString(b, k.Crv)
	b = append(b, `,"kty":`...)
	b = appendJCSString(b, k.Kty)
	b = append(b, `,"x":`...)
	b = appendJCSString(b, k.X)
	b = append(b, `,"y":`...)
	b = appendJCSString(b, k.Y)
	return append(b, "}}"...)
}

// appendJCSString appends s as an RFC 8785 string: only '"', '\\' and
// control characters are escaped, with the short escapes where JSON has
// them and \u00xx (lower-case hex) otherwise; everything else, non-ASCII
// included, is written as is.
func appendJCSString(dst []byte, s string) []byte {
	const hexDigits = "0123456789abcdef"
	dst = append(dst, '"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			dst = append(dst, '\\', c)
		case c == '\b':
			dst = append(dst, '\\', 'b')
		case c == '\f':
			dst = append(dst, '\\', 'f')
		case c == '\n':
			dst = append(dst, '\\', 'n')
		case c == '\r':
			dst = append(dst, '\\', 'r')
		case c == '\t':
			dst = append(dst, '\\', 't')
		case c < 0x20:
			dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
		default:
			dst = append(dst, c)
		}
	}
	return append(dst, '"')
}
