package ledger

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"io"
)

// Segment layout on the host (one host record per segment, key
// SegmentKey(n)):
//
//	magic "CLG1" | segno u64 BE | nonce [12] | AES-256-GCM ciphertext+tag
//
// The AAD is magic ‖ segno, so a segment stored under another number, or
// edited, does not authenticate. The plaintext is
//
//	prev [32] | firstSeqno u64 | count u32 | count × (kind u8 | len u32 | body)
//
// where prev is the SHA-256 of the previous segment's whole host value
// (zeros for segment 0), which chains the segments: a segment from another
// history (a fork the host kept) does not continue the chain.
const (
	segMagic     = "CLG1"
	segHeader    = 4 + 8 + 12
	segTag       = 16
	segPlainHead = 32 + 8 + 4
)

// segPrefix is the host key prefix of segments; segment n is
// segPrefix ‖ n (u64 big-endian), so keys sort in segment order.
const segPrefix = "ledger/seg/"

// SegmentKey is the host key of segment n.
func SegmentKey(n uint64) []byte {
	return binary.BigEndian.AppendUint64([]byte(segPrefix), n)
}

// segment is a decoded segment.
type segment struct {
	n       uint64
	prev    [32]byte
	records []Record
}

func newAEAD(key []byte) (cipher.AEAD, error) {
	b, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("ledger: storage key: %w", err)
	}
	return cipher.NewGCM(b)
}

// encodeSegment encodes and encrypts a segment; the caller chains it with
// prev. rnd supplies the nonce.
func encodeSegment(aead cipher.AEAD, rnd io.Reader, n uint64, prev [32]byte, recs []Record) ([]byte, error) {
	if len(recs) == 0 {
		return nil, fmt.Errorf("ledger: storage: empty segment")
	}
	pt := make([]byte, 0, segPlainHead+64*len(recs))
	pt = append(pt, prev[:]...)
	pt = binary.BigEndian.AppendUint64(pt, recs[0].Seqno)
	pt = binary.BigEndian.AppendUint32(pt, uint32(len(recs)))
	for i := range recs {
		if recs[i].Seqno != recs[0].Seqno+uint64(i) {
			return nil, fmt.Errorf("ledger: storage: segment seqnos not contiguous at %d", recs[i].Seqno)
		}
		pt = append(pt, byte(recs[i].Kind))
		lenAt := len(pt)
		pt = append(pt, 0, 0, 0, 0)
		pt = recs[i].appendBody(pt)
		binary.BigEndian.PutUint32(pt[lenAt:], uint32(len(pt)-lenAt-4))
	}
	if len(pt) > MaxSegmentPlaintext {
		return nil, fmt.Errorf("ledger: storage: segment of %d bytes exceeds %d", len(pt), MaxSegmentPlaintext)
	}
	out := make([]byte, segHeader, segHeader+len(pt)+segTag)
	copy(out, segMagic)
	binary.BigEndian.PutUint64(out[4:], n)
	if _, err := io.ReadFull(rnd, out[12:24]); err != nil {
		return nil, fmt.Errorf("ledger: storage: nonce: %w", err)
	}
	return aead.Seal(out, out[12:24], pt, out[:12]), nil
}

// decodeSegment authenticates and decodes the host value stored as segment
// n. It checks the format only: the chain and the seqnos are the caller's.
func decodeSegment(aead cipher.AEAD, n uint64, v []byte) (segment, error) {
	if len(v) < segHeader+segTag || string(v[:4]) != segMagic {
		return segment{}, fmt.Errorf("%w: segment %d: %d bytes, not a segment", ErrSegmentTorn, n, len(v))
	}
	if got := binary.BigEndian.Uint64(v[4:]); got != n {
		return segment{}, fmt.Errorf("%w: segment %d says it is segment %d (moved or replayed)", ErrSegmentAuth, n, got)
	}
	if len(v)-segHeader-segTag > MaxSegmentPlaintext {
		return segment{}, fmt.Errorf("%w: segment %d: %d bytes exceed the cap", ErrSegmentTorn, n, len(v))
	}
	pt, err := aead.Open(nil, v[12:24], v[segHeader:], v[:12])
	if err != nil {
		return segment{}, fmt.Errorf("%w: segment %d: edited, truncated or from another key", ErrSegmentAuth, n)
	}
	s, err := decodePlain(n, pt)
	if err != nil {
		return segment{}, fmt.Errorf("%w: segment %d: %v", ErrSegmentFormat, n, err)
	}
	return s, nil
}

// decodePlain decodes a segment's plaintext, failing closed.
func decodePlain(n uint64, pt []byte) (segment, error) {
	r := &reader{b: pt}
	s := segment{n: n}
	prev, ok := r.bytes(32)
	var first uint64
	var count uint32
	if !ok || !r.u64(&first) || !r.u32(&count) {
		return segment{}, fmt.Errorf("header truncated")
	}
	s.prev = [32]byte(prev)
	if first == 0 || count == 0 {
		return segment{}, fmt.Errorf("first seqno %d, count %d", first, count)
	}
	// Each record takes at least 5 bytes: count is bounded by the size.
	if uint64(count) > uint64(len(pt))/5 {
		return segment{}, fmt.Errorf("count %d exceeds what %d bytes hold", count, len(pt))
	}
	s.records = make([]Record, 0, count)
	for i := uint32(0); i < count; i++ {
		var k uint8
		var l uint32
		if !r.u8(&k) || !r.u32(&l) {
			return segment{}, fmt.Errorf("record %d: header truncated", i)
		}
		body, ok := r.bytes(int(l))
		if !ok {
			return segment{}, fmt.Errorf("record %d: body truncated", i)
		}
		rec, err := decodeBody(Kind(k), first+uint64(i), body)
		if err != nil {
			return segment{}, err
		}
		s.records = append(s.records, rec)
	}
	if !r.empty() {
		return segment{}, fmt.Errorf("%d trailing bytes", len(pt)-r.off)
	}
	return s, nil
}

// chainDigest is what the next segment's prev holds.
func chainDigest(v []byte) [32]byte { return sha256.Sum256(v) }
