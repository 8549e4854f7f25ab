package host

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/cloister-dev/cloister/boundary"
	"github.com/cloister-dev/cloister/host/wire"
)

// The network service. Sockets never block the server goroutine: each
// connection has a reader goroutine filling a bounded read buffer and a
// writer goroutine draining a bounded write buffer; each listener has an
// accept goroutine filling a bounded queue; dials run on their own
// goroutine. Handlers only move bytes between those buffers and the rings.
//
// A call that cannot proceed now (accept with nothing pending, read with
// nothing buffered, write with a full buffer, accept on a dial still in
// progress) is parked (Services.Defer): its boundary.Reply is kept on its
// handle, and the I/O goroutine whose progress makes it possible answers
// it (kick) through the Reply, whose completion the Serve goroutine
// writes. Readiness is checked and the call parked under the handle's
// lock, and the goroutines kick under the same lock after changing the
// state, so a change between the check and the park is never missed. A
// handle closed by the enclave fails its parked calls; a call the enclave
// cancelled (Reply.Done) is dropped.

// parked is a network call waiting on its handle.
type parked struct {
	call  uint32
	req   []byte // owned copy
	reply boundary.Reply
}

// live reports whether the enclave still waits for p (it did not cancel).
func (p *parked) live() bool {
	select {
	case <-p.reply.Done():
		return false
	default:
		return true
	}
}

// park adds p to list, dropping the cancelled calls already on it (so a
// handle with no progress holds at most the calls still waiting).
func park(list []parked, p parked) []parked {
	list = slices.DeleteFunc(list, func(q parked) bool { return !q.live() })
	return append(list, p)
}

// failParked answers every parked call with err; the caller holds the
// handle's lock.
func failParked(list []parked, err error) []parked {
	for _, p := range list {
		p.reply.Fail(err)
	}
	return nil
}

// listener is a listening socket the enclave asked for.
type listener struct {
	s *Services
	h uint64
	l net.Listener

	mu      sync.Mutex
	cond    *sync.Cond // pending shrank, or closing
	pending []*conn
	err     error // the accept loop's failure, reported once pending drains
	closing bool
	parked  []parked // accepts waiting for a connection
}

// connState is where a connection is in its life.
type connState uint8

const (
	connDialing connState = iota
	connOpen
	connFailed
)

// conn is a TCP connection, accepted or dialed.
type conn struct {
	s *Services
	h uint64

	mu       sync.Mutex
	cond     *sync.Cond // buffers changed, or closing
	c        net.Conn
	state    connState
	dialErr  error
	reported bool // the dial's outcome was answered to net.accept
	local    string
	remote   string
	rbuf     []byte // the stream from offset rbase: bytes sent to the enclave stay until it acknowledges them
	rbase    uint64 // stream offset of rbuf[0]
	rerr     error  // io.EOF or the read failure, after rbuf drains
	wbuf     []byte
	werr     error
	closing  bool
	parked   []parked // calls waiting on the connection (read, write, the dial's accept)
}

// alloc assigns the next free handle to obj, round-robin over
// 1..MaxListeners+MaxConns so a closed handle is not reused at once.
// Called with s.mu held.
func (s *Services) alloc(obj any) (uint64, error) {
	if s.closed {
		return 0, errors.New("host: net: shutting down")
	}
	const n = MaxListeners + MaxConns
	for range n {
		s.next = s.next%n + 1
		if _, used := s.handles[s.next]; !used {
			s.handles[s.next] = obj
			return s.next, nil
		}
	}
	return 0, errors.New("host: net: no free handle")
}

// lookup returns the object of handle h.
func (s *Services) lookup(h uint64) (any, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	o, ok := s.handles[h]
	if !ok {
		return nil, fmt.Errorf("host: net: unknown handle %d", h)
	}
	return o, nil
}

