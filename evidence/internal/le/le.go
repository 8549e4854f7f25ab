// Package le is a fail-closed cursor over little-endian binary layouts, in
// the idiom of golang.org/x/crypto/cryptobyte (which reads big-endian only):
// every read returns false instead of running past the end, and the caller
// checks Empty to reject trailing bytes.
package le

import "encoding/binary"

// Reader reads from a byte slice. The zero value is an empty reader.
type Reader struct {
	b   []byte
	off int
}

// New returns a Reader over b. It does not copy b.
func New(b []byte) *Reader { return &Reader{b: b} }

// Offset returns how many bytes have been read.
func (r *Reader) Offset() int { return r.off }

// Len returns how many bytes are left.
func (r *Reader) Len() int { return len(r.b) - r.off }

// Empty reports whether every byte has been read.
func (r *Reader) Empty() bool { return r.off == len(r.b) }

// Bytes sets *out to the next n bytes (a sub-slice, not a copy).
func (r *Reader) Bytes(out *[]byte, n int) bool {
	if n < 0 || n > r.Len() {
		return false
	}
	*out = r.b[r.off : r.off+n : r.off+n]
	r.off += n
	return true
}

// Copy copies the next len(out) bytes into out.
func (r *Reader) Copy(out []byte) bool {
	if len(out) > r.Len() {
		return false
	}
	copy(out, r.b[r.off:])
	r.off += len(out)
	return true
}

// U16 reads a little-endian uint16.
func (r *Reader) U16(out *uint16) bool {
	if r.Len() < 2 {
		return false
	}
	*out = binary.LittleEndian.Uint16(r.b[r.off:])
	r.off += 2
	return true
}

// U32 reads a little-endian uint32.
func (r *Reader) U32(out *uint32) bool {
	if r.Len() < 4 {
		return false
	}
	*out = binary.LittleEndian.Uint32(r.b[r.off:])
	r.off += 4
	return true
}

// U64 reads a little-endian uint64.
func (r *Reader) U64(out *uint64) bool {
	if r.Len() < 8 {
		return false
	}
	*out = binary.LittleEndian.Uint64(r.b[r.off:])
	r.off += 8
	return true
}
