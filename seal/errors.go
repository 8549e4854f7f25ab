package seal

import (
	"errors"
	"fmt"
)

// The sentinels below are the causes a caller of Open can branch on with
// errors.Is. Every error Open returns wraps exactly one of them, or wraps
// the KeySource's own error. Messages follow "seal: what failed: detail"
// and never contain key bytes or plaintext.
var (
	// ErrMalformed means the bytes are not a blob this package wrote: too
	// short, bad magic, unknown version or policy, a kdf context that does
	// not decode, or over the size caps. Storage corruption and truncation
	// land here when they hit the header.
	ErrMalformed = errors.New("seal: malformed blob")

	// ErrWrongIdentity means the blob is bound to another enclave: another
	// measurement under PolicyEnclave, another signer or product under
	// PolicySigner. No key was requested.
	ErrWrongIdentity = errors.New("seal: blob sealed to another identity")

	// ErrWrongPolicy means the blob was sealed under another policy than
	// the one the caller expects. A store created under PolicyEnclave must
	// not accept a PolicySigner blob: any enclave of the same signer and
	// product at an equal or higher SVN than the blob's can seal one,
	// including an old, vulnerable release. No key was requested.
	ErrWrongPolicy = errors.New("seal: blob sealed under another policy")

	// ErrSVNTooHigh means a PolicySigner blob was sealed at a higher SVN than
	// the opener's. An older (possibly vulnerable) version must not read
	// what a newer one sealed, exactly as SGX EGETKEY refuses a KEYREQUEST
	// ISVSVN above the enclave's own. No key was requested.
	ErrSVNTooHigh = errors.New("seal: blob sealed at a higher SVN")

	// ErrAuth means AES-GCM authentication failed: the label differs, the
	// header or ciphertext was changed, or the key is not the one that
	// sealed it (another platform, or a platform secret that was rotated).
	// The cause cannot be told apart without the key, by design.
	ErrAuth = errors.New("seal: authentication failed")

	// ErrTooLarge means Seal was given more than MaxPlaintextSize bytes, or
	// Seal or Open a label over MaxLabelSize. Callers such as a store can
	// split records on it.
	ErrTooLarge = errors.New("seal: too large")
)

// malformed returns an ErrMalformed naming the field at fault.
func malformed(field, format string, args ...any) error {
	return fmt.Errorf("%w: %s: %s", ErrMalformed, field, fmt.Sprintf(format, args...))
}
