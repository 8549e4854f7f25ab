package enclave

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/cloister-dev/cloister/boundary"
	"github.com/cloister-dev/cloister/host/wire"
	"github.com/cloister-dev/cloister/tee"
)

// Env is what an enclave app gets from Run: the host's services, through
// the boundary. It is safe for concurrent use.
type Env struct {
	region *boundary.Region
	client *boundary.Client
	plat   tee.Platform
	store  *Store
	log    *slog.Logger
	// secrets is the key broker client of Secret (secret.go).
	secrets secretState

	// ctx is the Env's lifetime: it ends when Run returns, never on
	// SIGTERM, so an app can still drain connections while stopping.
	// Listeners and connections derive theirs from it.
	ctx    context.Context
	cancel context.CancelFunc
}

// newEnv builds the Env over an attached region. plat is the platform the
// process opened itself (tee=sgx); nil for the kinds whose platform is
// served by the host. On error it releases the region.
func newEnv(region *boundary.Region, kind string, plat tee.Platform, log *slog.Logger) (*Env, error) {
	fail := func(err error) (*Env, error) {
		region.Close()
		return nil, err
	}
	table, err := wire.Table()
	if err != nil {
		return fail(fmt.Errorf("enclave: %w", err))
	}
	client, err := boundary.NewClient(region, table)
	if err != nil {
		return fail(fmt.Errorf("enclave: %w", err))
	}
	if handedOff() {
		client.Resume() // a loader used the region before us (handoff.go)
	}
	e := &Env{region: region, client: client, log: log}
	e.ctx, e.cancel = context.WithCancel(context.Background())
	e.store = &Store{env: e}
	switch tee.Kind(kind) {
	// In a confidential VM (tdx, sev-snp) `cloister run` is inside the TEE
	// with the app and holds configfs-tsm: the platform is served through
	// the rings as on the simulator (DESIGN.md "Platforms").
	case tee.KindSimSGX, tee.KindSimTDX, tee.KindTDX, tee.KindSNP:
		ctx, cancel := context.WithTimeout(e.ctx, startTimeout)
		p, err := newSimPlatform(ctx, e, tee.Kind(kind))
		cancel()
		if err != nil {
			e.cancel()
			client.Close()
			return fail(err)
		}
		e.plat = p
	case tee.KindSGX:
		if plat == nil || plat.Kind() != tee.KindSGX {
			e.cancel()
			client.Close()
			return fail(errors.New("enclave: tee sgx: no Gramine platform opened"))
		}
		e.plat = plat
	default:
		// Hardware kinds would open tee/probe here, in this process.
		e.cancel()
		client.Close()
		return fail(fmt.Errorf("enclave: tee %q: only the simulator kinds are supported for now", kind))
	}
	return e, nil
}

// close ends every host call and unmaps the boundary. No Env method may be
// used afterwards.
func (e *Env) close() {
	e.cancel()
	e.client.Close()
	e.region.Close()
}

// Bounds of host calls that have no caller context.
const (
	// closeTimeout bounds the host call that releases a handle (Close of
	// a listener or connection has no context): a stalled host delays
	// Close by at most this long, and the handle is forgotten either way.
	closeTimeout = time.Second
	// startTimeout bounds the host calls Run makes before the app starts.
	startTimeout = 10 * time.Second
)

// call makes one host call bounded by ctx; closing the Env (which closes
// the client) ends it too.
func (e *Env) call(ctx context.Context, call uint32, req, resp []byte) (int, error) {
	return e.client.Call(ctx, call, req, resp)
}

// Platform returns the platform the enclave runs on: evidence binding
// report data, sealing keys for its own identity, and that identity. Use
// it with tee.NewSealer to seal records before Store.Put.
func (e *Env) Platform() tee.Platform { return e.plat }

// Store returns the host's storage of opaque records.
func (e *Env) Store() *Store { return e.store }

// Logger returns a structured logger writing to stderr, which the host
// forwards; never log secrets.
func (e *Env) Logger() *slog.Logger { return e.log }

// UntrustedNow returns the host's clock. The host can set it to anything:
// use it for logs and timeouts, never to decide whether a certificate,
// token or lease is valid.
func (e *Env) UntrustedNow(ctx context.Context) (time.Time, error) {
	var b [8]byte
	n, err := e.client.Call(ctx, boundary.CallTimeNowUntrusted, nil, b[:])
	if err != nil {
		return time.Time{}, fmt.Errorf("enclave: untrusted time: %w", err)
	}
	if n != 8 {
		return time.Time{}, errors.New("enclave: untrusted time: malformed response")
	}
	return time.Unix(0, int64(binary.LittleEndian.Uint64(b[:]))), nil
}
