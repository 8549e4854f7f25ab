package enclave

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"sync"
	"time"

	"github.com/cloister-dev/cloister/boundary"
	"github.com/cloister-dev/cloister/host/wire"
)

// The network: TCP through the host's network service. Accept, read and
// write (and the completion of a dial) are ordinary pending calls: the host
// answers when the call can proceed, and the enclave waits for the reply
// with the connection's deadline, Close and the caller's context, and
// sends a cancel frame when it gives up. Reads name the stream offset
// they start at, so a reply given up on at a deadline is sent again by the
// next read instead of being lost. TLS runs on top, inside the enclave;
// the host only ever sees the bytes a real network would.

// Listen listens through the host on addr ("host:port" or ":port"; only
// TCP). The host binds the address the operator allowed with `cloister run
// --listen` that has the same port (and host, if addr names one); the
// listener's Addr is what the host bound. It waits for the host as long
// as the Env lives; ListenContext bounds the wait.
func (e *Env) Listen(network, addr string) (net.Listener, error) {
	return e.ListenContext(context.Background(), network, addr)
}

// ListenContext is Listen with ctx bounding the host call.
func (e *Env) ListenContext(ctx context.Context, network, addr string) (net.Listener, error) {
	if err := checkNetwork(network); err != nil {
		return nil, opError("listen", network, nil, nil, err)
	}
	if len(addr) > boundary.MaxNetAddr {
		return nil, opError("listen", network, nil, nil, errors.New("enclave: address too long"))
	}
	resp := make([]byte, 8+boundary.MaxNetAddr)
	n, err := e.call(ctx, boundary.CallNetListen, []byte(addr), resp)
	if err != nil {
		return nil, opError("listen", network, nil, nil, err)
	}
	h, bound, err := wire.ParseHandleAddr(resp[:n])
	if err != nil {
		return nil, opError("listen", network, nil, nil, err)
	}
	l := &listener{env: e, h: h, addr: parseAddr(bound), done: make(chan struct{})}
	l.ctx, l.cancel = context.WithCancel(e.ctx)
	return l, nil
}

// Dial connects to addr through the host; see DialContext.
func (e *Env) Dial(network, addr string) (net.Conn, error) {
	return e.DialContext(context.Background(), network, addr)
}

// DialContext connects to addr ("host:port"; only TCP) through the host,
// which resolves the name and applies its dial policy. ctx bounds the
// whole dial. Use it as http.Transport.DialContext or tls.Dialer's
// NetDialer replacement.
func (e *Env) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	raddr := parseAddr(addr)
	if err := checkNetwork(network); err != nil {
		return nil, opError("dial", network, nil, raddr, err)
	}
	if len(addr) > boundary.MaxNetAddr {
		return nil, opError("dial", network, nil, raddr, errors.New("enclave: address too long"))
	}
	var timeout uint64
	if d, ok := ctx.Deadline(); ok {
		t := time.Until(d)
		if t <= 0 {
			return nil, opError("dial", network, nil, raddr, os.ErrDeadlineExceeded)
		}
		timeout = uint64(t)
	}
	req := append(wire.AppendU64(nil, timeout), addr...)
	resp := make([]byte, 8+boundary.MaxNetAddr)
	n, err := e.call(ctx, boundary.CallNetDial, req, resp)
	if err != nil {
		return nil, opError("dial", network, nil, raddr, err)
	}
	h, _, err := wire.ParseHandleAddr(resp[:n])
	if err != nil {
		return nil, opError("dial", network, nil, raddr, err)
	}
	// The dial is asynchronous on the host: net.accept on the handle
	// waits for it to complete (see package wire).
	n, err = e.call(ctx, boundary.CallNetAccept, wire.AppendU64(nil, h), resp)
	if err == nil {
		got, local, perr := wire.ParseHandleAddr(resp[:n])
		if perr == nil && got != h {
			perr = fmt.Errorf("enclave: dial: host answered handle %d for %d", got, h)
		}
		if perr == nil {
			return newConn(e, h, parseAddr(local), raddr), nil
		}
		err = perr
	}
	e.closeHandle(h)
	return nil, opError("dial", network, nil, raddr, err)
}

// closeHandle releases a host handle, waiting for the host at most
// closeTimeout; errors are moot (the host forgets the handle either way).
func (e *Env) closeHandle(h uint64) error {
	ctx, cancel := context.WithTimeout(context.Background(), closeTimeout)
	defer cancel()
	_, err := e.call(ctx, boundary.CallNetClose, wire.AppendU64(nil, h), nil)
	return err
}

func checkNetwork(network string) error {
	switch network {
	case "tcp", "tcp4", "tcp6":
		return nil
	}
	return fmt.Errorf("enclave: network %q: only tcp goes through the host", network)
}

// opError wraps err as net/http and crypto/tls expect from a network
// (timeouts answer Timeout(), closed connections match net.ErrClosed).
func opError(op, network string, local, remote net.Addr, err error) error {
	return &net.OpError{Op: op, Net: network, Source: local, Addr: remote, Err: err}
}

