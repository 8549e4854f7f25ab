// Package ring is the pure core of the boundary's shared-memory rings: the
// frame layout and the single-producer single-consumer protocol over a byte
// view and two free-running indices.
//
// It has no I/O, no goroutines, no clock and no atomics, in the style of
// etcd raft's RawNode: the caller (boundary's driver) loads head and tail from
// shared memory once per step, hands them in, and publishes the indices this
// package returns. Every index handed in is treated as hostile: it is checked
// against the capacity fixed at New before it is used, and every byte read
// from the view is copied out before it is validated.
//
// Indices are byte counters that only grow (modulo 2^64); the position in the
// view is index & (capacity-1). The ring holds tail-head bytes, so the ring is
// empty when head == tail and full when tail-head == capacity.
package ring

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Frame layout, all little-endian: [u32 len][u32 call][u64 id][payload],
// padded to a multiple of Align. Do NOT change: both processes depend on it.
const (
	// HeaderSize is the size of a frame header in bytes.
	HeaderSize = 16
	// Align is the alignment of every frame (and so of every valid index).
	Align = 8
	// SkipLen in a header's len field marks a padding frame: the consumer
	// skips to the end of the ring. Its call and id fields must be zero.
	SkipLen = 0xFFFF_FFFF
	// MinCapacity is the smallest ring, so that one header always fits.
	MinCapacity = 64
	// MaxCapacity bounds a ring so that sizes fit comfortably in int on
	// every platform and a frame length (u32) can never exceed it by wrapping.
	MaxCapacity = 1 << 30
)

// Errors. The driver maps them to its own named errors; they are sentinels
// because the driver branches on them.
var (
	// ErrEmpty: no frame is ready (head == tail). Not a protocol error.
	ErrEmpty = errors.New("ring: empty")
	// ErrFull: the frame does not fit in the free space now. Not a protocol error.
	ErrFull = errors.New("ring: full")
	// ErrIndex: head/tail are inconsistent (misaligned, or tail-head exceeds
	// the capacity, which includes tail behind head). The other side wrote
	// garbage; nothing was read or written.
	ErrIndex = errors.New("ring: bad index")
	// ErrFrame: the frame at head is malformed (length beyond the limit, the
	// ring end or the tail; or a skip marker with non-zero fields). The ring
	// cannot be parsed past it; the driver resynchronises at tail.
	ErrFrame = errors.New("ring: malformed frame")
	// ErrTooLarge: the producer was asked to write a frame that can never
	// fit in this ring or exceeds the caller's payload limit.
	ErrTooLarge = errors.New("ring: frame too large")
)

// Header is a frame header, decoded from a private copy of the ring bytes.
type Header struct {
	Len  uint32 // payload length in bytes, excluding header and padding
	Call uint32 // call id (responses: call id, possibly with an error flag)
	ID   uint64 // correlation id chosen by the requester
}

// PutHeader encodes h into b[:HeaderSize]. b must be at least HeaderSize long.
func PutHeader(b []byte, h Header) {
	_ = b[HeaderSize-1]
	binary.LittleEndian.PutUint32(b[0:4], h.Len)
	binary.LittleEndian.PutUint32(b[4:8], h.Call)
	binary.LittleEndian.PutUint64(b[8:16], h.ID)
}

// ParseHeader decodes b[:HeaderSize]. b must be at least HeaderSize long.
func ParseHeader(b []byte) Header {
	_ = b[HeaderSize-1]
	return Header{
		Len:  binary.LittleEndian.Uint32(b[0:4]),
		Call: binary.LittleEndian.Uint32(b[4:8]),
		ID:   binary.LittleEndian.Uint64(b[8:16]),
	}
}

// FrameSize is the number of ring bytes a frame with an n-byte payload
// occupies: header plus payload rounded up to Align.
func FrameSize(n uint64) uint64 {
	return HeaderSize + (n+Align-1)&^(Align-1)
}

