package host

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cloister-dev/cloister/boundary"
	"github.com/cloister-dev/cloister/host/wire"
	"github.com/cloister-dev/cloister/seal"
	"github.com/cloister-dev/cloister/tee"
	"github.com/cloister-dev/cloister/tee/sim"
)

// pair is the host services and a raw boundary client over an in-process
// region: the enclave's side without the SDK, to test the wire protocol.
type pair struct {
	resp   []byte
	svc    *Services
	client *boundary.Client
	server *boundary.Server
}

func newPair(t *testing.T, o ServiceOptions) *pair {
	t.Helper()
	if o.Store == nil {
		o.Store = NewMemStore()
	}
	svc, err := NewServices(o)
	if err != nil {
		t.Fatal(err)
	}
	cfg := wire.RegionConfig()
	region, err := boundary.Create(cfg)
	if err != nil {
		t.Fatal(err)
	}
	attached, err := boundary.Attach(region.File(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	table, err := wire.Table()
	if err != nil {
		t.Fatal(err)
	}
	server, err := boundary.NewServer(region, table, svc.Handle)
	if err != nil {
		t.Fatal(err)
	}
	server.SetDefer(svc.Defer)
	client, err := boundary.NewClient(attached, table)
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- server.Serve(context.Background()) }()
	t.Cleanup(func() {
		client.Close()
		server.Close()
		<-served
		svc.Close()
		attached.Close()
		region.Close()
	})
	return &pair{svc: svc, client: client, server: server, resp: make([]byte, boundary.MaxFramePayload)}
}

func (p *pair) call(t *testing.T, call uint32, req []byte) ([]byte, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	n, err := p.client.Call(ctx, call, req, p.resp)
	return bytes.Clone(p.resp[:n]), err
}

// callWithin makes call with a deadline d from now.
func (p *pair) callWithin(d time.Duration, call uint32, req []byte) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	n, err := p.client.Call(ctx, call, req, p.resp)
	return bytes.Clone(p.resp[:n]), err
}

func u64(h uint64) []byte { return wire.AppendU64(nil, h) }

func TestListenPolicy(t *testing.T) {
	p := newPair(t, ServiceOptions{Listen: []string{"127.0.0.1:0"}})
	for _, addr := range []string{"127.0.0.1:1", ":80", "10.0.0.1:0", "garbage"} {
		if _, err := p.call(t, boundary.CallNetListen, []byte(addr)); err == nil || !strings.Contains(err.Error(), "listen") {
			t.Errorf("listen %q = %v, want refused", addr, err)
		}
	}
	b, err := p.call(t, boundary.CallNetListen, []byte(":0"))
	if err != nil {
		t.Fatal(err)
	}
	h, addr, err := wire.ParseHandleAddr(b)
	if err != nil || h == 0 || !strings.HasPrefix(addr, "127.0.0.1:") || strings.HasSuffix(addr, ":0") {
		t.Fatalf("listen = %d %q %v", h, addr, err)
	}
}