// hostAddr is an address as the host reported it when it is not an
// IP:port literal.
type hostAddr string

func (a hostAddr) Network() string { return "tcp" }
func (a hostAddr) String() string  { return string(a) }

// parseAddr returns a *net.TCPAddr for an IP:port literal, else the text.
func parseAddr(s string) net.Addr {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return net.TCPAddrFromAddrPort(ap)
	}
	return hostAddr(s)
}

// listener is a net.Listener served by the host.
type listener struct {
	env  *Env
	h    uint64
	addr net.Addr

	// ctx bounds the host calls of Accept; Close cancels it, so an Accept
	// waiting on a stalled host returns.
	ctx    context.Context
	cancel context.CancelFunc

	closeOnce sync.Once
	done      chan struct{}
}

// Accept waits for the next connection. After Close it returns an error
// matching net.ErrClosed.
func (l *listener) Accept() (net.Conn, error) {
	select {
	case <-l.done:
		return nil, opError("accept", "tcp", l.addr, nil, net.ErrClosed)
	default:
	}
	resp := make([]byte, 8+boundary.MaxNetAddr)
	n, err := l.env.call(l.ctx, boundary.CallNetAccept, wire.AppendU64(nil, l.h), resp)
	if err != nil {
		select {
		case <-l.done:
			return nil, opError("accept", "tcp", l.addr, nil, net.ErrClosed)
		default:
		}
		return nil, opError("accept", "tcp", l.addr, nil, err)
	}
	h, remote, err := wire.ParseHandleAddr(resp[:n])
	if err != nil {
		return nil, opError("accept", "tcp", l.addr, nil, err)
	}
	return newConn(l.env, h, l.addr, parseAddr(remote)), nil
}

// Close stops listening; a blocked Accept returns.
func (l *listener) Close() error {
	err := net.ErrClosed
	l.closeOnce.Do(func() {
		close(l.done)
		l.cancel()
		err = l.env.closeHandle(l.h)
	})
	if err != nil {
		return opError("close", "tcp", l.addr, nil, err)
	}
	return nil
}

// Addr returns the address the host bound.
func (l *listener) Addr() net.Addr { return l.addr }

// conn is a net.Conn served by the host. Reads are serialised among
// themselves, and so are writes; a read and a write proceed together.
type conn struct {
	env           *Env
	h             uint64
	local, remote net.Addr

	// ctx bounds every host call of the connection; Close cancels it.
	// Each Read or Write call further bounds its host calls by the
	// deadline (callCtx).
	ctx    context.Context
	cancel context.CancelFunc

	rmu, wmu    sync.Mutex
	rdl, wdl    deadline
	wbuf        []byte // request buffer for writes, under wmu
	rreq        [wire.ReadRequestSize]byte
	roff        uint64 // stream bytes read so far, under rmu
	closeOnce   sync.Once
	done        chan struct{}
	closeResult error
}

func newConn(e *Env, h uint64, local, remote net.Addr) *conn {
	c := &conn{env: e, h: h, local: local, remote: remote, done: make(chan struct{}), rdl: newDeadline(), wdl: newDeadline()}
	c.ctx, c.cancel = context.WithCancel(e.ctx)
	return c
}

// call makes one host call for the connection, bounded by dl's deadline,
// by a change of that deadline (SetReadDeadline in the past aborts a
// blocked Read, as net/http relies on) and by Close. On an error it
// reports closed or timed out in net.Conn's terms, and retry when the
// deadline moved: the caller checks the new deadline and calls again.
//
// A host call abandoned at the deadline may have been served: the late
// answer is dropped. A read loses nothing (the next read asks again from
// the same stream offset); a write the host took just as the deadline
// passed is reported as not written, as a timed-out write on a kernel
// socket may have sent part of its data.
func (c *conn) call(dl *deadline, call uint32, req, resp []byte) (n int, retry bool, err error) {
	t, changed := dl.get()
	var ctx context.Context
	var cancel context.CancelFunc
	if t.IsZero() {
		ctx, cancel = context.WithCancel(c.ctx)
	} else {
		ctx, cancel = context.WithDeadline(c.ctx, t)
	}
	defer cancel()
	// Only a deadline moved earlier aborts the call; a later or cleared
	// one lets it finish.
	unhook := dl.onChange(changed, func(nt time.Time) {
		if !nt.IsZero() && (t.IsZero() || nt.Before(t)) {
			cancel()
		}
	})
	n, err = c.env.call(ctx, call, req, resp)
	moved := unhook()
	switch {
	case err == nil:
		return n, false, nil
	case c.isClosed() || c.ctx.Err() != nil:
		return 0, false, net.ErrClosed
	case moved && ctx.Err() != nil:
		return 0, true, nil
	case errors.Is(err, context.DeadlineExceeded):
		return 0, false, os.ErrDeadlineExceeded
	}
	return 0, false, err
}

