package akv

import (
	"crypto/aes"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"fmt"
)

// AES key wrap with padding, RFC 5649. Neither the standard library nor
// golang.org/x/crypto has it; tink-go's (kwp/subtle) takes only 128- and
// 256-bit KEKs, so the RFC's own vectors (192-bit KEK) could not check it.
// This one follows the RFC step for step and is tested with both of the
// RFC's vectors (kwp_test.go) and, end to end, by OpenSSL's
// id-aes256-wrap-pad in the Node interop test.

// kwpAIVHigh is the RFC 5649 alternative initial value's constant half.
const kwpAIVHigh = 0xA65959A6

// maxKWP caps the key data: far above any private key, below the RFC's
// 2^32-byte limit.
const maxKWP = 1 << 20

var errKWP = errors.New("aes-kwp: integrity check failed")

// kwpWrap wraps key data p (1 to maxKWP bytes) under kek (16, 24 or 32
// bytes).
func kwpWrap(kek, p []byte) ([]byte, error) {
	if len(p) == 0 || len(p) > maxKWP {
		return nil, fmt.Errorf("aes-kwp: %d bytes of key data, want 1 to %d", len(p), maxKWP)
	}
	b, err := aes.NewCipher(kek)
	if err != nil {
		return nil, fmt.Errorf("aes-kwp: %w", err)
	}
	n := (len(p) + 7) / 8 // 64-bit blocks after padding
	out := make([]byte, 8+8*n)
	binary.BigEndian.PutUint32(out[0:4], kwpAIVHigh)
	binary.BigEndian.PutUint32(out[4:8], uint32(len(p)))
	copy(out[8:], p) // zero padding: out is zeroed
	var blk [16]byte
	if n == 1 {
		// One block: a single AES encryption of AIV ‖ P (RFC 5649 §4.1).
		b.Encrypt(out, out)
		return out, nil
	}
	// The RFC 3394 wrapping process W with the AIV (§2.2.1 there).
	a := out[0:8]
	for j := range 6 {
		for i := 1; i <= n; i++ {
			r := out[8*i : 8*i+8]
			copy(blk[:8], a)
			copy(blk[8:], r)
			b.Encrypt(blk[:], blk[:])
			t := uint64(n*j + i)
			binary.BigEndian.PutUint64(a, binary.BigEndian.Uint64(blk[:8])^t)
			copy(r, blk[8:])
		}
	}
	return out, nil
}

// kwpUnwrap reverses kwpWrap and checks the AIV, the length and the
// zero padding, in constant time over their values.
func kwpUnwrap(kek, c []byte) ([]byte, error) {
	if len(c) < 16 || len(c)%8 != 0 || len(c) > maxKWP+16 {
		return nil, fmt.Errorf("aes-kwp: %d bytes of wrapped data, want a multiple of 8 from 16", len(c))
	}
	b, err := aes.NewCipher(kek)
	if err != nil {
		return nil, fmt.Errorf("aes-kwp: %w", err)
	}
	n := len(c)/8 - 1
	out := make([]byte, len(c))
	copy(out, c)
	var blk [16]byte
	if n == 1 {
		b.Decrypt(out, out)
	} else {
		a := out[0:8]
		for j := 5; j >= 0; j-- {
			for i := n; i >= 1; i-- {
				r := out[8*i : 8*i+8]
				t := uint64(n*j + i)
				binary.BigEndian.PutUint64(blk[:8], binary.BigEndian.Uint64(a)^t)
				copy(blk[8:], r)
				b.Decrypt(blk[:], blk[:])
				copy(a, blk[:8])
				copy(r, blk[8:])
			}
		}
	}
	mli := binary.BigEndian.Uint32(out[4:8])
	ok := subtle.ConstantTimeEq(int32(binary.BigEndian.Uint32(out[0:4])^kwpAIVHigh), 0)
	// MLI must be within the last block: 8(n-1) < MLI <= 8n.
	inRange := mli > uint32(8*(n-1)) && mli <= uint32(8*n)
	if !inRange {
		ok = 0
		mli = uint32(8 * n)
	}
	var pad byte
	for _, x := range out[8+mli:] {
		pad |= x
	}
	ok &= subtle.ConstantTimeByteEq(pad, 0)
	if ok != 1 {
		clear(out)
		return nil, errKWP
	}
	return out[8 : 8+mli], nil
}
