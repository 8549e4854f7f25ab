package host

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/cloister-dev/cloister/boundary"
	"github.com/cloister-dev/cloister/host/wire"
	"github.com/cloister-dev/cloister/tee"
)

// ServiceOptions configures the host services.
type ServiceOptions struct {
	// Listen lists the "host:port" addresses the enclave may listen on, as
	// the host binds them. The enclave names one by port (and by host, if
	// it gives one): listening on ":8443" binds the entry with port 8443.
	// An entry with port 0 binds a free port; the enclave learns it from
	// its listener's Addr. Empty: the enclave may not listen.
	Listen []string
	// Dial lists the "host:port" addresses the enclave may dial ("host:*"
	// allows every port of host). Empty: any TCP address may be dialed,
	// as an ordinary process could; the enclave protects its own traffic
	// with TLS, and the list is for operators who want to fence it in.
	Dial []string
	// Store keeps the enclave's sealed records; required.
	Store Store
	// Platform answers evidence and the simulator's identity and sealing
	// key calls (the simulator's quoting enclave lives in the host, as
	// Intel's does outside the app enclave). Nil: those calls fail.
	Platform tee.Platform
	// Logger receives the services' log; nil discards it.
	Logger *slog.Logger
	// Now is the host clock answered to time.now_untrusted; nil means
	// time.Now. The enclave labels it untrusted.
	Now func() time.Time
}

// Services serves Cloister's host calls (network, storage, untrusted time,
// evidence) for one enclave. Handle is its boundary.Handler and Defer its
// boundary.DeferFunc; neither blocks: sockets are read and written by
// goroutines into bounded buffers, network calls that cannot proceed are
// parked on their handle and answered when they can, and storage calls are
// answered by a storage goroutine.
type Services struct {
	opts ServiceOptions
	log  *slog.Logger
	now  func() time.Time

	ctx    context.Context // ends at Close: stops dials and goroutines
	cancel context.CancelFunc
	wg     sync.WaitGroup

	storageQ chan storageJob // deferred storage calls, in the order taken

	mu         sync.Mutex
	handles    map[uint64]any // *listener or *conn
	next       uint64
	nListeners int
	nConns     int
	closed     bool
}

// NewServices checks o and returns the services.
func NewServices(o ServiceOptions) (*Services, error) {
	if o.Store == nil {
		return nil, errors.New("host: services: no store")
	}
	for _, a := range o.Listen {
		if _, _, err := net.SplitHostPort(a); err != nil {
			return nil, fmt.Errorf("host: services: listen address %q: %w", a, err)
		}
	}
	for _, a := range o.Dial {
		if _, _, err := net.SplitHostPort(a); err != nil {
			return nil, fmt.Errorf("host: services: dial address %q: %w", a, err)
		}
	}
	s := &Services{opts: o, log: o.Logger, now: o.Now, handles: make(map[uint64]any)}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = time.Now
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.storageQ = make(chan storageJob, storageQueue)
	s.wg.Go(s.storageWorker)
	return s, nil
}

// storageQueue bounds the storage calls queued for the storage goroutine;
// the boundary holds at most MaxPendingPerChannel per channel anyway.
const storageQueue = boundary.MaxPendingPerChannel * boundary.MaxChannels

// storageJob is one deferred storage call.
type storageJob struct {
	call  uint32
	req   []byte // owned copy
	reply boundary.Reply
}