// Ring is a byte view with a fixed power-of-two capacity. It is a value:
// the capacity and view are fixed at New and never taken from shared memory
// again. It is not safe for concurrent use by two producers or two consumers;
// one producer and one consumer may use it at once on different goroutines or
// processes, because the producer only writes bytes in [tail, head+cap) and the
// consumer only reads bytes in [head, tail).
type Ring struct {
	buf  []byte
	size uint64
	mask uint64
}

// New returns a Ring over buf, whose length must be a power of two in
// [MinCapacity, MaxCapacity].
func New(buf []byte) (Ring, error) {
	n := uint64(len(buf))
	if n < MinCapacity || n > MaxCapacity || n&(n-1) != 0 {
		return Ring{}, fmt.Errorf("ring: capacity %d: want a power of two in [%d, %d]", n, MinCapacity, MaxCapacity)
	}
	return Ring{buf: buf[:n:n], size: n, mask: n - 1}, nil
}

// Cap returns the capacity in bytes.
func (r Ring) Cap() uint64 { return r.size }

// check validates an index pair: both aligned and 0 <= tail-head <= size.
// tail behind head shows up as a huge unsigned difference.
func (r Ring) check(head, tail uint64) bool {
	return (head|tail)&(Align-1) == 0 && tail-head <= r.size
}

// Used returns tail-head after checking the pair, or ErrIndex.
func (r Ring) Used(head, tail uint64) (uint64, error) {
	if !r.check(head, tail) {
		return 0, ErrIndex
	}
	return tail - head, nil
}

// place computes where a frame of size fs starts when appended at tail: at
// tail itself, or at the start of the ring after padding out the end.
// pad is the number of padding bytes (0 if none).
func (r Ring) place(tail, fs uint64) (pad uint64) {
	toEnd := r.size - tail&r.mask
	if fs <= toEnd {
		return 0
	}
	return toEnd
}

// Write appends one frame carrying payload at tail and returns the new tail.
// head comes from the consumer (hostile) and tail is the producer's own.
// Ordering contract for the driver: the frame bytes are written here, so the
// returned tail must be published (atomic store) only after Write returns,
// and never before.
//
// If the frame does not fit between tail and the end of the ring, the rest
// of the ring is padded (a skip marker header when at least HeaderSize bytes
// remain; fewer bytes are skipped implicitly) and the frame starts at the
// beginning, so a frame is never split.
//
// On ErrFull the returned tail may still have moved: when the padding fits
// but the frame does not, the padding alone is written, so that the consumer
// can consume it and free the start of the ring (otherwise a frame larger
// than the space on either side of an empty ring's position would wait
// forever). The driver must publish a moved tail even on ErrFull.
func (r Ring) Write(head, tail uint64, h Header, payload []byte) (uint64, error) {
	n := uint64(len(payload))
	tail, err := r.Reserve(head, tail, n)
	if err != nil {
		return tail, err
	}
	p := tail & r.mask
	fs := FrameSize(n)
	h.Len = uint32(n)
	PutHeader(r.buf[p:p+HeaderSize], h)
	copy(r.buf[p+HeaderSize:p+HeaderSize+n], payload)
	// Zero the alignment padding so no stale bytes cross the boundary.
	clear(r.buf[p+HeaderSize+n : p+fs])
	return tail + fs, nil
}

// Reserve prepares the ring for a frame with an n-byte payload at tail:
// it writes the padding needed to start the frame at the beginning of the
// ring, if any and if it fits, and returns the tail at which the frame
// starts. It returns ErrFull (with the tail after any padding written) when
// the frame does not fit now, ErrTooLarge when it never can, and ErrIndex
// for an inconsistent pair. Write uses it; a driver that checks for space
// before producing a response (without a payload yet) uses it directly and
// publishes the returned tail.
func (r Ring) Reserve(head, tail uint64, n uint64) (uint64, error) {
	if !r.check(head, tail) {
		return tail, ErrIndex
	}
	fs := FrameSize(n)
	if n >= SkipLen || fs > r.size {
		return tail, ErrTooLarge
	}
	pad := r.place(tail, fs)
	if pad > 0 {
		if tail-head+pad > r.size {
			return tail, ErrFull
		}
		if pad >= HeaderSize {
			p := tail & r.mask
			PutHeader(r.buf[p:p+HeaderSize], Header{Len: SkipLen})
		}
		tail += pad
	}
	if tail-head+fs > r.size {
		return tail, ErrFull
	}
	return tail, nil
}

