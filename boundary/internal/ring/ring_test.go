package ring

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"
)

// TestFrameGolden freezes the frame layout: [u32 len][u32 call][u64 id]
// [payload] little-endian, padded with zeros to 8 bytes.
func TestFrameGolden(t *testing.T) {
	buf := make([]byte, 64)
	for i := range buf {
		buf[i] = 0xEE // the padding must be zeroed by Write
	}
	r, err := New(buf)
	if err != nil {
		t.Fatal(err)
	}
	tail, err := r.Write(0, 0, Header{Call: 0x0102_0304, ID: 0x1122_3344_5566_7788}, []byte("hello"))
	if err != nil {
		t.Fatal(err)
	}
	want := []byte{
		0x05, 0x00, 0x00, 0x00, // len = 5
		0x04, 0x03, 0x02, 0x01, // call = 0x01020304
		0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11, // id
		'h', 'e', 'l', 'l', 'o', // payload
		0x00, 0x00, 0x00, // padding to 8
	}
	if tail != uint64(len(want)) {
		t.Fatalf("tail = %d, want %d", tail, len(want))
	}
	if !bytes.Equal(buf[:len(want)], want) {
		t.Fatalf("frame bytes\n got %x\nwant %x", buf[:len(want)], want)
	}
	// A skip marker: len 0xFFFFFFFF, call 0, id 0.
	var skip [HeaderSize]byte
	PutHeader(skip[:], Header{Len: SkipLen})
	wantSkip := []byte{0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}
	if !bytes.Equal(skip[:], wantSkip) {
		t.Fatalf("skip marker %x, want %x", skip, wantSkip)
	}
}

func TestFrameSize(t *testing.T) {
	for _, c := range []struct{ n, want uint64 }{{0, 16}, {1, 24}, {8, 24}, {9, 32}, {64, 80}} {
		if got := FrameSize(c.n); got != c.want {
			t.Errorf("FrameSize(%d) = %d, want %d", c.n, got, c.want)
		}
	}
}

func TestNewRejectsBadCapacity(t *testing.T) {
	for _, n := range []int{0, 8, 32, 96, 1000} {
		if _, err := New(make([]byte, n)); err == nil {
			t.Errorf("New(%d bytes) succeeded", n)
		}
	}
}

// TestProtocol drives a producer and a consumer through scripted states.
func TestProtocol(t *testing.T) {
	type step struct {
		name       string
		head, tail uint64 // state before the write
		payload    int
		wantTail   uint64
		wantErr    error
		wantSkip   bool // a skip marker header at the old tail
	}
	steps := []step{
		{name: "empty ring", head: 0, tail: 0, payload: 10, wantTail: 32},
		{name: "exactly fills", head: 0, tail: 0, payload: 48, wantTail: 64},
		{name: "full ring", head: 0, tail: 64, payload: 0, wantErr: ErrFull},
		{name: "not enough room after padding", head: 0, tail: 40, payload: 16, wantErr: ErrFull, wantTail: 64, wantSkip: true},
		{name: "not enough room, no padding", head: 40, tail: 80, payload: 16, wantErr: ErrFull},
		{name: "wrap with skip marker", head: 48, tail: 48, payload: 8, wantTail: 64 + 24, wantSkip: true},
		{name: "empty ring, frame fits neither side: padding alone", head: 32, tail: 32, payload: 24, wantErr: ErrFull, wantTail: 64, wantSkip: true},
		{name: "after the padding is consumed it fits", head: 64, tail: 64, payload: 24, wantTail: 104},
		{name: "wrap implicit skip (8 bytes left)", head: 56, tail: 56, payload: 0, wantTail: 64 + 16},
		{name: "wrap but consumer too slow", head: 8, tail: 40, payload: 24, wantErr: ErrFull, wantTail: 64, wantSkip: true},
		{name: "padding itself does not fit", head: 40, tail: 80, payload: 40, wantErr: ErrFull},
		{name: "fits at end exactly", head: 32, tail: 48, payload: 0, wantTail: 64},
		{name: "frame larger than ring", head: 0, tail: 0, payload: 64, wantErr: ErrTooLarge},
		{name: "misaligned head", head: 3, tail: 8, payload: 0, wantErr: ErrIndex},
		{name: "tail-head beyond capacity", head: 0, tail: 72, payload: 0, wantErr: ErrIndex},
		{name: "tail behind head", head: 16, tail: 8, payload: 0, wantErr: ErrIndex},
		{name: "large indices wrap 2^64", head: 1<<64 - 16, tail: 1<<64 - 16, payload: 0, wantTail: 0},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			buf := make([]byte, 64)
			r, _ := New(buf)
			payload := bytes.Repeat([]byte{0xAB}, s.payload)
			tail, err := r.Write(s.head, s.tail, Header{Call: 7, ID: 9}, payload)
			if !errors.Is(err, s.wantErr) {
				t.Fatalf("Write err = %v, want %v", err, s.wantErr)
			}
			if s.wantTail == 0 && err != nil {
				s.wantTail = s.tail
			}
			if tail != s.wantTail {
				t.Fatalf("tail = %d, want %d", tail, s.wantTail)
			}
			if s.wantSkip {
				h := ParseHeader(buf[s.tail&63:])
				if h != (Header{Len: SkipLen}) {
					t.Fatalf("no skip marker at %d: %+v", s.tail&63, h)
				}
			}
			if err != nil {
				return
			}
			// The consumer must read exactly the frame back.
			f, err := r.Next(s.tail, tail, 1<<20)
			if err != nil {
				t.Fatalf("Next: %v", err)
			}
			if f.Call != 7 || f.ID != 9 || int(f.Len) != s.payload || f.Next != tail {
				t.Fatalf("frame %+v, want call 7 id 9 len %d next %d", f, s.payload, tail)
			}
			got := make([]byte, f.Len)
			if n := r.Payload(f, got); n != s.payload || !bytes.Equal(got, payload) {
				t.Fatalf("payload %x", got)
			}
			if _, err := r.Next(f.Next, tail, 1<<20); err != ErrEmpty {
				t.Fatalf("after the frame: %v, want ErrEmpty", err)
			}
		})
	}
}

