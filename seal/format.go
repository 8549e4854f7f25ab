package seal

import (
	"encoding/binary"
	"fmt"
)

// Blob layout, version 1. Every offset past the kdf context depends on its
// length, so only the fixed prefix has constant offsets.
const (
	// Magic opens every blob, so a store can tell a sealed record from
	// anything else at a glance.
	Magic = "CLS1"

	// Version is the blob format this package writes. Open accepts exactly
	// the versions listed in parseHeader; Do NOT change the meaning of a
	// version once released.
	Version = 1

	magicSize   = len(Magic)
	offVersion  = magicSize      // u8
	offPolicy   = offVersion + 1 // u8
	offCtxLen   = offPolicy + 1  // u16 big-endian
	offCtx      = offCtxLen + 2  // kdf context, then nonce
	fixedPrefix = offCtx

	// nonceSize is the AES-GCM nonce stored in each blob: the GCM standard size.
	nonceSize = 12

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
	nonce   []byte
	raw     []byte
}

// appendHeader appends the version-1 header for req and nonce to b.
func appendHeader(b []byte, req KeyRequest, nonce []byte) ([]byte, error) {
	ctx := req.Context()
	if len(ctx) == 0 || len(ctx) > MaxKDFContextSize {
		return nil, fmt.Errorf("seal: kdf context: %d bytes, want 1 to %d", len(ctx), MaxKDFContextSize)
	}
	if len(nonce) != nonceSize {
		return nil, fmt.Errorf("seal: nonce: %d bytes, want %d", len(nonce), nonceSize)
	}
	b = append(b, Magic...)
	b = append(b, Version, byte(req.Policy))
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
	if h.version != Version {
		return h, nil, malformed("version", "got %d, want %d", h.version, Version)
	}
	p := Policy(blob[offPolicy])
	if !p.valid() {
		return h, nil, malformed("policy", "unknown policy %d", uint8(p))
	}
	n := int(binary.BigEndian.Uint16(blob[offCtxLen:]))
	if n > MaxKDFContextSize {
		return h, nil, malformed("kdf context", "length %d, limit %d", n, MaxKDFContextSize)
	}
	end := offCtx + n + nonceSize
	if len(blob) < end+tagSize {
		return h, nil, malformed("size", "%d bytes, want at least %d for this header and the tag", len(blob), end+tagSize)
	}
	h.ctx = blob[offCtx : offCtx+n : offCtx+n]
	req, err := parseContext(p, h.ctx)
	if err != nil {
		return h, nil, err
	}
	h.req = req
	h.nonce = blob[offCtx+n : end : end]
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
// for: magic, version, policy and kdf context, without the nonce. Deriving
// over these bytes means a key can only ever serve blobs that declare this
// exact binding, even if a platform returned the same root for two
// different requests.
func keyBinding(rawHeader []byte) []byte {
	return rawHeader[:len(rawHeader)-nonceSize]
}