// TestConnection walks one accepted connection through every state: data
// both ways, calls that wait (parked) while nothing is there and give up at
// their deadline, a read given up on answered again from the same offset,
// EOF after the peer closes, and close.
func TestConnection(t *testing.T) {
	p := newPair(t, ServiceOptions{Listen: []string{"127.0.0.1:0"}})
	b, err := p.call(t, boundary.CallNetListen, []byte("127.0.0.1:0"))
	if err != nil {
		t.Fatal(err)
	}
	lh, addr, _ := wire.ParseHandleAddr(b)
	if _, err := p.callWithin(100*time.Millisecond, boundary.CallNetAccept, u64(lh)); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("accept with nobody connecting = %v, want it to wait until its deadline", err)
	}
	// The accept that gave up is cancelled on the host before a peer
	// connects: a connection that arrives while the host still holds that
	// accept would be handed to it and dropped by the enclave as a stale
	// reply (DESIGN.md: the one documented loss at a deadline).
	for start := time.Now(); p.server.Counters().Cancels == 0; time.Sleep(time.Millisecond) {
		if time.Since(start) > 10*time.Second {
			t.Fatalf("the host never saw the cancel of the accept that gave up")
		}
	}
	accepted := make(chan []byte, 1)
	go func() { b, _ := p.call(t, boundary.CallNetAccept, u64(lh)); accepted <- b }()
	peer, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	b = <-accepted
	if err != nil {
		t.Fatal(err)
	}
	ch, remote, _ := wire.ParseHandleAddr(b)
	if remote != peer.LocalAddr().String() {
		t.Errorf("accepted remote %q, want %q", remote, peer.LocalAddr())
	}
	var off uint64 // stream bytes consumed
	read := func(max int) ([]byte, error) {
		b, err := p.call(t, boundary.CallNetRead, wire.ReadRequest(nil, ch, max, off))
		off += uint64(len(b))
		return b, err
	}
	if _, err := p.callWithin(100*time.Millisecond, boundary.CallNetRead, wire.ReadRequest(nil, ch, 3, off)); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("read with nothing buffered = %v, want it to wait until its deadline", err)
	}
	if n := p.server.Counters().CancelledReplies; n != 0 {
		t.Fatalf("cancelled replies %d before any answer", n)
	}
	if _, err := peer.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	var got []byte
	for len(got) < 5 {
		b, err := read(3)
		if err != nil {
			t.Fatal(err)
		}
		if len(b) > 3 {
			t.Fatalf("read(3) returned %d bytes", len(b))
		}
		got = append(got, b...)
	}
	if string(got) != "hello" {
		t.Fatalf("read %q", got)
	}
	// A reply given up on is not lost: the same offset reads it again.
	if _, err := peer.Write([]byte("again")); err != nil {
		t.Fatal(err)
	}
	first, err := p.call(t, boundary.CallNetRead, wire.ReadRequest(nil, ch, 100, off))
	if err != nil || len(first) == 0 {
		t.Fatalf("read = %q, %v", first, err)
	}
	if b, err := read(len(first)); err != nil || !bytes.Equal(b, first) {
		t.Fatalf("read again from offset %d = %q, %v; want %q", off, b, err, first)
	}
	got = append(got, first...)
	for len(got) < len("helloagain") {
		b, err := read(100)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, b...)
	}
	if string(got) != "helloagain" {
		t.Fatalf("read %q", got)
	}
	if _, err := p.call(t, boundary.CallNetRead, wire.ReadRequest(nil, ch, 1, off+1)); err == nil {
		t.Fatal("read from past the buffered stream succeeded")
	}
	b, err = p.call(t, boundary.CallNetWrite, append(u64(ch), "world"...))
	if err != nil {
		t.Fatal(err)
	}
	if n, err := wire.ParseWritten(b, 5); err != nil || n != 5 {
		t.Fatalf("write = %d, %v", n, err)
	}
	buf := make([]byte, 5)
	if _, err := io.ReadFull(peer, buf); err != nil || string(buf) != "world" {
		t.Fatalf("peer read %q, %v", buf, err)
	}
	peer.(*net.TCPConn).CloseWrite()
	if b, err := read(100); err != nil || len(b) != 0 {
		t.Fatalf("read after peer's close = %q, %v; want empty (EOF)", b, err)
	}
	if _, err := p.call(t, boundary.CallNetClose, u64(ch)); err != nil {
		t.Fatal(err)
	}
	if _, err := peer.Read(buf); err != io.EOF {
		t.Fatalf("peer read after close = %v, want EOF", err)
	}
	if _, err := p.call(t, boundary.CallNetRead, wire.ReadRequest(nil, ch, 1, off)); err == nil {
		t.Fatal("read on a closed handle succeeded")
	}
	if _, err := p.call(t, boundary.CallNetClose, u64(lh)); err != nil {
		t.Fatal(err)
	}
	if _, err := net.Dial("tcp", addr); err == nil {
		t.Fatal("dial to a closed listener succeeded")
	}
}

