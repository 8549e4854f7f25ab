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
// goroutine. Handlers only move bytes between those buffers and the rings,
// answer boundary.ErrWouldBlock when there is nothing to move, and the
// goroutines ring the handle's event slot when there is.

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
	rbuf     []byte
	rerr     error // io.EOF or the read failure, after rbuf drains
	wbuf     []byte
	werr     error
	closing  bool
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
			l.mu.Unlock()
			l.s.ev.Notify(l.h)
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
		l.mu.Unlock()
		l.s.ev.Notify(l.h)
	}
}

// close stops the listener and drops the connections nobody took.
func (l *listener) close() {
	l.mu.Lock()
	l.closing = true
	pending := l.pending
	l.pending = nil
	l.cond.Broadcast()
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
		if len(o.pending) == 0 {
			if o.err != nil {
				return 0, fmt.Errorf("host: net: accept: %w", o.err)
			}
			return 0, boundary.ErrWouldBlock
		}
		c := o.pending[0]
		o.pending = slices.Delete(o.pending, 0, 1)
		o.cond.Signal()
		out, err := wire.HandleAddr(resp[:0], c.h, c.remote)
		if err != nil {
			return 0, err
		}
		return len(out), nil
	case *conn:
		o.mu.Lock()
		defer o.mu.Unlock()
		switch {
		case o.reported:
			return 0, fmt.Errorf("host: net: accept: handle %d is a connection", h)
		case o.state == connDialing:
			return 0, boundary.ErrWouldBlock
		case o.state == connFailed:
			o.reported = true
			return 0, fmt.Errorf("host: net: %w", o.dialErr)
		}
		o.reported = true
		out, err := wire.HandleAddr(resp[:0], o.h, o.local)
		if err != nil {
			return 0, err
		}
		return len(out), nil
	}
	return 0, fmt.Errorf("host: net: accept: bad handle %d", h)
}

// dial answers net.dial at once with a handle; the dial runs on its own
// goroutine and rings the handle's slot when it is done.
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
		c.mu.Unlock()
		if open {
			c.startIO()
		}
		s.ev.Notify(c.h)
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
		c.mu.Unlock()
		c.s.ev.Notify(c.h)
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
		c.mu.Unlock()
		c.s.ev.Notify(c.h)
	}
}

// close ends the connection: gracefully (buffered writes are sent, within
// lingerTimeout) when the enclave closes it, at once when force is set.
func (c *conn) close(force bool) {
	c.mu.Lock()
	c.closing = true
	nc := c.c
	c.cond.Broadcast()
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
	h, max, err := wire.ParseRead(req)
	if err != nil {
		return 0, fmt.Errorf("host: net: read: %w", err)
	}
	max = min(max, len(resp), boundary.MaxNetChunk)
	if max <= 0 {
		return 0, errors.New("host: net: read: zero-length read")
	}
	c, err := s.lookupConn(h)
	if err != nil {
		return 0, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.rbuf) > 0 {
		n := copy(resp[:max], c.rbuf)
		c.rbuf = c.rbuf[:copy(c.rbuf, c.rbuf[n:])]
		c.cond.Broadcast()
		return n, nil
	}
	switch {
	case c.state == connFailed:
		return 0, fmt.Errorf("host: net: read: %w", c.dialErr)
	case errors.Is(c.rerr, io.EOF):
		return 0, nil
	case c.rerr != nil:
		return 0, fmt.Errorf("host: net: read: %w", c.rerr)
	}
	return 0, boundary.ErrWouldBlock
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
	switch {
	case c.state == connDialing:
		return 0, boundary.ErrWouldBlock
	case c.state == connFailed:
		return 0, fmt.Errorf("host: net: write: %w", c.dialErr)
	case c.werr != nil:
		return 0, fmt.Errorf("host: net: write: %w", c.werr)
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
