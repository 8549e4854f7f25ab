package boundary

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

func TestRoundTripInProcess(t *testing.T) {
	r := newRegion(t, smallCfg)
	s := startServer(t, r, serverTable(t), echoHandler)
	c := newClient(t, r, clientTable(t))
	ctx := context.Background()

	// Enough calls of varied sizes to wrap the 4 KiB rings many times.
	resp := make([]byte, 1024)
	for i := range 500 {
		req := bytes.Repeat([]byte{byte(i)}, i%1000)
		n, err := c.Call(ctx, callEcho, req, resp)
		if err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
		if !bytes.Equal(resp[:n], req) {
			t.Fatalf("call %d: echo mismatch", i)
		}
	}

	// Error responses.
	_, err := c.Call(ctx, callFail, nil, resp)
	var re *RemoteError
	if !errors.As(err, &re) || re.Code != CodeHandler || re.Message != errTestHandler.Error() || !errors.Is(err, ErrRemote) {
		t.Fatalf("failing handler: %v", err)
	}
	_, err = c.Call(ctx, callMissing, nil, resp)
	if !errors.As(err, &re) || re.Code != CodeUnknownCall || !errors.Is(err, ErrUnknownCall) {
		t.Fatalf("call missing on the server: %v", err)
	}
	_, err = c.Call(ctx, callBig, make([]byte, 100), resp)
	if !errors.As(err, &re) || re.Code != CodeBadRequest {
		t.Fatalf("request over the server's bound: %v", err)
	}
	// Local checks, before anything crosses.
	if _, err := c.Call(ctx, 0x4242, nil, resp); !errors.Is(err, ErrUnknownCall) {
		t.Fatalf("undeclared call: %v", err)
	}
	if _, err := c.Call(ctx, callSmall, make([]byte, 65), resp); !errors.Is(err, ErrRequestTooLarge) {
		t.Fatalf("request over the client's bound: %v", err)
	}
	if _, err := c.Call(ctx, callEcho, make([]byte, 10), resp[:5]); !errors.Is(err, ErrShortBuffer) {
		t.Fatalf("short response buffer: %v", err)
	}
	// The channel is still in sync after all that.
	if n, err := c.Call(ctx, callEcho, []byte("ok"), resp); err != nil || string(resp[:n]) != "ok" {
		t.Fatalf("after errors: %q, %v", resp[:n], err)
	}
	sc := s.Counters()
	if sc.UnknownCalls != 1 || sc.Oversize != 1 || sc.RemoteErrors != 3 {
		t.Fatalf("server counters %+v", sc)
	}
	cc := c.Counters()
	if cc.RemoteErrors != 3 || cc.BadIndex+cc.MalformedFrames+cc.UnknownIDs+cc.DuplicateIDs != 0 {
		t.Fatalf("client counters %+v", cc)
	}
}

