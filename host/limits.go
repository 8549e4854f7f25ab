package host

import "time"

// All caps of the host services live here (STYLE.md: one limits file).
// Every resource the enclave can make the host hold is bounded by one of
// them, so a broken or hostile app cannot exhaust the host.
const (
	// MaxListeners bounds the listeners open at once.
	MaxListeners = 16
	// MaxConns bounds the connections open at once (accepted, dialed, or
	// dialing). Handles are 1..MaxListeners+MaxConns.
	MaxConns = 1000
	// maxPendingAccepts bounds the connections a listener has accepted
	// but the enclave has not taken yet; beyond it the host stops
	// accepting and the kernel's backlog takes over.
	maxPendingAccepts = 64
	// maxReadBuffer bounds the bytes read from a connection and not yet
	// taken by the enclave; beyond it the host stops reading and TCP flow
	// control pushes back on the peer.
	maxReadBuffer = 256 << 10
	// maxWriteBuffer bounds the bytes the enclave wrote and the host has
	// not yet sent; beyond it net.write answers would-block.
	maxWriteBuffer = 256 << 10
	// ioChunk is the size of one read from a socket.
	ioChunk = 32 << 10
	// lingerTimeout bounds how long a closed connection may take to send
	// what the enclave wrote before closing it, as SO_LINGER would.
	lingerTimeout = 5 * time.Second
	// defaultDialTimeout applies when the enclave gives none; maxDialTimeout
	// caps what it may ask for.
	defaultDialTimeout = 30 * time.Second
	maxDialTimeout     = 2 * time.Minute
	// DefaultGrace is how long Run waits after SIGTERM before it kills the
	// app.
	DefaultGrace = 5 * time.Second
)
