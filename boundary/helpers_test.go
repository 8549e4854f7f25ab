package boundary

import (
	"context"
	"errors"
	"runtime"
	"sync/atomic"
	"testing"

	"github.com/cloister-dev/cloister/boundary/internal/ring"
)

// Test calls: an app table in the style an application would declare.
const (
	callEcho    = AppCallBase + 1 // echoes the request
	callSmall   = AppCallBase + 2 // response bound 16 bytes
	callFail    = AppCallBase + 3 // the handler fails
	callMissing = AppCallBase + 4 // declared by the client only
	callBig     = AppCallBase + 5 // client bound larger than the server's
)

var testCalls = []CallSpec{
	{ID: callEcho, Name: "test.echo", Request: "bytes", Response: "bytes", MaxRequest: 1024, MaxResponse: 1024},
	{ID: callSmall, Name: "test.small", Request: "bytes", Response: "bytes", MaxRequest: 64, MaxResponse: 16},
	{ID: callFail, Name: "test.fail", Request: "empty", Response: "empty", MaxRequest: 0, MaxResponse: 0},
}

// smallCfg has 4 KiB rings so wrap-around happens every few calls.
var smallCfg = Config{Channels: 1, RequestRingSize: MinRingSize, ResponseRingSize: MinRingSize}

func mustTable(t testing.TB, specs ...CallSpec) *Table {
	t.Helper()
	tb, err := NewTable(specs...)
	if err != nil {
		t.Fatal(err)
	}
	return tb
}

// clientTable declares two calls the server does not (or not the same way).
func clientTable(t testing.TB) *Table {
	return mustTable(t, append(testCalls[:3:3],
		CallSpec{ID: callMissing, Name: "test.missing", MaxRequest: 8, MaxResponse: 8},
		CallSpec{ID: callBig, Name: "test.big", MaxRequest: 512, MaxResponse: 8})...)
}

func serverTable(t testing.TB) *Table {
	return mustTable(t, append(testCalls[:3:3],
		CallSpec{ID: callBig, Name: "test.big", MaxRequest: 64, MaxResponse: 8})...)
}

var errTestHandler = errors.New("test handler failure")

func echoHandler(call uint32, req, resp []byte) (int, error) {
	switch call {
	case callFail:
		return 0, errTestHandler
	case callSmall:
		return copy(resp, req), nil // truncated to the 16-byte bound
	}
	return copy(resp, req), nil
}

func newRegion(t testing.TB, cfg Config) *Region {
	t.Helper()
	r, err := Create(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// startServer runs a Server on r until the test ends.
func startServer(t testing.TB, r *Region, tb *Table, h Handler) *Server {
	t.Helper()
	s, err := NewServer(r, tb, h)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); s.Serve(context.Background()) }()
	t.Cleanup(func() { s.Close(); <-done })
	return s
}

func newClient(t testing.TB, r *Region, tb *Table) *Client {
	t.Helper()
	c, err := NewClient(r, tb)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// evilHost is a scripted host for channel 0: it speaks the ring protocol
// through the pure core but lets a test write anything into the region.
// It runs on the test goroutine; the client's calls run on others.
type evilHost struct {
	t         testing.TB
	r         *Region
	req, resp ring.Ring
	head      uint64   // its request head
	tail      uint64   // its response tail
	cancels   []uint64 // ids of the cancel frames recv consumed
}

func newEvilHost(t testing.TB, r *Region) *evilHost {
	l := r.lay.ch[0]
	req, _ := ring.New(r.mem[l.reqData : l.reqData+r.lay.reqSize])
	resp, _ := ring.New(r.mem[l.respData : l.respData+r.lay.respSize])
	return &evilHost{t: t, r: r, req: req, resp: resp}
}

func (h *evilHost) word(off int) *uint64 { return h.r.u64(h.r.lay.ch[0].base + off) }

// recv waits (without a clock) for the next request and consumes it.
// Cancel frames are consumed and recorded in h.cancels.
func (h *evilHost) recv() (ring.Header, []byte) {
	h.t.Helper()
	for {
		f, err := h.req.Next(h.head, atomic.LoadUint64(h.word(chReqTail)), MaxFramePayload)
		if err == ring.ErrEmpty {
			h.head = f.Next
			runtime.Gosched()
			continue
		}
		if err != nil {
			h.t.Fatalf("evil host: bad request ring: %v", err)
		}
		p := make([]byte, f.Len)
		h.req.Payload(f, p)
		h.head = f.Next
		atomic.StoreUint64(h.word(chReqHead), h.head)
		if f.Call == CallCancel {
			h.cancels = append(h.cancels, f.ID)
			continue
		}
		return f.Header, p
	}
}

// reply writes a well-formed response frame and publishes it.
func (h *evilHost) reply(call uint32, id uint64, payload []byte) {
	h.t.Helper()
	tail, err := h.resp.Write(atomic.LoadUint64(h.word(chRespHead)), h.tail, ring.Header{Call: call, ID: id}, payload)
	if err != nil {
		h.t.Fatalf("evil host: reply: %v", err)
	}
	h.tail = tail
	h.publish(tail)
}

// publish stores a response tail (any value) and wakes the client.
func (h *evilHost) publish(tail uint64) {
	atomic.StoreUint64(h.word(chRespTail), tail)
	w := h.r.waitLine(h.r.lay.ch[0].base + chWait)
	atomic.AddUint32(w.seq, 1)
	futexWakeAll(w.seq)
}

// raw writes bytes at a ring position of the response ring data.
func (h *evilHost) raw(pos int, b []byte) {
	copy(h.r.mem[h.r.lay.ch[0].respData+pos:], b)
}

type callResult struct {
	n   int
	err error
	out []byte
}

// goCall runs one Call on another goroutine.
func goCall(c *Client, call uint32, req []byte, respLen int) <-chan callResult {
	ch := make(chan callResult, 1)
	go func() {
		resp := make([]byte, respLen)
		n, err := c.Call(context.Background(), call, req, resp)
		ch <- callResult{n, err, resp[:max(n, 0)]}
	}()
	return ch
}
