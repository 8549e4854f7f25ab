package seal

import (
	"crypto/hkdf"
	"crypto/sha256"
	"fmt"
	"strings"
)

// kdfLabel starts every HKDF info string this package builds. The version
// in it is the key schedule's, frozen with the blob format: changing it
// makes every existing blob unopenable.
const kdfLabel = "cloister seal v1 "

// purposeBlobKey is the purpose under which Seal and Open turn a
// KeySource's key material into the AES-256 key of one blob binding.
const purposeBlobKey = "blob aes-256-gcm"

// DeriveKey derives a 32-byte key from root with HKDF-SHA256 for one
// purpose and one kdf context. It is for platforms and simulators that hold
// a single root secret and must hand out distinct, independent keys per
// policy and identity: the HKDF info is "cloister seal v1 " ‖ purpose ‖ 0x00
// ‖ kdfContext, so different purposes never yield the same key, and the
// NUL (refused inside purpose) keeps purpose and context from running into
// each other. root must be at least MinKeyMaterialSize bytes; purpose must
// be non-empty. The caller owns the result and should clear it after use.
func DeriveKey(root []byte, purpose string, kdfContext []byte) ([]byte, error) {
	if len(root) < MinKeyMaterialSize {
		return nil, fmt.Errorf("seal: derive key: root is %d bytes, want at least %d", len(root), MinKeyMaterialSize)
	}
	if purpose == "" || strings.IndexByte(purpose, 0) >= 0 {
		return nil, fmt.Errorf("seal: derive key: purpose %q must be non-empty and contain no NUL", purpose)
	}
	info := kdfLabel + purpose + "\x00" + string(kdfContext)
	k, err := hkdf.Key(sha256.New, root, nil, info, keySize)
	if err != nil {
		return nil, fmt.Errorf("seal: derive key: %w", err)
	}
	return k, nil
}
