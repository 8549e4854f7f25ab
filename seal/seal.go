package seal

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
)

// KeySource hands out the key material seal derives blob keys from. The
// platform layer implements it (tee.Platform, or an adapter over it); seal
// never reaches the platform any other way.
//
// Contract for implementations:
//   - SealKey returns between MinKeyMaterialSize and MaxKeyMaterialSize
//     bytes bound to exactly req.Policy and req.Context() on this platform,
//     and the same bytes for the same request for as long as the platform
//     secret lives. A platform with one root secret can return
//     DeriveKey(root, purpose, req.Context()) with one purpose per policy.
//   - It MUST refuse what the running enclave may not have: under
//     PolicyEnclave a measurement other than its own, under PolicySigner
//     another signer or product, or an SVN above its own (SGX EGETKEY
//     refuses KEYREQUEST.ISVSVN above the enclave's ISVSVN). It MUST hand
//     out keys for its own signer and product at lower SVNs, or blobs sealed
//     before an upgrade cannot be opened after it. Open checks the same
//     rules before calling, but the platform is the real boundary: any code
//     in the enclave can call it.
//   - It should bind what else the hardware binds, such as the debug
//     attribute, into its own derivation, so a debug build of the same
//     enclave does not get production keys.
//   - It returns a fresh slice: seal clears it after use.
//   - It must be safe for concurrent use if the Sealer is used concurrently.
type KeySource interface {
	SealKey(ctx context.Context, req KeyRequest) ([]byte, error)
}

// Sealer seals and opens blobs for one running enclave. Its fields are read
// on every call and never modified, so one Sealer may be shared by
// goroutines when Keys and Rand are safe for concurrent use (crypto/rand
// is).
type Sealer struct {
	// Keys supplies the key material; required.
	Keys KeySource

	// Identity is the running enclave, as its platform reports it. Seal
	// binds blobs to it; Open compares blobs with it.
	Identity Identity

	// Rand supplies the 24-byte nonce of each blob (key salt and GCM
	// nonce); nil means crypto/rand. Tests pin it. Each blob's key is
	// derived with its own salt, so no number of blobs nears the AES-GCM
	// limit for random nonces (see format.go).
	Rand io.Reader
}

// Seal encrypts plaintext for the running identity under policy p and
// returns the blob. label is authenticated but not stored: Open must be
// given the same label, so a store that uses the record key as label gets
// blobs that cannot be swapped between records. Under PolicySigner the
// blob is bound to the running SVN.
func (s Sealer) Seal(ctx context.Context, p Policy, label, plaintext []byte) ([]byte, error) {
	if s.Keys == nil {
		return nil, errors.New("seal: sealer: no KeySource")
	}
	if len(plaintext) > MaxPlaintextSize {
		return nil, fmt.Errorf("%w: plaintext is %d bytes, limit %d", ErrTooLarge, len(plaintext), MaxPlaintextSize)
	}
	if len(label) > MaxLabelSize {
		return nil, fmt.Errorf("%w: label is %d bytes, limit %d", ErrTooLarge, len(label), MaxLabelSize)
	}
	req, err := requestFor(s.Identity, p)
	if err != nil {
		return nil, err
	}
	rnd := s.Rand
	if rnd == nil {
		rnd = rand.Reader
	}
	nonce := make([]byte, nonceSize)
	if _, err := io.ReadFull(rnd, nonce); err != nil {
		return nil, fmt.Errorf("seal: nonce: %w", err)
	}
	out := make([]byte, 0, maxHeaderSize+len(plaintext)+tagSize)
	out, err = appendHeader(out, Version, req, nonce)
	if err != nil {
		return nil, err
	}
	aead, err := s.aead(ctx, req, keyBinding(out))
	if err != nil {
		return nil, err
	}
	// additionalData copies the header, so GCM may append to out in place.
	return aead.Seal(out, nonce[keySaltSize:], plaintext, additionalData(out, label)), nil
}

// Open checks blob against the policy the caller expects and the running
// identity, and decrypts it. It checks, in order and before any key is
// requested: the format (ErrMalformed), the policy (ErrWrongPolicy: the
// blob must be sealed under exactly p, so a caller that sealed under
// PolicyEnclave never accepts a PolicySigner blob that an older release
// of the same signer could have made), the binding (ErrWrongIdentity,
// ErrSVNTooHigh); then it
// asks the KeySource for the key at the blob's binding (under PolicySigner
// at the SVN the blob was sealed at, not the running one) and
// authenticates the header, label and ciphertext (ErrAuth). On any error
// it returns no plaintext; the caller decides what a failed open means and
// must not treat it as "empty".
func (s Sealer) Open(ctx context.Context, p Policy, label, blob []byte) ([]byte, error) {
	if s.Keys == nil {
		return nil, errors.New("seal: sealer: no KeySource")
	}
	if !p.valid() {
		return nil, fmt.Errorf("seal: policy: unknown policy %d", uint8(p))
	}
	if len(label) > MaxLabelSize {
		return nil, fmt.Errorf("%w: label is %d bytes, limit %d", ErrTooLarge, len(label), MaxLabelSize)
	}
	h, ciphertext, err := parseHeader(blob)
	if err != nil {
		return nil, err
	}
	if h.req.Policy != p {
		return nil, fmt.Errorf("%w: blob %s, expected %s", ErrWrongPolicy, h.req.Policy, p)
	}
	if err := h.req.check(s.Identity); err != nil {
		return nil, err
	}
	aead, err := s.aead(ctx, h.req, keyBinding(h.raw))
	if err != nil {
		return nil, err
	}
	plaintext, err := aead.Open(nil, h.nonce, ciphertext, additionalData(h.raw, label))
	if err != nil {
		// GCM's error carries nothing more; say what could have caused it.
		return nil, fmt.Errorf("%w: wrong label, changed blob, or another platform's key (%s policy)", ErrAuth, h.req.Policy)
	}
	return plaintext, nil
}

// aead asks the KeySource for req's key material and returns the AES-256-GCM
// instance for binding. The material and the derived key are cleared before
// returning; the expanded key schedule inside the cipher cannot be, and
// lives until the AEAD is collected.
func (s Sealer) aead(ctx context.Context, req KeyRequest, binding []byte) (cipher.AEAD, error) {
	material, err := s.Keys.SealKey(ctx, req)
	defer clear(material)
	if err != nil {
		return nil, fmt.Errorf("seal: sealing key (%s policy): %w", req.Policy, err)
	}
	if n := len(material); n < MinKeyMaterialSize || n > MaxKeyMaterialSize {
		return nil, fmt.Errorf("seal: sealing key (%s policy): KeySource returned %d bytes, want %d to %d", req.Policy, n, MinKeyMaterialSize, MaxKeyMaterialSize)
	}
	key, err := DeriveKey(material, purposeBlobKey, binding)
	if err != nil {
		return nil, err
	}
	defer clear(key)
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("seal: cipher: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("seal: cipher: %w", err)
	}
	return aead, nil
}

// UnverifiedBinding returns what blob declares it is bound to: its policy
// and measurement, or signer, product id and sealed-at SVN. It checks the
// format only (ErrMalformed) and asks for no key.
//
// SAFETY: the result is not authenticated. Use it to decide what to do
// (for instance to re-seal a PolicySigner blob at a newer SVN after an
// upgrade), never as proof; once Open of the same blob has succeeded the
// values are authenticated, because the header is part of the AAD.
func UnverifiedBinding(blob []byte) (KeyRequest, error) {
	h, _, err := parseHeader(blob)
	if err != nil {
		return KeyRequest{}, err
	}
	return h.req, nil
}