// Defer is the boundary.DeferFunc of the host services. Storage calls are
// answered later, by one storage goroutine in the order they were taken
// (so a batch of puts lands in order), so that a slow store (a bbolt
// fsync) does not stall the Serve goroutine and with it the network calls
// of every channel. Network accept, read and write calls that cannot
// proceed now are parked on their handle and answered when they can (see
// network.go): they are ordinary pending calls, bounded by the enclave's
// deadline and cancelled by its cancel frame. Other calls are answered by
// Handle. Install it with Server.SetDefer; like Handle, it must not run
// during or after Close.
func (s *Services) Defer(call uint32, req []byte, reply boundary.Reply) bool {
	switch call {
	case boundary.CallNetAccept, boundary.CallNetRead, boundary.CallNetWrite:
		return s.parkNet(call, req, reply)
	case boundary.CallStorageGet, boundary.CallStoragePut, boundary.CallStorageDelete,
		boundary.CallStorageList, boundary.CallStorageCommit:
	default:
		return false
	}
	select {
	case s.storageQ <- storageJob{call: call, req: append([]byte(nil), req...), reply: reply}:
		return true
	default:
		return false // queue full: answer now, on the Serve goroutine
	}
}

// storageWorker answers the deferred storage calls until Close.
func (s *Services) storageWorker() {
	resp := make([]byte, max(boundary.MaxStorageValue, boundary.MaxStorageList))
	for job := range s.storageQ {
		bound := 0
		switch job.call {
		case boundary.CallStorageGet:
			bound = boundary.MaxStorageValue
		case boundary.CallStorageList:
			bound = boundary.MaxStorageList
		}
		n, err := s.Handle(job.call, job.req, resp[:bound])
		if err != nil {
			job.reply.Fail(err)
			continue
		}
		job.reply.Send(resp[:n])
	}
}

// Close closes every listener and connection (failing their parked calls)
// and waits for their goroutines. The boundary.Server must have stopped:
// no Handle may run during or after Close.
func (s *Services) Close() error {
	s.mu.Lock()
	s.closed = true
	objs := make([]any, 0, len(s.handles))
	for _, o := range s.handles {
		objs = append(objs, o)
	}
	clear(s.handles)
	s.mu.Unlock()
	s.cancel()
	close(s.storageQ)
	for _, o := range objs {
		switch o := o.(type) {
		case *listener:
			o.close()
		case *conn:
			o.close(true)
		}
	}
	s.wg.Wait()
	return nil
}

// Handle is the boundary.Handler of the host services. It runs on the
// server's goroutine (and, for the storage calls Defer takes, on the
// storage goroutine) and returns promptly: storage calls touch the local
// store, evidence signs a quote, and network calls only move bytes between
// the rings and per-connection buffers.
func (s *Services) Handle(call uint32, req, resp []byte) (int, error) {
	switch call {
	case boundary.CallNetListen:
		return s.listen(req, resp)
	case boundary.CallNetAccept:
		return s.accept(req, resp)
	case boundary.CallNetDial:
		return s.dial(req, resp)
	case boundary.CallNetRead:
		return s.read(req, resp)
	case boundary.CallNetWrite:
		return s.write(req, resp)
	case boundary.CallNetClose:
		return s.closeHandle(req)
	case boundary.CallStorageGet:
		return s.storageGet(req, resp)
	case boundary.CallStoragePut:
		return s.storagePut(req)
	case boundary.CallStorageDelete:
		return s.storageDelete(req)
	case boundary.CallStorageList:
		return s.storageList(req, resp)
	case boundary.CallStorageCommit:
		return s.storageCommit(req)
	case boundary.CallTimeNowUntrusted:
		binary.LittleEndian.PutUint64(resp, uint64(s.now().UnixNano()))
		return 8, nil
	case boundary.CallEvidenceQuote:
		return s.quote(req, resp)
	case wire.CallSimIdentity:
		return s.identity(resp)
	case wire.CallSimSealKey:
		return s.sealKey(req, resp)
	}
	return 0, fmt.Errorf("host: call %#x: no such service", call)
}

// storageGet answers boundary.ErrNotFound (typed CodeNotFound, which the enclave branches on)
// for a missing record.
func (s *Services) storageGet(req, resp []byte) (int, error) {
	v, err := s.opts.Store.Get(s.ctx, req)
	if errors.Is(err, ErrNotFound) {
		return 0, boundary.ErrNotFound
	}
	if err != nil {
		return 0, err
	}
	if len(v) > len(resp) {
		return 0, fmt.Errorf("host: storage: get: record of %d bytes exceeds the call's bound", len(v))
	}
	return copy(resp, v), nil
}