// Frame is a validated frame located by Next. Its fields are derived from a
// private copy of the header and checked against the ring, so Payload may
// use them without re-checking against shared values.
type Frame struct {
	Header
	off  uint64 // payload offset in the view
	Next uint64 // head after consuming this frame
}

// Next locates the frame at head. head is the consumer's own index and tail
// comes from the producer (hostile); both are read once by the driver and
// passed in. maxPayload bounds the payload length (limits.go).
//
// The header is copied out of the view before any field is looked at, and
// every check uses the copy, so the producer changing the bytes afterwards
// cannot change what was validated. Skip markers are consumed here: the
// returned frame's Next accounts for them.
//
// Errors: ErrEmpty when no frame is ready (possibly after skipping padding;
// Frame.Next then holds the head past the padding, and the driver may
// publish it); ErrIndex for an inconsistent pair; ErrFrame for a malformed
// frame. For ErrIndex and ErrFrame nothing in the view is trusted beyond
// head, and the returned Frame is zero.
func (r Ring) Next(head, tail uint64, maxPayload uint32) (Frame, error) {
	if !r.check(head, tail) {
		return Frame{}, ErrIndex
	}
	// At most one skip: after padding, head sits at the start of the ring.
	for range 2 {
		if head == tail {
			return Frame{Next: head}, ErrEmpty
		}
		p := head & r.mask
		toEnd := r.size - p
		if toEnd < HeaderSize {
			// Too little room for a header: implicit padding.
			if tail-head < toEnd {
				return Frame{}, ErrFrame
			}
			head += toEnd
			continue
		}
		if tail-head < HeaderSize {
			return Frame{}, ErrFrame
		}
		var hb [HeaderSize]byte
		copy(hb[:], r.buf[p:p+HeaderSize]) // copy out, then validate
		h := ParseHeader(hb[:])
		if h.Len == SkipLen {
			if h.Call != 0 || h.ID != 0 || tail-head < toEnd {
				return Frame{}, ErrFrame
			}
			head += toEnd
			continue
		}
		if h.Len > maxPayload {
			return Frame{}, ErrFrame
		}
		fs := FrameSize(uint64(h.Len))
		if fs > toEnd || fs > tail-head {
			return Frame{}, ErrFrame
		}
		return Frame{Header: h, off: p + HeaderSize, Next: head + fs}, nil
	}
	// Two skips in a row cannot happen in a well-formed ring.
	return Frame{}, ErrFrame
}

// Payload copies the frame's payload into dst and returns the number of
// bytes copied, min(len(dst), f.Len). f must come from Next on this ring.
// The bounds are re-checked so that a forged Frame cannot index outside the
// view.
func (r Ring) Payload(f Frame, dst []byte) int {
	n := uint64(f.Len)
	if n > uint64(len(dst)) {
		n = uint64(len(dst))
	}
	if f.off > r.size || n > r.size-f.off {
		return 0
	}
	return copy(dst[:n], r.buf[f.off:f.off+n])
}

// Advanced reports whether cur, an index just read from the other side,
// may follow prev, the value read from it before, given that it can never
// pass limit: prev <= cur <= limit in free-running (modulo 2^64) order. A
// producer checks the consumer's head with limit = its own tail; a consumer
// checks the producer's tail with limit = its own head + capacity. An index
// that moves backwards by less than the capacity passes Used and Next's
// checks, but not this one.
func Advanced(prev, cur, limit uint64) bool {
	return cur-prev <= limit-prev
}