// TestCloseFlushes: what the enclave wrote before closing reaches the peer.
func TestCloseFlushes(t *testing.T) {
	p := newPair(t, ServiceOptions{})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	b, err := p.call(t, boundary.CallNetDial, append(u64(0), l.Addr().String()...))
	if err != nil {
		t.Fatal(err)
	}
	h, local, _ := wire.ParseHandleAddr(b)
	if local != "" {
		t.Errorf("dial answered local address %q before connecting", local)
	}
	peer, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	b, err = p.call(t, boundary.CallNetAccept, u64(h))
	if err != nil {
		t.Fatal(err)
	}
	if got, local, _ := wire.ParseHandleAddr(b); got != h || local != peer.RemoteAddr().String() {
		t.Fatalf("dial completion = %d %q, want %d %q", got, local, h, peer.RemoteAddr())
	}
	// More than the host's write buffer: the writes wait for the peer, who
	// reads from the start.
	data := bytes.Repeat([]byte("0123456789abcdef"), 1<<18)
	done := make(chan []byte)
	go func() {
		got, _ := io.ReadAll(peer)
		done <- got
	}()
	for sent := 0; sent < len(data); {
		chunk := data[sent:min(len(data), sent+boundary.MaxNetChunk)]
		b, err := p.call(t, boundary.CallNetWrite, append(u64(h), chunk...))
		if err != nil {
			t.Fatal(err)
		}
		n, err := wire.ParseWritten(b, len(chunk))
		if err != nil {
			t.Fatal(err)
		}
		sent += n
	}
	if _, err := p.call(t, boundary.CallNetClose, u64(h)); err != nil {
		t.Fatal(err)
	}
	if got := <-done; !bytes.Equal(got, data) {
		t.Fatalf("peer got %d bytes, want %d", len(got), len(data))
	}
}

func TestDial(t *testing.T) {
	p := newPair(t, ServiceOptions{Dial: []string{"127.0.0.1:*"}})
	if _, err := p.call(t, boundary.CallNetDial, append(u64(0), "localhost:80"...)); err == nil || !strings.Contains(err.Error(), "not allowed") {
		t.Errorf("dial outside the policy = %v, want not allowed", err)
	}
	// A port nobody listens on: the dial fails, and says so on completion.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	b, err := p.call(t, boundary.CallNetDial, append(u64(uint64(5*time.Second)), addr...))
	if err != nil {
		t.Fatal(err)
	}
	h, _, _ := wire.ParseHandleAddr(b)
	if _, err := p.call(t, boundary.CallNetAccept, u64(h)); err == nil || !errors.Is(err, boundary.ErrRemote) {
		t.Fatalf("completing a refused dial = %v, want the host's error", err)
	}
	if _, err := p.call(t, boundary.CallNetClose, u64(h)); err != nil {
		t.Fatal(err)
	}
}

func TestStorageCalls(t *testing.T) {
	p := newPair(t, ServiceOptions{})
	if _, err := p.call(t, boundary.CallStorageGet, []byte("a")); !errors.Is(err, boundary.ErrNotFound) {
		t.Fatalf("get missing = %v, want not found", err)
	}
	// Enough keys to need several list pages.
	var want []string
	// Long keys, so that a few hundred need several pages.
	for i := range 400 {
		k := fmt.Sprintf("p/%03d/%s", (i*7919)%400, strings.Repeat("k", 500))
		req, err := wire.KeyRecord([]byte(k), []byte("v"))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := p.call(t, boundary.CallStoragePut, req); err != nil {
			t.Fatal(err)
		}
		want = append(want, k)
	}
	req, _ := wire.KeyRecord([]byte("q"), []byte("other"))
	if _, err := p.call(t, boundary.CallStoragePut, req); err != nil {
		t.Fatal(err)
	}
	if b, err := p.call(t, boundary.CallStorageGet, []byte("q")); err != nil || string(b) != "other" {
		t.Fatalf("get = %q, %v", b, err)
	}
	var got [][]byte
	var after []byte
	pages := 0
	for {
		req, _ := wire.ListRequest([]byte("p/"), after)
		b, err := p.call(t, boundary.CallStorageList, req)
		if err != nil {
			t.Fatal(err)
		}
		keys, err := wire.ParseListPage(b, []byte("p/"), after)
		if err != nil {
			t.Fatal(err)
		}
		if len(keys) == 0 {
			break
		}
		pages++
		got = append(got, keys...)
		after = keys[len(keys)-1]
	}
	slices.Sort(want)
	if len(got) != len(want) || pages < 2 {
		t.Fatalf("listed %d keys in %d pages, want %d in several", len(got), pages, len(want))
	}
	for i := range got {
		if string(got[i]) != want[i] {
			t.Fatalf("key %d = %.10q, want %.10q", i, got[i], want[i])
		}
	}
	if _, err := p.call(t, boundary.CallStorageDelete, []byte("q")); err != nil {
		t.Fatal(err)
	}
	if _, err := p.call(t, boundary.CallStorageGet, []byte("q")); !errors.Is(err, boundary.ErrNotFound) {
		t.Fatalf("get deleted = %v, want not found", err)
	}
}