// lookupConn returns the connection of handle h.
func (s *Services) lookupConn(h uint64) (*conn, error) {
	o, err := s.lookup(h)
	if err != nil {
		return nil, err
	}
	c, ok := o.(*conn)
	if !ok {
		return nil, fmt.Errorf("host: net: handle %d is not a connection", h)
	}
	return c, nil
}

// newConn registers a connection (accepted, or about to be dialed) under a
// fresh handle, within MaxConns.
func (s *Services) newConn(state connState) (*conn, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.nConns >= MaxConns {
		return nil, fmt.Errorf("host: net: %d connections open, the limit", MaxConns)
	}
	c := &conn{s: s, state: state}
	c.cond = sync.NewCond(&c.mu)
	h, err := s.alloc(c)
	if err != nil {
		return nil, err
	}
	c.h = h
	s.nConns++
	return c, nil
}

// forget removes handle h (closed by the enclave) and releases its count.
func (s *Services) forget(h uint64) any {
	s.mu.Lock()
	defer s.mu.Unlock()
	o, ok := s.handles[h]
	if !ok {
		return nil
	}
	delete(s.handles, h)
	switch o.(type) {
	case *listener:
		s.nListeners--
	case *conn:
		s.nConns--
	}
	return o
}

// matchListen returns the allowed address the enclave's addr names: the
// entry with the same port and, if addr names a host, the same host.
func (s *Services) matchListen(addr string) (string, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", fmt.Errorf("host: net: listen %q: %w", addr, err)
	}
	for _, a := range s.opts.Listen {
		ah, ap, _ := net.SplitHostPort(a)
		if ap == port && (host == "" || host == ah) {
			return a, nil
		}
	}
	return "", fmt.Errorf("host: net: listen %q: not allowed (cloister run --listen: %s)", addr, strings.Join(s.opts.Listen, ", "))
}

// dialAllowed applies the dial policy: any address when the list is
// empty, else an exact "host:port" entry or a "host:*" entry.
func (s *Services) dialAllowed(addr string) error {
	if len(s.opts.Dial) == 0 {
		return nil
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("host: net: dial %q: %w", addr, err)
	}
	if slices.Contains(s.opts.Dial, addr) || slices.Contains(s.opts.Dial, net.JoinHostPort(host, "*")) {
		return nil
	}
	return fmt.Errorf("host: net: dial %q: not allowed", addr)
}

// listen answers net.listen: bind the allowed address and start accepting.
func (s *Services) listen(req, resp []byte) (int, error) {
	bind, err := s.matchListen(string(req))
	if err != nil {
		return 0, err
	}
	s.mu.Lock()
	full := s.nListeners >= MaxListeners
	s.mu.Unlock()
	if full {
		return 0, fmt.Errorf("host: net: %d listeners open, the limit", MaxListeners)
	}
	// net.Listen on a local address does not block on the network.
	nl, err := net.Listen("tcp", bind)
	if err != nil {
		return 0, fmt.Errorf("host: net: %w", err)
	}
	l := &listener{s: s, l: nl}
	l.cond = sync.NewCond(&l.mu)
	s.mu.Lock()
	l.h, err = s.alloc(l)
	if err == nil {
		s.nListeners++
	}
	s.mu.Unlock()
	if err != nil {
		nl.Close()
		return 0, err
	}
	out, err := wire.HandleAddr(resp[:0], l.h, nl.Addr().String())
	if err != nil {
		s.forget(l.h)
		nl.Close()
		return 0, err
	}
	s.log.Info("enclave listens", "addr", nl.Addr().String(), "handle", l.h)
	s.wg.Add(1)
	go l.acceptLoop()
	return len(out), nil
}

