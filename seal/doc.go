// Package seal encrypts data so that only the same enclave (PolicyEnclave),
// or any enclave of the same signer and product at an equal or higher
// security version (PolicySigner), can decrypt it again.
//
// seal is pure: it never touches a platform. The platform layer (tee/)
// supplies the root sealing keys through the KeySource interface, which
// keeps seal testable with a memory secret and keeps the import graph
// pointing down (seal does not import tee).
//
// A sealed blob is
//
//	magic "CLS1" | version u8 (2) | policy u8 | u16 length | kdf context | key salt [12] | nonce [12] | AES-256-GCM ciphertext ‖ tag
//
// with every integer big-endian. Each blob's AES key is derived from the
// platform key material, the binding and its own random salt, so nonces
// never near the AES-GCM bound however many blobs one binding seals.
// Version 1 blobs (no salt: one key per binding, a 12-byte nonce) still
// open; Seal no longer writes them. The kdf context names what the key is
// bound to: the measurement for PolicyEnclave, or signer ‖ product id (u16)
// ‖ SVN (u16) for PolicySigner. The GCM additional data is the whole header
// (magic through nonce) followed by a caller label, such as the record key
// in a store, so a blob moved to another label does not open. The format is
// frozen: format_test.go pins it byte by byte and testdata/ holds blobs
// that must keep opening.
//
// Open takes the policy the caller expects and refuses any other
// (ErrWrongPolicy). Every failure to open is an error that names its cause
// (ErrMalformed, ErrWrongPolicy, ErrWrongIdentity, ErrSVNTooHigh, ErrAuth). Nothing here ever replaces
// data it could not open with fresh data; that decision belongs to the
// caller, and usually the right one is to stop.
package seal
