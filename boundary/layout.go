package boundary

import "github.com/cloister-dev/cloister/boundary/internal/ring"

// Region layout (all offsets in bytes; little-endian; every word the two
// sides race on sits alone on a 64-byte cache line so the producer's and the
// consumer's writes never share a line). Do NOT change without bumping
// layoutVersion.
//
//	0x000  header line: magic[8] "CLSTRBND" | version u32 | channels u32 |
//	       request ring size u32 | response ring size u32 | reserved (zero)
//	0x040  server wait line: seq u32 (futex word) | waiting u32
//	0x080  channel 0 control block (5 lines):
//	         +0x000 request tail  u64  (written by the client)
//	         +0x040 request head  u64  (written by the server)
//	         +0x080 response tail u64  (written by the server)
//	         +0x0c0 response head u64  (written by the client)
//	         +0x100 client wait: seq u32 (futex word) | waiting u32
//	       +0x140 request ring data  (request ring size bytes)
//	       then   response ring data (response ring size bytes)
//	then channel 1, ... The region is rounded up to a whole page.
const (
	layoutMagic = "CLSTRBND"
	// layoutVersion 2: error responses carry typed status codes
	// (CodeWouldBlock, CodeNotFound) that the enclave branches on.
	layoutVersion = 2

	lineSize = 64

	hdrMagic    = 0
	hdrVersion  = 8
	hdrChannels = 12
	hdrReqSize  = 16
	hdrRespSize = 20
	hdrEnd      = 24 // bytes [hdrEnd, lineSize) are reserved and zero

	offServerWait = 1 * lineSize
	offChannels   = 2 * lineSize

	chReqTail  = 0 * lineSize
	chReqHead  = 1 * lineSize
	chRespTail = 2 * lineSize
	chRespHead = 3 * lineSize
	chWait     = 4 * lineSize
	chData     = 5 * lineSize

	// Within a wait line: the futex word and the "I am going to sleep" flag.
	waitSeq  = 0
	waitFlag = 4

	pageSize = 4096
)

// Server wait flag values. The client wakes the server after publishing a
// request if the flag is non-zero, and after consuming a response only if
// it is waitSpace (the server stalled on a full response ring), so an idle
// server is not woken twice per call.
const (
	waitNone  = 0
	waitIdle  = 1
	waitSpace = 2
)

// chanLayout holds one channel's offsets, computed from a validated Config
// in private memory: never read back from the region.
type chanLayout struct {
	base     int
	reqData  int
	respData int
}

// layout is the full region geometry derived from a Config.
type layout struct {
	size     int
	reqSize  int
	respSize int
	ch       []chanLayout
}

// computeLayout derives offsets from cfg, which must have passed validate.
func computeLayout(cfg Config) layout {
	l := layout{reqSize: cfg.RequestRingSize, respSize: cfg.ResponseRingSize}
	stride := chData + cfg.RequestRingSize + cfg.ResponseRingSize
	off := offChannels
	for range cfg.Channels {
		l.ch = append(l.ch, chanLayout{
			base:     off,
			reqData:  off + chData,
			respData: off + chData + cfg.RequestRingSize,
		})
		off += stride
	}
	l.size = (off + pageSize - 1) &^ (pageSize - 1)
	return l
}

// frameSize is the ring bytes needed for an n-byte payload.
func frameSize(n int) int { return int(ring.FrameSize(uint64(n))) }
