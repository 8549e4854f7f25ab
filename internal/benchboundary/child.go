package benchboundary

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc"

	"github.com/cloister-dev/cloister/boundary"
)

// Child is the enclave side of Run, for the process Run starts (ChildEnv
// is set in its environment). It attaches the transports passed as
// descriptors 3 and up, then makes the measurements the host asks for on
// the control socket until the host asks it to exit or closes the socket.
// It writes nothing to standard output.
func Child(ctx context.Context) error {
	c, err := attachChild()
	if err != nil {
		return fmt.Errorf("benchboundary: enclave side: %w", err)
	}
	err = c.serve(ctx)
	if cerr := c.close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("benchboundary: enclave side: %w", err)
	}
	return nil
}

// child is the enclave side's state.
type child struct {
	ctrl   *os.File
	region *boundary.Region
	client *boundary.Client
	uds    *udsClient
	grpc   *grpc.ClientConn
	pp     *sharedPage
}

func attachChild() (_ *child, err error) {
	c := &child{}
	defer func() {
		if err != nil {
			c.close()
		}
	}()
	c.ctrl = os.NewFile(fdControl, "control")
	if c.ctrl == nil {
		return nil, errors.New("no control descriptor")
	}
	rf := os.NewFile(fdRegion, "boundary")
	if c.region, err = boundary.Attach(rf, regionConfig); err != nil {
		rf.Close()
		return nil, err
	}
	rf.Close()
	table, err := echoTable()
	if err != nil {
		return nil, err
	}
	if c.client, err = boundary.NewClient(c.region, table); err != nil {
		return nil, err
	}
	if err := unix.SetNonblock(fdUDS, false); err != nil {
		return nil, fmt.Errorf("socket: %w", err)
	}
	c.uds = newUDSClient(fdUDS)
	conn, err := netConn(os.NewFile(fdGRPC, "grpc"))
	if err != nil {
		return nil, err
	}
	if c.grpc, err = newGRPCClient(conn); err != nil {
		conn.Close()
		return nil, err
	}
	pf := os.NewFile(fdPingPong, "pingpong")
	c.pp, err = mapPage(pf)
	pf.Close()
	if err != nil {
		return nil, err
	}
	return c, nil
}

// serve answers requests until an exit request or EOF.
func (c *child) serve(ctx context.Context) error {
	dec, enc := json.NewDecoder(c.ctrl), json.NewEncoder(c.ctrl)
	for {
		var req request
		if err := dec.Decode(&req); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return fmt.Errorf("read request: %w", err)
		}
		if req.Kind == "" {
			return nil
		}
		var rep reply
		smp, err := c.run(ctx, req)
		if err != nil {
			rep.Err = err.Error()
		} else {
			rep.Sample = smp
		}
		if err := enc.Encode(rep); err != nil {
			return fmt.Errorf("send reply: %w", err)
		}
	}
}

// repFunc makes one repetition of at most d and maxCalls calls.
type repFunc func(d time.Duration, maxCalls int64) (sample, error)

// run makes the repetition req asks for (after a warm-up one, if asked).
func (c *child) run(ctx context.Context, req request) (sample, error) {
	if req.RepNs <= 0 || req.MaxCalls < 1 {
		return sample{}, fmt.Errorf("bad request %+v", req)
	}
	var rep repFunc
	switch req.Kind {
	case kindRingRTT:
		buf, out := make([]byte, msgSize), make([]byte, msgSize)
		rep = serial(64, func(n int64) (int64, error) {
			for i := range n {
				m, err := c.client.Call(ctx, callEcho, buf, out)
				if err != nil {
					return i, err
				}
				if m != msgSize {
					return i, fmt.Errorf("ring: response of %d bytes, want %d", m, msgSize)
				}
			}
			return n, nil
		})
	case kindUDSRTT:
		rep = serial(8, c.uds.roundTrip)
	case kindGRPCRTT:
		in, out := make([]byte, msgSize), make([]byte, 0, msgSize)
		rep = serial(1, func(n int64) (int64, error) {
			for i := range n {
				if err := c.grpc.Invoke(ctx, grpcMethod, &in, &out); err != nil {
					return i, fmt.Errorf("grpc: %w", err)
				}
				if len(out) != msgSize {
					return i, fmt.Errorf("grpc: response of %d bytes, want %d", len(out), msgSize)
				}
			}
			return n, nil
		})
	case kindPingPong:
		defer c.pp.word(offStop).Store(1) // releases the host's spinning peer
		var seq uint64
		rep = serial(256, func(n int64) (int64, error) { return c.pp.ping(&seq, n) })
	case kindRingTput:
		rep = c.ringBatch(ctx)
	case kindUDSTput:
		rep = serial(udsDepth, func(int64) (int64, error) { return c.uds.pipelined() })
	default:
		return sample{}, fmt.Errorf("unknown measurement %q", req.Kind)
	}
	d := time.Duration(req.RepNs)
	if req.Warmup {
		if _, err := rep(d, req.MaxCalls); err != nil {
			return sample{}, fmt.Errorf("%s: warm-up: %w", req.Kind, err)
		}
	}
	sleeps := c.client.Counters().Sleeps
	smp, err := rep(d, req.MaxCalls)
	if err != nil {
		return sample{}, fmt.Errorf("%s: %w", req.Kind, err)
	}
	if req.Kind == kindRingRTT || req.Kind == kindRingTput {
		smp.Sleeps = int64(c.client.Counters().Sleeps - sleeps)
	}
	return smp, nil
}

