// Package boundarytest has hostile hosts for the tests of code built on
// package boundary (the enclave SDK), in the style of httptest: each maps
// the region from its file alone, as a real host process would, and
// misbehaves in one of the ways a liveness test needs (never answering,
// taking requests and stalling, streaming junk frames).
//
// It speaks the region layout documented in boundary/layout.go; the frame
// format comes from boundary/internal/ring.
package boundarytest

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/cloister-dev/cloister/boundary"
	"github.com/cloister-dev/cloister/boundary/internal/ring"
)

// Offsets of boundary/layout.go (layout version 2).
const (
	lineSize      = 64
	offServerWait = 1 * lineSize
	offChannels   = 2 * lineSize
	chReqTail     = 0 * lineSize
	chReqHead     = 1 * lineSize
	chRespTail    = 2 * lineSize
	chRespHead    = 3 * lineSize
	chWait        = 4 * lineSize
	chData        = 5 * lineSize
	junkCallID    = 0x7FFF_FFF0
	junkPayload   = 8
	pollInterval  = time.Millisecond
	junkFirstID   = 1 << 62
	junkIDsPerRun = 1 << 40
)

// Host is a hostile host over one region. Start at most one behaviour
// (Stall, Junk or Mutate) at a time; Stop ends it. A Host that is only mapped and
// never started is the host that never answers.
type Host struct {
	mem  []byte
	cfg  boundary.Config
	stop chan struct{}
	wg   sync.WaitGroup
}

// Map maps the region in f, whose geometry is cfg (the host's validated
// Config, boundary.Region.Config). It does not keep f.
func Map(f *os.File, cfg boundary.Config) (*Host, error) {
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("boundarytest: %w", err)
	}
	mem, err := unix.Mmap(int(f.Fd()), 0, int(st.Size()), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("boundarytest: mmap: %w", err)
	}
	return &Host{mem: mem, cfg: cfg}, nil
}

// Close stops any behaviour and unmaps the region.
func (h *Host) Close() error {
	h.Stop()
	return unix.Munmap(h.mem)
}

// Stop ends the running behaviour, if any, and waits for it.
func (h *Host) Stop() {
	if h.stop != nil {
		close(h.stop)
		h.wg.Wait()
		h.stop = nil
	}
}

type channel struct {
	base         int
	req, resp    ring.Ring
	reqTailW     *uint64
	reqHeadW     *uint64
	respTailW    *uint64
	respHeadW    *uint64
	waitSeq      *uint32
	reqSz, rspSz int
}

func (h *Host) channels() []channel {
	stride := chData + h.cfg.RequestRingSize + h.cfg.ResponseRingSize
	var chans []channel
	for i := range h.cfg.Channels {
		base := offChannels + i*stride
		req, _ := ring.New(h.mem[base+chData : base+chData+h.cfg.RequestRingSize])
		resp, _ := ring.New(h.mem[base+chData+h.cfg.RequestRingSize : base+stride])
		chans = append(chans, channel{
			base: base, req: req, resp: resp,
			reqTailW:  h.u64(base + chReqTail),
			reqHeadW:  h.u64(base + chReqHead),
			respTailW: h.u64(base + chRespTail),
			respHeadW: h.u64(base + chRespHead),
			waitSeq:   (*uint32)(unsafe.Pointer(&h.mem[base+chWait])),
		})
	}
	return chans
}

func (h *Host) u64(off int) *uint64 { return (*uint64)(unsafe.Pointer(&h.mem[off])) }

func (h *Host) start(f func(ch channel, i int)) {
	h.Stop()
	h.stop = make(chan struct{})
	for i, ch := range h.channels() {
		h.wg.Go(func() { f(ch, i) })
	}
}

func (h *Host) stopped() bool {
	select {
	case <-h.stop:
		return true
	default:
		return false
	}
}

// Stall takes every request on every channel (its request head moves, as
// if a handler were working on it) and never answers.
func (h *Host) Stall() {
	h.start(func(ch channel, _ int) {
		head := atomic.LoadUint64(ch.reqHeadW)
		for !h.stopped() {
			for {
				f, err := ch.req.Next(head, atomic.LoadUint64(ch.reqTailW), boundary.MaxFramePayload)
				if err == ring.ErrEmpty {
					head = f.Next
				}
				if err != nil {
					break
				}
				head = f.Next
			}
			atomic.StoreUint64(ch.reqHeadW, head)
			time.Sleep(pollInterval)
		}
	})
}

// Junk streams well-formed response frames carrying correlation ids the
// enclave never issued into every channel's response ring, as fast as the
// enclave frees space, and takes no request.
func (h *Host) Junk() {
	h.start(func(ch channel, i int) {
		tail := atomic.LoadUint64(ch.respTailW)
		id := uint64(junkFirstID + i*junkIDsPerRun)
		var payload [junkPayload]byte
		for !h.stopped() {
			next, err := ch.resp.Write(atomic.LoadUint64(ch.respHeadW), tail, ring.Header{Call: junkCallID, ID: id}, payload[:])
			if next != tail {
				tail = next
				atomic.StoreUint64(ch.respTailW, tail)
				atomic.AddUint32(ch.waitSeq, 1)
				unix.Syscall6(unix.SYS_FUTEX, uintptr(unsafe.Pointer(ch.waitSeq)), 1, 1<<31-1, 0, 0, 0)
			}
			if err != nil {
				runtime.Gosched()
			}
			id++
		}
	})
}

// Mutate scribbles on the region from one goroutine, concurrently with
// whoever else uses it (a real server, the enclave): every index of every
// channel (garbage, or a plausible value near the current one), the wait
// words and flags of both sides, the frame header at the enclave's
// response head, and any ring byte. seed fixes the sequence. It pauses
// briefly every 64 writes so the others run.
func (h *Host) Mutate(seed uint64) {
	h.Stop()
	h.stop = make(chan struct{})
	chans := h.channels()
	h.wg.Go(func() {
		rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
		var b [8]byte
		for n := 0; !h.stopped(); n++ {
			ch := chans[rng.IntN(len(chans))]
			reqData := ch.base + chData
			respData := reqData + h.cfg.RequestRingSize
			switch rng.IntN(4) {
			case 0:
				w := []*uint64{ch.reqTailW, ch.reqHeadW, ch.respTailW, ch.respHeadW}[rng.IntN(4)]
				v := rng.Uint64()
				if rng.IntN(2) == 0 {
					v = atomic.LoadUint64(w) + uint64(rng.IntN(129)-64)&^7
				}
				atomic.StoreUint64(w, v)
			case 1:
				off := []int{offServerWait, ch.base + chWait}[rng.IntN(2)] + 4*rng.IntN(2)
				atomic.StoreUint32((*uint32)(unsafe.Pointer(&h.mem[off])), rng.Uint32())
			case 2:
				head := atomic.LoadUint64(ch.respHeadW)
				binary.LittleEndian.PutUint64(b[:], rng.Uint64())
				copy(h.mem[respData+int(head%uint64(h.cfg.ResponseRingSize))&^7:], b[:])
			default:
				base, size := reqData, h.cfg.RequestRingSize
				if rng.IntN(2) == 0 {
					base, size = respData, h.cfg.ResponseRingSize
				}
				h.mem[base+rng.IntN(size)] = byte(rng.Uint32())
			}
			if n%64 == 0 {
				time.Sleep(50 * time.Microsecond)
			}
		}
	})
}