// TestBatchOutOfOrder: the host answers a batch in reverse order; every
// call still gets its own response.
func TestBatchOutOfOrder(t *testing.T) {
	r := newRegion(t, smallCfg)
	c := newClient(t, r, clientTable(t))
	h := newEvilHost(t, r)

	calls := make([]BatchCall, 8)
	for i := range calls {
		calls[i] = BatchCall{Call: callEcho, Req: []byte(fmt.Sprintf("req-%d", i)), Resp: make([]byte, 64)}
	}
	calls[3].Call = 0x4242 // undeclared: fails locally, never sent
	done := make(chan error, 1)
	go func() { done <- c.Batch(context.Background(), calls) }()

	type got struct {
		id  uint64
		req []byte
	}
	var reqs []got
	for range 7 {
		hd, p := h.recv()
		reqs = append(reqs, got{hd.ID, p})
	}
	for i := len(reqs) - 1; i >= 0; i-- {
		h.reply(callEcho, reqs[i].id, append([]byte("resp-"), reqs[i].req...))
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	for i, bc := range calls {
		if i == 3 {
			if !errors.Is(bc.Err, ErrUnknownCall) {
				t.Errorf("call 3: %v", bc.Err)
			}
			continue
		}
		want := fmt.Sprintf("resp-req-%d", i)
		if bc.Err != nil || string(bc.Resp[:bc.N]) != want {
			t.Errorf("call %d: %q, %v; want %q", i, bc.Resp[:bc.N], bc.Err, want)
		}
	}
}

func TestBatchThroughServer(t *testing.T) {
	r := newRegion(t, smallCfg)
	startServer(t, r, serverTable(t), echoHandler)
	c := newClient(t, r, clientTable(t))
	// 200 calls of 100 bytes do not fit a 4 KiB ring at once: the batch
	// must interleave sending and receiving.
	calls := make([]BatchCall, 200)
	for i := range calls {
		calls[i] = BatchCall{Call: callEcho, Req: bytes.Repeat([]byte{byte(i)}, 100), Resp: make([]byte, 100)}
	}
	for round := range 3 {
		if err := c.Batch(context.Background(), calls); err != nil {
			t.Fatal(err)
		}
		for i, bc := range calls {
			if bc.Err != nil || !bytes.Equal(bc.Resp[:bc.N], bc.Req) {
				t.Fatalf("round %d call %d: %v", round, i, bc.Err)
			}
		}
	}
}

func TestCreateAttach(t *testing.T) {
	cfg := Config{Channels: 2, RequestRingSize: 8192, ResponseRingSize: 16384}
	r := newRegion(t, cfg)
	if !r.Sealed() {
		t.Fatal("memfd region not sealed")
	}
	// The host cannot shrink a sealed region under the enclave.
	if err := r.File().Truncate(100); err == nil {
		t.Fatal("truncate of a sealed region succeeded")
	}
	a, err := Attach(r.File(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if !a.Sealed() || a.Config() != r.Config() {
		t.Fatalf("attached %+v sealed=%v", a.Config(), a.Sealed())
	}

	for _, bad := range []Config{
		{Channels: 3, RequestRingSize: 8192, ResponseRingSize: 16384},
		{Channels: 2, RequestRingSize: 8192, ResponseRingSize: 8192},
		{Channels: 2, RequestRingSize: 16384, ResponseRingSize: 8192},
		{Channels: 2, RequestRingSize: 8192, ResponseRingSize: 3000},
		{Channels: 100},
	} {
		if _, err := Attach(r.File(), bad); !errors.Is(err, ErrConfig) {
			t.Errorf("Attach(%+v) = %v, want ErrConfig", bad, err)
		}
	}

	// Wrong magic or version → rejected, even with the right size.
	r.mem[0] ^= 1
	if _, err := Attach(r.File(), cfg); !errors.Is(err, ErrConfig) {
		t.Errorf("bad magic: %v", err)
	}
	r.mem[0] ^= 1
	r.mem[hdrEnd] = 1 // reserved byte
	if _, err := Attach(r.File(), cfg); !errors.Is(err, ErrConfig) {
		t.Errorf("reserved byte set: %v", err)
	}
	r.mem[hdrEnd] = 0

	// An unsealed memfd is refused.
	fd, err := unix.MemfdCreate("unsealed", unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if err != nil {
		t.Fatal(err)
	}
	f := os.NewFile(uintptr(fd), "unsealed")
	defer f.Close()
	f.Truncate(int64(computeLayout(r.Config()).size))
	if _, err := Attach(f, cfg); !errors.Is(err, ErrConfig) {
		t.Errorf("unsealed memfd: %v", err)
	}
}

// TestPathRegion: the /dev/shm-style file region works end to end.
func TestPathRegion(t *testing.T) {
	path := filepath.Join(t.TempDir(), "region")
	cfg := smallCfg
	cfg.Path = path
	r := newRegion(t, cfg)
	if r.Sealed() {
		t.Fatal("a path region claims to be sealed")
	}
	if _, err := Create(cfg); err == nil {
		t.Fatal("Create over an existing file succeeded")
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	a, err := Attach(f, smallCfg)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	startServer(t, r, serverTable(t), echoHandler)
	c := newClient(t, a, clientTable(t))
	resp := make([]byte, 16)
	if n, err := c.Call(context.Background(), callEcho, []byte("via path"), resp); err != nil || string(resp[:n]) != "via path" {
		t.Fatalf("%q, %v", resp[:n], err)
	}
}

func TestTable(t *testing.T) {
	if _, err := NewTable(HostCalls()...); err != nil {
		t.Fatalf("host calls: %v", err)
	}
	// The host services fit the default rings.
	tb, _ := NewTable(HostCalls()...)
	if err := tb.checkRings(Config{RequestRingSize: DefaultRingSize, ResponseRingSize: DefaultRingSize}); err != nil {
		t.Fatal(err)
	}
	// Host-service ids are frozen: Do NOT renumber.
	frozen := map[uint32]string{
		0x0101: "net.listen", 0x0102: "net.accept", 0x0103: "net.dial", 0x0104: "net.read",
		0x0105: "net.write", 0x0106: "net.close", 0x0201: "storage.get", 0x0202: "storage.put",
		0x0203: "storage.delete", 0x0204: "storage.list", 0x0205: "storage.commit", 0x0301: "time.now_untrusted",
		0x0401: "evidence.quote", 0x0410: "sim.identity", 0x0411: "sim.seal_key",
	}
	for id, name := range frozen {
		if s, ok := tb.Lookup(id); !ok || s.Name != name {
			t.Errorf("call %#x = %+v, want %s", id, s, name)
		}
	}
	if len(tb.Specs()) != len(frozen) {
		t.Errorf("%d host calls, %d frozen: add new ones to the frozen list", len(tb.Specs()), len(frozen))
	}
	for _, bad := range [][]CallSpec{
		{{ID: 0, Name: "zero"}},
		{{ID: CallCancel, Name: "cancel"}}, // a control frame, never a call
		{{ID: ErrorFlag | 1, Name: "flag"}},
		{{ID: 5, Name: ""}},
		{{ID: 5, Name: "a"}, {ID: 5, Name: "b"}},
		{{ID: 5, Name: "a"}, {ID: 6, Name: "a"}},
		{{ID: 5, Name: "a", MaxRequest: MaxFramePayload + 1}},
		{{ID: 5, Name: "a", MaxResponse: -1}},
	} {
		if _, err := NewTable(bad...); err == nil {
			t.Errorf("NewTable(%+v) succeeded", bad)
		}
	}
	// A table whose frames exceed the rings is refused at construction.
	r := newRegion(t, smallCfg)
	if _, err := NewClient(r, tb); !errors.Is(err, ErrConfig) {
		t.Errorf("host table on 4 KiB rings: %v", err)
	}
	if _, err := NewServer(r, tb, echoHandler); !errors.Is(err, ErrConfig) {
		t.Errorf("host table on 4 KiB rings: %v", err)
	}
}

func TestCancelAndClose(t *testing.T) {
	r := newRegion(t, smallCfg)
	c := newClient(t, r, clientTable(t))
	h := newEvilHost(t, r)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := c.Call(ctx, callEcho, []byte("lost"), make([]byte, 8))
		done <- err
	}()
	hd, _ := h.recv()
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled call: %v", err)
	}
	// The late response is dropped quietly; the next call gets its own.
	h.reply(callEcho, hd.ID, []byte("late"))
	res := goCall(c, callEcho, []byte("next"), 8)
	hd2, p := h.recv()
	h.reply(callEcho, hd2.ID, p)
	if got := <-res; got.err != nil || string(got.out) != "next" {
		t.Fatalf("after cancel: %q, %v", got.out, got.err)
	}
	if cc := c.Counters(); cc.StaleResponses != 1 || cc.Cancels != 1 {
		t.Fatalf("counters %+v", cc)
	}
	// The client told the host it gave up on the request.
	if len(h.cancels) != 1 || h.cancels[0] != hd.ID {
		t.Fatalf("cancel frames %v, want [%d]", h.cancels, hd.ID)
	}
	c.Close()
	if _, err := c.Call(context.Background(), callEcho, nil, nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("after Close: %v", err)
	}
}

// TestPathRegionTruncated: a file region cannot be sealed, so the host can
// truncate it under the enclave. The enclave's next call fails with
// ErrRegionFault instead of crashing the process, and stays failed.
func TestPathRegionTruncated(t *testing.T) {
	path := filepath.Join(t.TempDir(), "region")
	cfg := smallCfg
	cfg.Path = path
	r := newRegion(t, cfg)
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	a, err := Attach(f, smallCfg)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	c := newClient(t, a, clientTable(t))
	if err := r.File().Truncate(0); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if _, err := c.Call(context.Background(), callEcho, []byte("x"), make([]byte, 8)); !errors.Is(err, ErrRegionFault) {
			t.Fatalf("call on a truncated region: %v", err)
		}
	}
	// A batch that faults on its first touch (a fresh client), and one on
	// a client already failed.
	for _, c := range []*Client{newClient(t, a, clientTable(t)), c} {
		calls := []BatchCall{{Call: callEcho, Req: []byte("x"), Resp: make([]byte, 8)}}
		if err := c.Batch(context.Background(), calls); !errors.Is(err, ErrRegionFault) || !errors.Is(calls[0].Err, ErrRegionFault) {
			t.Fatalf("batch on a truncated region: %v / %v", err, calls[0].Err)
		}
	}
}
