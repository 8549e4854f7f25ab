package kbs

import (
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	josecipher "github.com/go-jose/go-jose/v4/cipher"
)

// Response is a resource as KBS returns it: a JWE in the flattened JSON
// serialization (RFC 7516 §7.2.2), members as kbs-types' Response names
// them, each base64url without padding. aad is omitted, as Trustee does:
// the AAD is the protected string itself.
type Response struct {
	Protected    string `json:"protected"`
	EncryptedKey string `json:"encrypted_key"`
	IV           string `json:"iv"`
	Ciphertext   string `json:"ciphertext"`
	Tag          string `json:"tag"`
}

// protectedHeader returns the JWE protected header exactly as kbs-types'
// ProtectedHeader serializes: alg, enc, then the other members sorted by
// name (serde_json's map order), nested objects sorted too, no white
// space. Guest clients parse the header and re-serialize it to compute the
// AAD (ProtectedHeader::generate_aad), so any other layout would fail
// their tag check even though it is a valid JWE.
func protectedHeader(alg string, epk *ecdh.PublicKey) ([]byte, error) {
	out := []byte(`{"alg":`)
	out = appendJCSString(out, alg)
	out = append(out, `,"enc":`...)
	out = appendJCSString(out, EncA256GCM)
	if epk != nil {
		crv, size, err := curveName(epk.Curve())
		if err != nil {
			return nil, err
		}
		pt := epk.Bytes() // 0x04 ‖ X ‖ Y, each coordinate size bytes
		out = append(out, `,"epk":`...)
		out = canonicalJSON(out, map[string]string{
			"crv": crv, "kty": "EC",
			"x": base64.RawURLEncoding.EncodeToString(pt[1 : 1+size]),
			"y": base64.RawURLEncoding.EncodeToString(pt[1+size:]),
		})
	}
	return append(out, '}'), nil
}

func curveName(c ecdh.Curve) (string, int, error) {
	switch c {
	case ecdh.P256():
		return "P-256", 32, nil
	case ecdh.P384():
		return "P-384", 48, nil
	case ecdh.P521():
		return "P-521", 66, nil
	}
	return "", 0, errors.New("kbs: jwe: unsupported curve")
}

// Encrypt encrypts payload to the TEE key (from TeePubKey.Parse) with a
// fresh content key: ECDH-ES+A256KW for an EC key (ephemeral key on the
// same curve, Concat KDF over SHA-256 with AlgorithmID "ECDH-ES+A256KW",
// empty PartyUInfo and PartyVInfo, 256-bit output; RFC 7518 §4.6), or
// RSA-OAEP-256 for an RSA key; content A256GCM with a 96-bit IV and the
// protected string as AAD. rand supplies every key and IV.
//
// The JOSE primitives are go-jose's (Concat KDF, AES key wrap); the
// header is written here because go-jose's layout is not kbs-types'.
func Encrypt(rand io.Reader, teeKey any, payload []byte) (*Response, error) {
	cek := make([]byte, 32)
	if _, err := io.ReadFull(rand, cek); err != nil {
		return nil, fmt.Errorf("kbs: jwe: content key: %w", err)
	}
	var header, encKey []byte
	switch k := teeKey.(type) {
	case *ecdh.PublicKey:
		eph, err := k.Curve().GenerateKey(rand)
		if err != nil {
			return nil, fmt.Errorf("kbs: jwe: ephemeral key: %w", err)
		}
		z, err := eph.ECDH(k)
		if err != nil {
			return nil, fmt.Errorf("kbs: jwe: ECDH: %w", err)
		}
		kek := make([]byte, 32)
		supPub := binary.BigEndian.AppendUint32(nil, 256)
		kdf := josecipher.NewConcatKDF(crypto.SHA256, z, lengthPrefixed([]byte(AlgECDHESA256KW)), lengthPrefixed(nil), lengthPrefixed(nil), supPub, nil)
		if _, err := io.ReadFull(kdf, kek); err != nil {
			return nil, fmt.Errorf("kbs: jwe: concat KDF: %w", err)
		}
		block, err := aes.NewCipher(kek)
		if err != nil {
			return nil, fmt.Errorf("kbs: jwe: %w", err)
		}
		if encKey, err = josecipher.KeyWrap(block, cek); err != nil {
			return nil, fmt.Errorf("kbs: jwe: key wrap: %w", err)
		}
		if header, err = protectedHeader(AlgECDHESA256KW, eph.PublicKey()); err != nil {
			return nil, err
		}
	case *rsa.PublicKey:
		var err error
		if encKey, err = rsa.EncryptOAEP(sha256.New(), rand, k, cek, nil); err != nil {
			return nil, fmt.Errorf("kbs: jwe: RSA-OAEP-256: %w", err)
		}
		if header, err = protectedHeader(AlgRSAOAEP256, nil); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("kbs: jwe: unsupported TEE key %T", teeKey)
	}
	block, err := aes.NewCipher(cek)
	if err != nil {
		return nil, fmt.Errorf("kbs: jwe: %w", err)
	}
	gcm, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("kbs: jwe: %w", err)
	}
	iv := make([]byte, gcm.NonceSize())
	if _, err := io.ReadFull(rand, iv); err != nil {
		return nil, fmt.Errorf("kbs: jwe: IV: %w", err)
	}
	protected := base64.RawURLEncoding.EncodeToString(header)
	sealed := gcm.Seal(nil, iv, payload, []byte(protected))
	ct, tag := sealed[:len(payload)], sealed[len(payload):]
	return &Response{
		Protected:    protected,
		EncryptedKey: base64.RawURLEncoding.EncodeToString(encKey),
		IV:           base64.RawURLEncoding.EncodeToString(iv),
		Ciphertext:   base64.RawURLEncoding.EncodeToString(ct),
		Tag:          base64.RawURLEncoding.EncodeToString(tag),
	}, nil
}

// lengthPrefixed is a Concat KDF input: a 32-bit big-endian length, then
// the data (RFC 7518 §4.6.2).
func lengthPrefixed(b []byte) []byte {
	return append(binary.BigEndian.AppendUint32(nil, uint32(len(b))), b...)
}