// acceptLoop accepts connections into the pending queue until the
// listener closes, waiting while the queue is full.
func (l *listener) acceptLoop() {
	defer l.s.wg.Done()
	for {
		nc, err := l.l.Accept()
		if err != nil {
			l.mu.Lock()
			if !l.closing {
				l.err = err
			}
			l.kick()
			l.mu.Unlock()
			return
		}
		c, err := l.s.newConn(connOpen)
		if err != nil {
			l.s.log.Warn("refusing a connection", "from", nc.RemoteAddr().String(), "err", err)
			nc.Close()
			continue
		}
		c.c, c.local, c.remote = nc, nc.LocalAddr().String(), nc.RemoteAddr().String()
		c.startIO()
		l.mu.Lock()
		for len(l.pending) >= maxPendingAccepts && !l.closing {
			l.cond.Wait()
		}
		if l.closing {
			l.mu.Unlock()
			l.s.forget(c.h)
			c.close(true)
			return
		}
		l.pending = append(l.pending, c)
		l.kick()
		l.mu.Unlock()
	}
}

// kick answers the parked accepts that can now proceed. The caller holds
// l.mu and has just changed the listener's state.
func (l *listener) kick() {
	var resp [8 + boundary.MaxNetAddr]byte
	l.parked = slices.DeleteFunc(l.parked, func(p parked) bool {
		if !p.live() {
			return true
		}
		if !l.acceptReady() {
			return false
		}
		n, err := l.acceptLocked(resp[:])
		if err != nil {
			p.reply.Fail(err)
		} else {
			p.reply.Send(resp[:n])
		}
		return true
	})
}

// acceptReady reports whether an accept would answer now; l.mu is held.
func (l *listener) acceptReady() bool { return len(l.pending) > 0 || l.err != nil || l.closing }

// acceptLocked answers an accept on the listener; l.mu is held.
func (l *listener) acceptLocked(resp []byte) (int, error) {
	if len(l.pending) == 0 {
		switch {
		case l.closing:
			return 0, fmt.Errorf("host: net: accept: %w", net.ErrClosed)
		case l.err != nil:
			return 0, fmt.Errorf("host: net: accept: %w", l.err)
		}
		return 0, boundary.ErrWouldBlock
	}
	c := l.pending[0]
	l.pending = slices.Delete(l.pending, 0, 1)
	l.cond.Signal()
	out, err := wire.HandleAddr(resp[:0], c.h, c.remote)
	if err != nil {
		return 0, err
	}
	return len(out), nil
}

// close stops the listener and drops the connections nobody took.
func (l *listener) close() {
	l.mu.Lock()
	l.closing = true
	pending := l.pending
	l.pending = nil
	l.cond.Broadcast()
	l.parked = failParked(l.parked, fmt.Errorf("host: net: accept: %w", net.ErrClosed))
	l.mu.Unlock()
	l.l.Close()
	for _, c := range pending {
		l.s.forget(c.h)
		c.close(true)
	}
}

// accept answers net.accept: on a listener, the next pending connection;
// on a dialed connection, the dial's outcome (see package wire).
func (s *Services) accept(req, resp []byte) (int, error) {
	h, err := wire.ParseHandle(req)
	if err != nil {
		return 0, fmt.Errorf("host: net: accept: %w", err)
	}
	o, err := s.lookup(h)
	if err != nil {
		return 0, err
	}
	switch o := o.(type) {
	case *listener:
		o.mu.Lock()
		defer o.mu.Unlock()
		return o.acceptLocked(resp)
	case *conn:
		o.mu.Lock()
		defer o.mu.Unlock()
		return o.acceptLocked(resp)
	}
	return 0, fmt.Errorf("host: net: accept: bad handle %d", h)
}

// acceptReady reports whether an accept on a dialed connection (the
// dial's outcome) would answer now; c.mu is held.
func (c *conn) acceptReady() bool { return c.reported || c.state != connDialing || c.closing }

// acceptLocked answers an accept on a dialed connection: its dial's
// outcome, once; c.mu is held.
func (c *conn) acceptLocked(resp []byte) (int, error) {
	switch {
	case c.reported:
		return 0, fmt.Errorf("host: net: accept: handle %d is a connection", c.h)
	case c.state == connDialing && c.closing:
		return 0, fmt.Errorf("host: net: accept: %w", net.ErrClosed)
	case c.state == connDialing:
		return 0, boundary.ErrWouldBlock
	case c.state == connFailed:
		c.reported = true
		return 0, fmt.Errorf("host: net: %w", c.dialErr)
	}
	c.reported = true
	out, err := wire.HandleAddr(resp[:0], c.h, c.local)
	if err != nil {
		return 0, err
	}
	return len(out), nil
}