// TestNextRejects writes hostile frames straight into the bytes.
func TestNextRejects(t *testing.T) {
	put := func(buf []byte, off int, l, call uint32, id uint64) {
		binary.LittleEndian.PutUint32(buf[off:], l)
		binary.LittleEndian.PutUint32(buf[off+4:], call)
		binary.LittleEndian.PutUint64(buf[off+8:], id)
	}
	cases := []struct {
		name       string
		setup      func(buf []byte)
		head, tail uint64
		max        uint32
		want       error
	}{
		{"empty", func([]byte) {}, 8, 8, 100, ErrEmpty},
		{"len beyond limit", func(b []byte) { put(b, 0, 40, 1, 1) }, 0, 56, 32, ErrFrame},
		{"len beyond ring end", func(b []byte) { put(b, 32, 40, 1, 1) }, 32, 96, 1000, ErrFrame},
		{"len beyond tail", func(b []byte) { put(b, 0, 24, 1, 1) }, 0, 24, 1000, ErrFrame},
		{"len huge", func(b []byte) { put(b, 0, 0xFFFF_FFF0, 1, 1) }, 0, 64, 1 << 31, ErrFrame},
		{"header beyond tail", func(b []byte) { put(b, 0, 0, 1, 1) }, 0, 8, 1000, ErrFrame},
		{"skip with id", func(b []byte) { put(b, 32, SkipLen, 0, 5) }, 32, 80, 1000, ErrFrame},
		{"skip beyond tail", func(b []byte) { put(b, 32, SkipLen, 0, 0) }, 32, 48, 1000, ErrFrame},
		{"implicit skip beyond tail", func([]byte) {}, 56, 56 + 8, 1000, ErrEmpty},
		{"skip then empty", func(b []byte) { put(b, 32, SkipLen, 0, 0) }, 32, 64, 1000, ErrEmpty},
		{"skip then skip", func(b []byte) { put(b, 32, SkipLen, 0, 0); put(b, 0, SkipLen, 0, 0) }, 32, 96, 1000, ErrFrame},
		{"misaligned tail", func([]byte) {}, 0, 12, 1000, ErrIndex},
		{"tail far ahead", func([]byte) {}, 0, 1 << 40, 1000, ErrIndex},
		{"tail behind head", func([]byte) {}, 64, 0, 1000, ErrIndex},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			buf := make([]byte, 64)
			c.setup(buf)
			r, _ := New(buf)
			f, err := r.Next(c.head, c.tail, c.max)
			if err != c.want {
				t.Fatalf("Next = %+v, %v; want %v", f, err, c.want)
			}
		})
	}
}