// Read reads what the host received, waiting while nothing is there.
// It returns io.EOF once the peer closed and everything was read, and an
// error whose Timeout() is true after the read deadline.
func (c *conn) Read(b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	c.rmu.Lock()
	defer c.rmu.Unlock()
	b = b[:min(len(b), boundary.MaxNetReadChunk)]
	for {
		if err := c.check(&c.rdl); err != nil {
			return 0, c.opError("read", err)
		}
		n, retry, err := c.call(&c.rdl, boundary.CallNetRead, wire.ReadRequest(c.rreq[:], c.h, len(b), c.roff), b)
		switch {
		case retry:
			continue
		case err != nil:
			return 0, c.opError("read", err)
		case n == 0:
			return 0, io.EOF
		}
		c.roff += uint64(n)
		return n, nil
	}
}

// Write hands b to the host in chunks, waiting while the host's buffer
// for this connection is full. A nil error means the host has all of b,
// not that the peer received it (as with a kernel socket buffer).
func (c *conn) Write(b []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.wbuf == nil && len(b) > 0 {
		c.wbuf = make([]byte, 8+min(len(b), boundary.MaxNetChunk), 8+boundary.MaxNetChunk)
	}
	var resp [4]byte
	done := 0
	for done < len(b) {
		if err := c.check(&c.wdl); err != nil {
			return done, c.opError("write", err)
		}
		chunk := b[done:min(len(b), done+boundary.MaxNetChunk)]
		req := append(wire.AppendU64(c.wbuf[:0], c.h), chunk...)
		n, retry, err := c.call(&c.wdl, boundary.CallNetWrite, req, resp[:])
		switch {
		case retry:
			continue
		case err != nil:
			return done, c.opError("write", err)
		}
		w, err := wire.ParseWritten(resp[:n], len(chunk))
		if err != nil {
			return done, c.opError("write", err)
		}
		done += w
	}
	return done, nil
}

// check fails if the connection is closed or the deadline has passed.
func (c *conn) check(dl *deadline) error {
	if c.isClosed() {
		return net.ErrClosed
	}
	if t, _ := dl.get(); !t.IsZero() && !time.Now().Before(t) {
		return os.ErrDeadlineExceeded
	}
	return nil
}

func (c *conn) isClosed() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

func (c *conn) opError(op string, err error) error {
	return opError(op, "tcp", c.local, c.remote, err)
}

// Close closes the connection: blocked Reads and Writes return, and the
// host sends what it buffered before closing the socket.
func (c *conn) Close() error {
	err := net.ErrClosed
	c.closeOnce.Do(func() {
		close(c.done)
		c.cancel()
		err = c.env.closeHandle(c.h)
	})
	if err != nil {
		return c.opError("close", err)
	}
	return nil
}

// LocalAddr returns the host-side local address.
func (c *conn) LocalAddr() net.Addr { return c.local }

// RemoteAddr returns the peer's address as the host reports it.
func (c *conn) RemoteAddr() net.Addr { return c.remote }

// SetDeadline sets both deadlines.
func (c *conn) SetDeadline(t time.Time) error {
	c.rdl.set(t)
	c.wdl.set(t)
	return nil
}

// SetReadDeadline sets the read deadline; a blocked Read notices at once.
func (c *conn) SetReadDeadline(t time.Time) error { c.rdl.set(t); return nil }

// SetWriteDeadline sets the write deadline; a blocked Write notices at once.
func (c *conn) SetWriteDeadline(t time.Time) error { c.wdl.set(t); return nil }

// deadline is a settable point in time whose changes wake waiters and
// abort the host call in flight.
type deadline struct {
	mu      *sync.Mutex
	t       time.Time
	changed chan struct{}   // closed and replaced on every set
	hook    func(time.Time) // called by the next set with the new time
}

// onChange arranges for f to run with the new time when the deadline is
// next set, if it was not set since changed was read (else f runs now). The returned function
// removes the hook and reports whether it ran. One hook at a time: a
// connection has at most one call in flight per deadline.
func (d *deadline) onChange(changed <-chan struct{}, f func(time.Time)) func() bool {
	d.mu.Lock()
	if d.changed != changed {
		t := d.t
		d.mu.Unlock()
		f(t)
		return func() bool { return true }
	}
	d.hook = f
	d.mu.Unlock()
	return func() bool {
		d.mu.Lock()
		defer d.mu.Unlock()
		if d.hook == nil {
			return true
		}
		d.hook = nil
		return false
	}
}

func newDeadline() deadline {
	return deadline{mu: new(sync.Mutex), changed: make(chan struct{})}
}

func (d *deadline) set(t time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.t = t
	close(d.changed)
	d.changed = make(chan struct{})
	if d.hook != nil {
		d.hook(t)
		d.hook = nil
	}
}

func (d *deadline) get() (time.Time, <-chan struct{}) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.t, d.changed
}