// dial answers net.dial at once with a handle; the dial runs on its own
// goroutine, and the enclave's net.accept on the handle waits (parked)
// until it is done.
func (s *Services) dial(req, resp []byte) (int, error) {
	timeout, addr, err := wire.ParseDial(req)
	if err != nil {
		return 0, fmt.Errorf("host: net: dial: %w", err)
	}
	if err := s.dialAllowed(addr); err != nil {
		return 0, err
	}
	d := time.Duration(min(timeout, uint64(maxDialTimeout)))
	if d <= 0 {
		d = defaultDialTimeout
	}
	c, err := s.newConn(connDialing)
	if err != nil {
		return 0, err
	}
	c.remote = addr
	out, err := wire.HandleAddr(resp[:0], c.h, "")
	if err != nil {
		s.forget(c.h)
		return 0, err
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		dialer := net.Dialer{Timeout: d}
		nc, err := dialer.DialContext(s.ctx, "tcp", addr)
		c.mu.Lock()
		switch {
		case err != nil:
			c.state, c.dialErr = connFailed, err
		case c.closing: // closed by the enclave while dialing
			nc.Close()
			c.state, c.dialErr = connFailed, net.ErrClosed
		default:
			c.c, c.state, c.local, c.remote = nc, connOpen, nc.LocalAddr().String(), nc.RemoteAddr().String()
		}
		open := c.state == connOpen
		if open {
			c.startIO()
		}
		c.kick()
		c.mu.Unlock()
	}()
	return len(out), nil
}

// startIO starts the connection's reader and writer goroutines.
func (c *conn) startIO() {
	c.s.wg.Add(2)
	go c.readLoop()
	go c.writeLoop()
}

// readLoop reads from the socket into rbuf while it has room.
func (c *conn) readLoop() {
	defer c.s.wg.Done()
	buf := make([]byte, ioChunk)
	for {
		c.mu.Lock()
		for len(c.rbuf) >= maxReadBuffer && !c.closing {
			c.cond.Wait()
		}
		if c.closing {
			c.mu.Unlock()
			return
		}
		room := maxReadBuffer - len(c.rbuf)
		c.mu.Unlock()
		n, err := c.c.Read(buf[:min(room, len(buf))])
		c.mu.Lock()
		c.rbuf = append(c.rbuf, buf[:n]...)
		if err != nil {
			c.rerr = err
		}
		c.kick()
		c.mu.Unlock()
		if err != nil {
			return
		}
	}
}

// writeLoop sends wbuf; once the enclave closed the connection it sends
// what is left (within lingerTimeout) and closes the socket.
func (c *conn) writeLoop() {
	defer c.s.wg.Done()
	defer c.c.Close()
	buf := make([]byte, ioChunk)
	for {
		c.mu.Lock()
		for len(c.wbuf) == 0 && !c.closing {
			c.cond.Wait()
		}
		if len(c.wbuf) == 0 || c.werr != nil && c.closing {
			c.mu.Unlock()
			return
		}
		n := copy(buf, c.wbuf)
		c.mu.Unlock()
		n, err := c.c.Write(buf[:n])
		c.mu.Lock()
		c.wbuf = c.wbuf[:copy(c.wbuf, c.wbuf[n:])]
		if err != nil {
			// Later writes fail with this error; what is buffered is lost,
			// as it would be in a kernel socket buffer.
			c.werr, c.wbuf = err, nil
		}
		c.kick()
		c.mu.Unlock()
	}
}