// serial returns a repetition that runs step(k) — k calls, one after the
// other — until d has passed or maxCalls calls are done; the clock is read
// once per step, not per call. At least one step always runs.
func serial(k int64, step func(n int64) (int64, error)) repFunc {
	return func(d time.Duration, maxCalls int64) (sample, error) {
		var calls int64
		start := time.Now()
		for {
			n, err := step(min(k, maxCalls-calls))
			calls += n
			if err != nil {
				return sample{}, err
			}
			el := time.Since(start)
			if el >= d || calls >= maxCalls {
				return sample{Calls: calls, Ns: el.Nanoseconds()}, nil
			}
		}
	}
}

// ringBatch returns the batched ring repetition: batchGoroutines
// goroutines, each sending Batches of batchSize calls (so each holds a
// channel of its own) until d has passed or maxCalls calls are done.
func (c *child) ringBatch(ctx context.Context) repFunc {
	batches := make([][]boundary.BatchCall, batchGoroutines)
	for g := range batches {
		batches[g] = make([]boundary.BatchCall, batchSize)
		for i := range batches[g] {
			batches[g][i] = boundary.BatchCall{Call: callEcho, Req: make([]byte, msgSize), Resp: make([]byte, msgSize)}
		}
	}
	return func(d time.Duration, maxCalls int64) (sample, error) {
		var total atomic.Int64
		var wg sync.WaitGroup
		errs := make([]error, batchGoroutines)
		start := time.Now()
		deadline := start.Add(d)
		for g := range batches {
			wg.Go(func() {
				calls := batches[g]
				for {
					if err := c.client.Batch(ctx, calls); err != nil {
						errs[g] = err
						return
					}
					for i := range calls {
						if calls[i].Err != nil || calls[i].N != msgSize {
							errs[g] = fmt.Errorf("ring batch: call %d: %d bytes, %w", i, calls[i].N, calls[i].Err)
							return
						}
					}
					if total.Add(batchSize) >= maxCalls || !time.Now().Before(deadline) {
						return
					}
				}
			})
		}
		wg.Wait()
		el := time.Since(start)
		if err := errors.Join(errs...); err != nil {
			return sample{}, err
		}
		return sample{Calls: total.Load(), Ns: el.Nanoseconds()}, nil
	}
}

// ping makes n ping-pong round trips: write the next sequence number to
// ping, spin until the host's echo appears in pong. It gives up if the
// host makes no progress for stallLimit.
func (p *sharedPage) ping(seq *uint64, n int64) (int64, error) {
	ping, pong := p.word(offPing), p.word(offPong)
	for i := range n {
		*seq++
		v := *seq
		ping.Store(v)
		for spins := 1; pong.Load() != v; spins++ {
			if spins%(1<<20) == 0 {
				if err := p.waitStalled(pong, v); err != nil {
					return i, err
				}
			}
		}
	}
	return n, nil
}

// waitStalled is the slow path of a ping: the echo has not come after a
// million spins (the host peer was likely descheduled). It keeps spinning,
// checking the clock, for up to stallLimit.
func (p *sharedPage) waitStalled(pong *atomic.Uint64, v uint64) error {
	start := time.Now()
	for pong.Load() != v {
		if time.Since(start) > stallLimit {
			return fmt.Errorf("ping-pong: no echo of %d for %v", v, stallLimit)
		}
	}
	return nil
}

func (c *child) close() error {
	var errs []error
	if c.grpc != nil {
		if err := c.grpc.Close(); err != nil {
			errs = append(errs, fmt.Errorf("grpc: %w", err))
		}
	}
	if c.client != nil {
		c.client.Close()
	}
	if c.region != nil {
		if err := c.region.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	if c.uds != nil {
		unix.Close(c.uds.fd)
	}
	if c.pp != nil {
		if err := c.pp.close(); err != nil {
			errs = append(errs, err)
		}
	}
	if c.ctrl != nil {
		c.ctrl.Close()
	}
	return errors.Join(errs...)
}
