package akv

import (
	"crypto/rsa"
	"crypto/sha1" // CKM_RSA_AES_KEY_WRAP's OAEP hash, as PKCS#11 and Azure define it
	"crypto/sha256"
	"crypto/sha512"
	"errors"
	"fmt"
	"hash"
	"io"
)

// Key release wrapping algorithms (the "enc" of a release request).
const (
	// EncCkmRsaAesKeyWrap is PKCS#11's CKM_RSA_AES_KEY_WRAP: RSA-OAEP with
	// SHA-1 (and MGF1-SHA-1) over an ephemeral AES-256 key, then that key
	// wraps the key material with AES key wrap with padding (RFC 5649).
	EncCkmRsaAesKeyWrap = "CKM_RSA_AES_KEY_WRAP"
	// EncRsaAesKeyWrap256 is the same with RSA-OAEP over SHA-256.
	EncRsaAesKeyWrap256 = "RSA_AES_KEY_WRAP_256"
	// EncRsaAesKeyWrap384 is the same with RSA-OAEP over SHA-384.
	EncRsaAesKeyWrap384 = "RSA_AES_KEY_WRAP_384"
)

// kekSize is the ephemeral AES key: AES-256, as Azure's HSMs use.
const kekSize = 32

// ErrUnwrap means a wrapped key does not open under the private key given.
var ErrUnwrap = errors.New("akv: cannot unwrap the released key")

func oaepHash(enc string) (hash.Hash, error) {
	switch enc {
	case EncCkmRsaAesKeyWrap:
		return sha1.New(), nil
	case EncRsaAesKeyWrap256:
		return sha256.New(), nil
	case EncRsaAesKeyWrap384:
		return sha512.New384(), nil
	}
	return nil, fmt.Errorf("akv: enc %q: want %s, %s or %s", enc, EncCkmRsaAesKeyWrap, EncRsaAesKeyWrap256, EncRsaAesKeyWrap384)
}

// wrap seals material to pub as enc says: RSA-OAEP(pub, KEK) ‖
// AES-KWP(KEK, material), with a fresh KEK from rnd. This is the
// ciphertext of the key_hsm blob, as Azure's HSMs write it.
func wrap(rnd io.Reader, pub *rsa.PublicKey, enc string, material []byte) ([]byte, error) {
	h, err := oaepHash(enc)
	if err != nil {
		return nil, err
	}
	kek := make([]byte, kekSize)
	defer clear(kek)
	if _, err := io.ReadFull(rnd, kek); err != nil {
		return nil, fmt.Errorf("akv: wrapping key: %w", err)
	}
	encKEK, err := rsa.EncryptOAEP(h, rnd, pub, kek, nil)
	if err != nil {
		return nil, fmt.Errorf("akv: RSA-OAEP: %w", err)
	}
	wrapped, err := kwpWrap(kek, material)
	if err != nil {
		return nil, fmt.Errorf("akv: AES-KWP: %w", err)
	}
	return append(encKEK, wrapped...), nil
}

// Unwrap opens the ciphertext of a released key's key_hsm blob with the
// transfer key priv (the key whose public half was in the token's
// x-ms-runtime keys): the first modulus-size bytes are the RSA-OAEP
// encrypted AES key, the rest the RFC 5649 wrapped key material (PKCS#8
// DER for RSA and EC keys, the raw bytes for oct keys).
func Unwrap(priv *rsa.PrivateKey, enc string, ciphertext []byte) ([]byte, error) {
	h, err := oaepHash(enc)
	if err != nil {
		return nil, err
	}
	k := priv.Size()
	if len(ciphertext) <= k {
		return nil, fmt.Errorf("%w: %d bytes, want more than the %d of the RSA part", ErrUnwrap, len(ciphertext), k)
	}
	kek, err := rsa.DecryptOAEP(h, nil, priv, ciphertext[:k], nil)
	if err != nil {
		return nil, fmt.Errorf("%w: RSA-OAEP: %w", ErrUnwrap, err)
	}
	defer clear(kek)
	m, err := kwpUnwrap(kek, ciphertext[k:])
	if err != nil {
		return nil, fmt.Errorf("%w: AES-KWP: %w", ErrUnwrap, err)
	}
	return m, nil
}