// kick answers the parked calls of the connection that can now proceed.
// The caller holds c.mu and has just changed the connection's state.
func (c *conn) kick() {
	if len(c.parked) == 0 {
		return
	}
	var small [8 + boundary.MaxNetAddr]byte
	c.parked = slices.DeleteFunc(c.parked, func(p parked) bool {
		if !p.live() {
			return true
		}
		var n int
		var out []byte
		var err error
		switch p.call {
		case boundary.CallNetAccept:
			if !c.acceptReady() {
				return false
			}
			n, err = c.acceptLocked(small[:])
			out = small[:n]
		case boundary.CallNetRead:
			_, max, off, _ := wire.ParseRead(p.req) // checked when parked
			if !c.readReady(off) {
				return false
			}
			// A held read's reply is small (its reserved space is);
			// the enclave's next read takes the rest at once.
			out, err = c.readLocked(min(max, boundary.MaxNetHeldRead), off)
		case boundary.CallNetWrite:
			if !c.writeReady() {
				return false
			}
			n, err = c.writeLocked(p.req[8:], small[:4])
			out = small[:n]
		}
		if err != nil {
			p.reply.Fail(err)
		} else {
			p.reply.Send(out) // copied: out may be c.rbuf
		}
		return true
	})
}

// close ends the connection: gracefully (buffered writes are sent, within
// lingerTimeout) when the enclave closes it, at once when force is set.
func (c *conn) close(force bool) {
	c.mu.Lock()
	c.closing = true
	nc := c.c
	c.cond.Broadcast()
	c.parked = failParked(c.parked, fmt.Errorf("host: net: %w", net.ErrClosed))
	c.mu.Unlock()
	if nc == nil {
		return // still dialing (the dial goroutine closes it) or never opened
	}
	if force {
		nc.Close()
		return
	}
	nc.SetWriteDeadline(time.Now().Add(lingerTimeout))
	if tc, ok := nc.(*net.TCPConn); ok {
		// Nothing more will be read: let the peer's writes fail rather than
		// fill a buffer nobody drains.
		tc.CloseRead()
	}
}