// TestImplicitSkipNeedsTail: an 8-byte remainder is skipped only if the
// producer published past it.
func TestImplicitSkip(t *testing.T) {
	buf := make([]byte, 64)
	r, _ := New(buf)
	tail, err := r.Write(56, 56, Header{Call: 1, ID: 2}, []byte{1, 2, 3})
	if err != nil {
		t.Fatal(err)
	}
	f, err := r.Next(56, tail, 100)
	if err != nil || f.ID != 2 || f.Next != tail {
		t.Fatalf("Next = %+v, %v", f, err)
	}
	// Padding only (8 bytes) published: empty, but head may move past it.
	f, err = r.Next(56, 64, 100)
	if err != ErrEmpty || f.Next != 64 {
		t.Fatalf("Next over padding = %+v, %v; want ErrEmpty at 64", f, err)
	}
}

// TestPayloadForgedFrame: Payload never reads outside the view even for a
// Frame that did not come from Next.
func TestPayloadForgedFrame(t *testing.T) {
	r, _ := New(make([]byte, 64))
	dst := make([]byte, 100)
	for _, f := range []Frame{{Header: Header{Len: 100}, off: 60}, {Header: Header{Len: 8}, off: 1 << 62}} {
		if n := r.Payload(f, dst); n != 0 {
			t.Errorf("Payload(%+v) = %d, want 0", f, n)
		}
	}
}

// FuzzNext feeds arbitrary ring bytes and indices to the consumer. It must
// never panic or index outside the view, and every frame it accepts must lie
// within [head, tail) and within the limit.
func FuzzNext(f *testing.F) {
	seed := make([]byte, 64)
	r, _ := New(seed)
	t1, _ := r.Write(0, 0, Header{Call: 1, ID: 1}, []byte("abc"))
	f.Add(bytes.Clone(seed), uint64(0), t1, uint32(100))
	t2, _ := r.Write(40, 40, Header{Call: 2, ID: 2}, []byte("0123456789"))
	f.Add(bytes.Clone(seed), uint64(40), t2, uint32(100))
	f.Add(make([]byte, 128), uint64(1<<64-8), uint64(8), uint32(1<<20))
	f.Add([]byte{}, uint64(0), uint64(0), uint32(0))
	f.Fuzz(func(t *testing.T, data []byte, head, tail uint64, max uint32) {
		// Round the fuzzed bytes to a valid capacity, as Attach would.
		n := MinCapacity
		for n*2 <= len(data) && n < 1<<16 {
			n *= 2
		}
		buf := make([]byte, n)
		copy(buf, data)
		r, err := New(buf)
		if err != nil {
			t.Fatal(err)
		}
		dst := make([]byte, 1<<16)
		for range 8 { // walk a few frames
			f, err := r.Next(head, tail, max)
			if err != nil {
				if err == ErrEmpty && (f.Next-head > tail-head) {
					t.Fatalf("padding skip beyond tail: head %d next %d tail %d", head, f.Next, tail)
				}
				return
			}
			if f.Len > max || f.Next-head > tail-head || f.Next <= head && f.Next-head == 0 {
				t.Fatalf("accepted frame outside bounds: %+v head %d tail %d max %d", f, head, tail, max)
			}
			if got := r.Payload(f, dst); got != int(min(f.Len, uint32(len(dst)))) {
				t.Fatalf("Payload copied %d of %d", got, f.Len)
			}
			head = f.Next
		}
	})
}

func TestAdvanced(t *testing.T) {
	for _, c := range []struct {
		prev, cur, limit uint64
		want             bool
	}{
		{0, 0, 0, true},
		{0, 8, 16, true},
		{8, 16, 16, true},
		{8, 0, 16, false},        // backwards
		{8, 24, 16, false},       // beyond the limit
		{1<<64 - 8, 8, 16, true}, // across 2^64
		{16, 1<<64 - 8, 32, false},
	} {
		if got := Advanced(c.prev, c.cur, c.limit); got != c.want {
			t.Errorf("Advanced(%d, %d, %d) = %v, want %v", c.prev, c.cur, c.limit, got, c.want)
		}
	}
}
