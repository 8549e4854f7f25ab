package seal

import (
	"encoding/binary"
	"fmt"
)

// Blob layout. Every offset past the kdf context depends on its length, so
// only the fixed prefix has constant offsets.
//
//	"CLS1" | version u8 | policy u8 | ctx len u16 | kdf context | nonce | ciphertext ‖ tag
//
// Version 1 (read only): the nonce is a random 12-byte GCM nonce, and the
// AES key is derived from the binding (magic through kdf context) alone,
// so every blob of one binding shares a key and random nonces cap it at
// 2^32 blobs. Version 2 (written): the nonce is 24 random bytes, a 12-byte
// key salt then the 12-byte GCM nonce, and the key is derived from the
// binding and the salt: each blob gets its own key, and two blobs share a
// key and nonce only if 192 random bits collide, so no count of blobs a
// store will ever seal nears the GCM bound. In both versions the key is
// derived over the raw header up to the GCM nonce (keyBinding), and the
// whole header, salt included, is authenticated as AAD.
const (
	// Magic opens every blob, so a store can tell a sealed record from
	// anything else at a glance.
	Magic = "CLS1"

	// Version is the blob format this package writes. Open accepts exactly
	// the versions listed in parseHeader (1 and 2); Do NOT change the
	// meaning of a version once released.
	Version = 2

	// version1 is the first format: 12-byte nonce, one key per binding.
	version1 = 1

	magicSize   = len(Magic)
	offVersion  = magicSize      // u8
	offPolicy   = offVersion + 1 // u8
	offCtxLen   = offPolicy + 1  // u16 big-endian
	offCtx      = offCtxLen + 2  // kdf context, then nonce
	fixedPrefix = offCtx

	// gcmNonceSize is the AES-GCM nonce: the GCM standard size, the last
	// bytes of every header.
	gcmNonceSize = 12

	// keySaltSize is the random salt of a version 2 blob's key, stored
	// before its GCM nonce.
	keySaltSize = 12

	// nonceSize is the nonce field Seal writes (version 2): key salt then
	// GCM nonce.
	nonceSize = keySaltSize + gcmNonceSize

	// tagSize is the AES-GCM tag at the end of the ciphertext.
	tagSize = 16

	// keySize is the AES-256 key size.
	keySize = 32

	// maxHeaderSize is the longest header the wire cap allows.
	maxHeaderSize = fixedPrefix + MaxKDFContextSize + nonceSize
)

// header is a parsed blob header. raw is the header exactly as it appears
// in the blob (magic through nonce); it, not a re-encoding, goes into the
// AAD and the key derivation.
type header struct {
	version uint8
	req     KeyRequest
	ctx     []byte // the kdf context bytes as stored
	nonces  []byte // the whole nonce field as stored (version 2: key salt ‖ GCM nonce)
	nonce   []byte // the GCM nonce (the last gcmNonceSize bytes of raw)
	raw     []byte
}

// nonceFieldSize is the size of the nonce field of a blob of version v.
func nonceFieldSize(v uint8) int {
	if v == version1 {
		return gcmNonceSize
	}
	return nonceSize
}

// appendHeader appends the header of version v for req and nonce (the
// whole nonce field: in version 2 key salt ‖ GCM nonce) to b. Seal writes
// only Version; version 1 exists here for the canonical-encoding checks.
func appendHeader(b []byte, v uint8, req KeyRequest, nonce []byte) ([]byte, error) {
	ctx := req.Context()
	if len(ctx) == 0 || len(ctx) > MaxKDFContextSize {
		return nil, fmt.Errorf("seal: kdf context: %d bytes, want 1 to %d", len(ctx), MaxKDFContextSize)
	}
	if v != version1 && v != Version {
		return nil, fmt.Errorf("seal: version %d", v)
	}
	if len(nonce) != nonceFieldSize(v) {
		return nil, fmt.Errorf("seal: nonce: %d bytes, want %d", len(nonce), nonceFieldSize(v))
	}
	b = append(b, Magic...)
	b = append(b, v, byte(req.Policy))
	b = binary.BigEndian.AppendUint16(b, uint16(len(ctx)))
	b = append(b, ctx...)
	b = append(b, nonce...)
	return b, nil
}

// parseHeader reads the header of blob and returns it with the rest (the
// ciphertext and tag). It checks format only; it does not look at the
// running identity or any key. Every read is bounds-checked and fails
// closed with ErrMalformed.
func parseHeader(blob []byte) (header, []byte, error) {
	var h header
	if len(blob) > maxBlobSize {
		return h, nil, malformed("size", "%d bytes, limit %d", len(blob), maxBlobSize)
	}
	if len(blob) < fixedPrefix {
		return h, nil, malformed("header", "%d bytes, want at least %d", len(blob), fixedPrefix)
	}
	if string(blob[:magicSize]) != Magic {
		return h, nil, malformed("magic", "got %x, want %x", blob[:magicSize], Magic)
	}
	h.version = blob[offVersion]
	if h.version != version1 && h.version != Version {
		return h, nil, malformed("version", "got %d, want %d or %d", h.version, version1, Version)
	}
	p := Policy(blob[offPolicy])
	if !p.valid() {
		return h, nil, malformed("policy", "unknown policy %d", uint8(p))
	}
	n := int(binary.BigEndian.Uint16(blob[offCtxLen:]))
	if n > MaxKDFContextSize {
		return h, nil, malformed("kdf context", "length %d, limit %d", n, MaxKDFContextSize)
	}
	end := offCtx + n + nonceFieldSize(h.version)
	if len(blob) < end+tagSize {
		return h, nil, malformed("size", "%d bytes, want at least %d for this header and the tag", len(blob), end+tagSize)
	}
	h.ctx = blob[offCtx : offCtx+n : offCtx+n]
	req, err := parseContext(p, h.ctx)
	if err != nil {
		return h, nil, err
	}
	h.req = req
	h.nonces = blob[offCtx+n : end : end]
	h.nonce = blob[end-gcmNonceSize : end : end]
	h.raw = blob[:end:end]
	return h, blob[end:], nil
}

// additionalData returns the AES-GCM additional data for a blob: the raw
// header (magic through nonce) followed by the caller label. It is the one
// place that says what GCM authenticates besides the ciphertext; Seal and
// Open both call it. The header carries its own lengths, so the
// concatenation is unambiguous without a separator.
func additionalData(rawHeader, label []byte) []byte {
	aad := make([]byte, 0, len(rawHeader)+len(label))
	aad = append(aad, rawHeader...)
	return append(aad, label...)
}

// keyBinding returns the part of the raw header the AES key is derived
// for: everything before the GCM nonce. In version 1 that is magic,
// version, policy and kdf context; in version 2 also the key salt, so
// each blob has its own key. Deriving over these bytes means a key can
// only ever serve blobs that declare this exact binding, even if a
// platform returned the same root for two different requests.
func keyBinding(rawHeader []byte) []byte {
	return rawHeader[:len(rawHeader)-gcmNonceSize]
}