func (s *Services) storagePut(req []byte) (int, error) {
	key, rec, err := wire.ParseKeyRecord(req)
	if err != nil {
		return 0, fmt.Errorf("host: storage: put: %w", err)
	}
	return 0, s.opts.Store.Put(s.ctx, key, rec)
}

func (s *Services) storageDelete(req []byte) (int, error) {
	if err := checkKey(req); err != nil {
		return 0, err
	}
	return 0, s.opts.Store.Delete(s.ctx, req)
}

// storageCommit applies a storage.commit batch in one Store transaction.
func (s *Services) storageCommit(req []byte) (int, error) {
	ops, err := wire.ParseCommitRequest(req)
	if err != nil {
		return 0, fmt.Errorf("host: storage: commit: %w", err)
	}
	return 0, s.opts.Store.CommitBatch(s.ctx, ops)
}

// storageList answers one page: as many keys as fit the response bound.
// The enclave asks again after the last key it got, until a page is empty.
func (s *Services) storageList(req, resp []byte) (int, error) {
	prefix, after, err := wire.ParseListRequest(req)
	if err != nil {
		return 0, fmt.Errorf("host: storage: list: %w", err)
	}
	page := resp[:0]
	err = s.opts.Store.Keys(s.ctx, prefix, after, func(k []byte) bool {
		var ok bool
		page, ok = wire.AppendListKey(page, k, len(resp))
		return ok
	})
	if err != nil {
		return 0, err
	}
	return len(page), nil
}

// quote answers evidence.quote. For the simulator the request is the 64
// bytes of report data and the answer the sim quote: the host holds the sim
// PKI and the measured identity, as SGX's quoting enclave sits outside the
// app enclave.
func (s *Services) quote(req, resp []byte) (int, error) {
	if s.opts.Platform == nil {
		return 0, errors.New("host: evidence: no platform")
	}
	if len(req) != 64 {
		return 0, fmt.Errorf("host: evidence: report data is %d bytes, want 64", len(req))
	}
	ev, err := s.opts.Platform.Evidence(s.ctx, [64]byte(req))
	if err != nil {
		return 0, fmt.Errorf("host: evidence: %w", err)
	}
	if len(ev) > len(resp) {
		return 0, fmt.Errorf("host: evidence: %d bytes exceed the call's bound", len(ev))
	}
	return copy(resp, ev), nil
}

// identity answers sim.identity: what the host measured.
func (s *Services) identity(resp []byte) (int, error) {
	if s.opts.Platform == nil {
		return 0, errors.New("host: identity: no platform")
	}
	b, err := wire.EncodeIdentity(resp[:0], s.opts.Platform.Kind(), s.opts.Platform.Identity())
	if err != nil {
		return 0, fmt.Errorf("host: identity: %w", err)
	}
	return len(b), nil
}

// sealKey answers sim.seal_key. The simulator's sealing secret lives in the
// host's sim directory, so the host derives the key and hands it over the
// boundary. That is acceptable only for the simulator: on SGX, EGETKEY runs
// inside the enclave and the host never sees a sealing key.
func (s *Services) sealKey(req, resp []byte) (int, error) {
	if s.opts.Platform == nil {
		return 0, errors.New("host: seal key: no platform")
	}
	kr, err := wire.ParseSealKeyRequest(req)
	if err != nil {
		return 0, fmt.Errorf("host: seal key: %w", err)
	}
	k, err := s.opts.Platform.SealKey(s.ctx, kr)
	if err != nil {
		return 0, fmt.Errorf("host: seal key: %w", err)
	}
	if len(k) > len(resp) {
		return 0, errors.New("host: seal key: key exceeds the call's bound")
	}
	n := copy(resp, k)
	clear(k)
	return n, nil
}