func TestStorageCommitCall(t *testing.T) {
	p := newPair(t, ServiceOptions{})
	req, err := wire.CommitRequest([]wire.CommitOp{{Key: []byte("x"), Value: []byte("1")}, {Key: []byte("y"), Value: []byte("2")}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.call(t, boundary.CallStorageCommit, req); err != nil {
		t.Fatal(err)
	}
	if b, err := p.call(t, boundary.CallStorageGet, []byte("y")); err != nil || string(b) != "2" {
		t.Fatalf("get after commit = %q, %v", b, err)
	}
	req, _ = wire.CommitRequest([]wire.CommitOp{{Key: []byte("x"), Delete: true}})
	if _, err := p.call(t, boundary.CallStorageCommit, req); err != nil {
		t.Fatal(err)
	}
	if _, err := p.call(t, boundary.CallStorageGet, []byte("x")); !errors.Is(err, boundary.ErrNotFound) {
		t.Fatalf("get after commit delete = %v, want not found", err)
	}
	// A malformed batch is refused as a whole.
	if _, err := p.call(t, boundary.CallStorageCommit, append(req, 0)); err == nil {
		t.Fatal("commit with trailing bytes succeeded")
	}
}

func TestTimeAndEvidence(t *testing.T) {
	pki, err := sim.Load(t.TempDir(), rand.Reader, time.Unix(1_800_000_000, 0))
	if err != nil {
		t.Fatal(err)
	}
	app := sim.App{MRENCLAVE: [32]byte{1, 2, 3}, MRSIGNER: [32]byte{4}, ProductID: 7, SVN: 2, Debug: true}
	plat, err := sim.NewPlatform(pki, tee.KindSimSGX, app, nil)
	if err != nil {
		t.Fatal(err)
	}
	fixed := time.Unix(1_800_000_123, 456)
	p := newPair(t, ServiceOptions{Platform: plat, Now: func() time.Time { return fixed }})

	b, err := p.call(t, boundary.CallTimeNowUntrusted, nil)
	if err != nil || len(b) != 8 || int64(binary.LittleEndian.Uint64(b)) != fixed.UnixNano() {
		t.Fatalf("time = %x, %v", b, err)
	}
	b, err = p.call(t, wire.CallSimIdentity, nil)
	if err != nil {
		t.Fatal(err)
	}
	kind, id, err := wire.ParseIdentity(b)
	if err != nil || kind != tee.KindSimSGX || !bytes.Equal(id.Measurement, app.MRENCLAVE[:]) || id.ProductID != 7 || id.SVN != 2 || !id.Debug {
		t.Fatalf("identity = %s %+v, %v", kind, id, err)
	}
	var rd [64]byte
	copy(rd[:], "report data")
	q, err := p.call(t, boundary.CallEvidenceQuote, rd[:])
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(q, rd[:]) || !bytes.Contains(q, app.MRENCLAVE[:]) {
		t.Fatal("quote does not carry the report data and MRENCLAVE")
	}
	if _, err := p.call(t, boundary.CallEvidenceQuote, rd[:10]); err == nil {
		t.Fatal("quote for 10 bytes of report data succeeded")
	}
	req, err := wire.SealKeyRequest(seal.KeyRequest{Policy: seal.PolicyEnclave, Measurement: app.MRENCLAVE[:]})
	if err != nil {
		t.Fatal(err)
	}
	k, err := p.call(t, wire.CallSimSealKey, req)
	if err != nil || len(k) < seal.MinKeyMaterialSize {
		t.Fatalf("seal key = %d bytes, %v", len(k), err)
	}
	want, _ := plat.SealKey(context.Background(), seal.KeyRequest{Policy: seal.PolicyEnclave, Measurement: app.MRENCLAVE[:]})
	if !bytes.Equal(k, want) {
		t.Fatal("seal key differs from the platform's")
	}
	other, _ := wire.SealKeyRequest(seal.KeyRequest{Policy: seal.PolicyEnclave, Measurement: make([]byte, 32)})
	if _, err := p.call(t, wire.CallSimSealKey, other); err == nil {
		t.Fatal("seal key for another measurement was handed out")
	}
}