// read answers net.read from the read buffer.
func (s *Services) read(req, resp []byte) (int, error) {
	h, max, off, err := wire.ParseRead(req)
	if err != nil {
		return 0, fmt.Errorf("host: net: read: %w", err)
	}
	max = min(max, len(resp), boundary.MaxNetReadChunk)
	if max <= 0 {
		return 0, errors.New("host: net: read: zero-length read")
	}
	c, err := s.lookupConn(h)
	if err != nil {
		return 0, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	out, err := c.readLocked(max, off)
	return copy(resp, out), err
}

// readReady reports whether a read from stream offset off would answer
// now (data past off, the end of the stream, a failure, or a bad offset);
// c.mu is held.
func (c *conn) readReady(off uint64) bool {
	// Only a read from exactly the end of the buffered stream waits: one
	// from before it has bytes, and one from outside it is an error the
	// enclave must hear now, not at its deadline.
	return off != c.rbase+uint64(len(c.rbuf)) || c.state == connFailed || c.rerr != nil || c.closing
}

// readLocked answers a read of at most max bytes from stream offset off:
// the bytes before off, which the enclave has consumed, are dropped, and
// what follows is returned (a slice of c.rbuf, valid while c.mu is held)
// without being dropped, so that if the enclave gives up on this reply it
// asks again from the same offset and loses nothing. c.mu is held.
func (c *conn) readLocked(max int, off uint64) ([]byte, error) {
	if max <= 0 {
		return nil, errors.New("host: net: read: zero-length read")
	}
	max = min(max, boundary.MaxNetReadChunk)
	if off < c.rbase || off-c.rbase > uint64(len(c.rbuf)) {
		return nil, fmt.Errorf("host: net: read: offset %d outside the buffered stream [%d, %d]", off, c.rbase, c.rbase+uint64(len(c.rbuf)))
	}
	if k := int(off - c.rbase); k > 0 {
		c.rbuf = c.rbuf[:copy(c.rbuf, c.rbuf[k:])]
		c.rbase = off
		c.cond.Broadcast()
	}
	if len(c.rbuf) > 0 {
		return c.rbuf[:min(max, len(c.rbuf))], nil
	}
	switch {
	case c.state == connFailed:
		return nil, fmt.Errorf("host: net: read: %w", c.dialErr)
	case errors.Is(c.rerr, io.EOF):
		return nil, nil
	case c.rerr != nil:
		return nil, fmt.Errorf("host: net: read: %w", c.rerr)
	case c.closing:
		return nil, fmt.Errorf("host: net: read: %w", net.ErrClosed)
	}
	return nil, boundary.ErrWouldBlock
}

// write answers net.write into the write buffer.
func (s *Services) write(req, resp []byte) (int, error) {
	if len(req) < 9 {
		return 0, errors.New("host: net: write: malformed request")
	}
	h, data := binary.LittleEndian.Uint64(req), req[8:]
	c, err := s.lookupConn(h)
	if err != nil {
		return 0, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.writeLocked(data, resp)
}

// writeReady reports whether a write would answer now; c.mu is held.
func (c *conn) writeReady() bool {
	return c.state == connFailed || c.werr != nil || c.closing || c.state != connDialing && len(c.wbuf) < maxWriteBuffer
}

// writeLocked buffers what fits of data and answers the count; c.mu is
// held.
func (c *conn) writeLocked(data, resp []byte) (int, error) {
	switch {
	case c.state == connFailed:
		return 0, fmt.Errorf("host: net: write: %w", c.dialErr)
	case c.werr != nil:
		return 0, fmt.Errorf("host: net: write: %w", c.werr)
	case c.closing:
		return 0, fmt.Errorf("host: net: write: %w", net.ErrClosed)
	case c.state == connDialing:
		return 0, boundary.ErrWouldBlock
	}
	room := maxWriteBuffer - len(c.wbuf)
	if room <= 0 {
		return 0, boundary.ErrWouldBlock
	}
	n := min(room, len(data))
	c.wbuf = append(c.wbuf, data[:n]...)
	c.cond.Broadcast()
	binary.LittleEndian.PutUint32(resp, uint32(n))
	return 4, nil
}

// parkNet is Defer for the network calls that may have to wait: a call
// that can answer now is left to Handle (false); one that cannot is
// parked on its handle (true) and answered by kick. Malformed requests and
// unknown handles are left to Handle, which fails them.
func (s *Services) parkNet(call uint32, req []byte, reply boundary.Reply) bool {
	if len(req) < 8 {
		return false
	}
	h := binary.LittleEndian.Uint64(req)
	o, err := s.lookup(h)
	if err != nil {
		return false
	}
	p := parked{call: call, req: append([]byte(nil), req...), reply: reply}
	switch o := o.(type) {
	case *listener:
		o.mu.Lock()
		defer o.mu.Unlock()
		if call != boundary.CallNetAccept || len(req) != 8 || o.acceptReady() {
			return false
		}
		o.parked = park(o.parked, p)
		return true
	case *conn:
		o.mu.Lock()
		defer o.mu.Unlock()
		switch call {
		case boundary.CallNetAccept:
			if len(req) != 8 || o.acceptReady() {
				return false
			}
		case boundary.CallNetRead:
			_, max, off, err := wire.ParseRead(req)
			if err != nil || max <= 0 || o.readReady(off) {
				return false
			}
		case boundary.CallNetWrite:
			if len(req) < 9 || o.writeReady() {
				return false
			}
		default:
			return false
		}
		o.parked = park(o.parked, p)
		return true
	}
	return false
}

// closeHandle answers net.close for a listener or a connection.
func (s *Services) closeHandle(req []byte) (int, error) {
	h, err := wire.ParseHandle(req)
	if err != nil {
		return 0, fmt.Errorf("host: net: close: %w", err)
	}
	switch o := s.forget(h).(type) {
	case *listener:
		o.close()
	case *conn:
		o.close(false)
	default:
		return 0, fmt.Errorf("host: net: close: unknown handle %d", h)
	}
	return 0, nil
}
