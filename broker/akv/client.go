package akv

import (
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// ErrBadRelease means a release result is not a well-formed, correctly
// signed JWS of Azure's release shape.
var ErrBadRelease = errors.New("akv: bad release result")

// Released is an opened release result.
type Released struct {
	// Kid is the released key's id (https://HOST/keys/NAME/VERSION).
	Kid string
	// Kty is its type.
	Kty string
	// Enc is the wrapping algorithm used.
	Enc string
	// TransferKid is the kid of the x-ms-runtime key it was wrapped to.
	TransferKid string
	// Material is the unwrapped key: PKCS#8 DER (RSA, EC) or the raw
	// bytes (oct).
	Material []byte
}

// OpenRelease is the client side of a release: it checks the JWS value's
// RS256 signature under vaultKey (the vault's signing key, which the
// caller trusts: e.g. from the x5c chain it checked), parses Azure's
// payload and unwraps key_hsm with the transfer key priv.
func OpenRelease(value string, vaultKey *rsa.PublicKey, priv *rsa.PrivateKey) (*Released, error) {
	parts := strings.Split(value, ".")
	if len(parts) != 3 {
		return nil, fmt.Errorf("%w: not a compact JWS", ErrBadRelease)
	}
	hb, err := base64.RawURLEncoding.DecodeString(parts[0])
	if err != nil {
		return nil, fmt.Errorf("%w: header: %w", ErrBadRelease, err)
	}
	var hdr struct {
		Alg  string          `json:"alg"`
		Crit json.RawMessage `json:"crit"`
	}
	if err := json.Unmarshal(hb, &hdr); err != nil || hdr.Alg != "RS256" || hdr.Crit != nil {
		return nil, fmt.Errorf("%w: header: want alg RS256 and no crit", ErrBadRelease)
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil {
		return nil, fmt.Errorf("%w: signature: %w", ErrBadRelease, err)
	}
	digest := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	if err := rsa.VerifyPKCS1v15(vaultKey, crypto.SHA256, digest[:], sig); err != nil {
		return nil, fmt.Errorf("%w: signature: %w", ErrBadRelease, err)
	}
	pb, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return nil, fmt.Errorf("%w: payload: %w", ErrBadRelease, err)
	}
	var p releasePayload
	if err := json.Unmarshal(pb, &p); err != nil {
		return nil, fmt.Errorf("%w: payload: %w", ErrBadRelease, err)
	}
	blob, err := base64.RawURLEncoding.DecodeString(p.Response.Key.Key.KeyHSM)
	if err != nil || len(blob) == 0 {
		return nil, fmt.Errorf("%w: key_hsm is not base64url", ErrBadRelease)
	}
	var kh keyHSM
	if err := json.Unmarshal(blob, &kh); err != nil {
		return nil, fmt.Errorf("%w: key_hsm: %w", ErrBadRelease, err)
	}
	ct, err := base64.RawURLEncoding.DecodeString(kh.Ciphertext)
	if err != nil {
		return nil, fmt.Errorf("%w: key_hsm ciphertext: %w", ErrBadRelease, err)
	}
	m, err := Unwrap(priv, kh.Header.Enc, ct)
	if err != nil {
		return nil, err
	}
	return &Released{Kid: p.Response.Key.Key.Kid, Kty: p.Response.Key.Key.Kty, Enc: kh.Header.Enc,
		TransferKid: kh.Header.Kid, Material: m}, nil
}
