package benchboundary

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"runtime"
	"slices"
	"time"
)

// Options configure Run. Zero fields take the defaults named below.
type Options struct {
	// Duration is the time spent on each measurement: one warm-up
	// repetition and Reps measured ones share it equally. Default 1 s.
	// The measurements are interleaved: Run makes one repetition of each
	// in turn, Reps+1 rounds (the first is the warm-up), so a change in
	// the machine's load affects all of them alike.
	Duration time.Duration
	// Reps is the number of measured repetitions; Run reports the median.
	// Default 5.
	Reps int
	// MaxCalls bounds the calls of one repetition, so a repetition ends at
	// Duration/(Reps+1) or MaxCalls calls, whichever comes first (the
	// throughput measurements finish the batches already in flight, so
	// they may exceed it by one batch per goroutine). Default 10,000,000.
	MaxCalls int64
	// Exe and Args start the enclave-side child: Exe is run with Args and
	// ChildEnv=1 added to the environment, and must then call Child.
	// Required.
	Exe  string
	Args []string
	// Stderr receives the child's standard error (nil: discarded).
	Stderr io.Writer
	// Log receives one line per measurement (nil: discarded).
	Log *slog.Logger
	// Load is the number of CPU-burning processes Run starts for the
	// duration of the run (Exe with Args and BurnEnv=1, which must call
	// Burn), to measure the boundary on a busy machine. Default 0; at
	// most MaxLoad.
	Load int
}

// Defaults of Options.
const (
	DefaultDuration = time.Second
	DefaultReps     = 5
	DefaultMaxCalls = 10_000_000
)

// validate fills defaults and checks ranges, once, at the entry point.
func (o Options) validate() (Options, error) {
	if o.Duration == 0 {
		o.Duration = DefaultDuration
	}
	if o.Reps == 0 {
		o.Reps = DefaultReps
	}
	if o.MaxCalls == 0 {
		o.MaxCalls = DefaultMaxCalls
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	switch {
	case o.Duration < 0:
		return o, fmt.Errorf("duration %v: want a positive duration", o.Duration)
	case o.Reps < 1 || o.Reps > 1000:
		return o, fmt.Errorf("reps %d: want 1..1000", o.Reps)
	case o.MaxCalls < 1:
		return o, fmt.Errorf("max calls %d: want at least 1", o.MaxCalls)
	case o.Exe == "":
		return o, errors.New("no program to start as the enclave side")
	case o.Load < 0 || o.Load > MaxLoad:
		return o, fmt.Errorf("load %d: want 0..%d", o.Load, MaxLoad)
	}
	if o.Duration/time.Duration(o.Reps+1) < time.Microsecond {
		return o, fmt.Errorf("duration %v: too short for %d repetitions", o.Duration, o.Reps)
	}
	return o, nil
}

// Result holds the medians of one run. The JSON names of the first six
// fields are the contract of `cloister bench boundary --json`.
type Result struct {
	// RingRTTNs is one 64-byte call over the boundary rings (Client.Call).
	RingRTTNs float64 `json:"ring_rtt_ns"`
	// UDSRTTNs is one 64-byte round trip over a Unix socket pair.
	UDSRTTNs float64 `json:"uds_rtt_ns"`
	// GRPCUDSRTTNs is one unary gRPC call over a Unix socket pair.
	GRPCUDSRTTNs float64 `json:"grpc_uds_rtt_ns"`
	// PingPongRTTNs is one cache-line ping-pong through shared memory.
	PingPongRTTNs float64 `json:"pingpong_rtt_ns"`
	// RingCallsPerS is batched ring throughput: BatchGoroutines goroutines,
	// each with a Batch of BatchSize calls in flight.
	RingCallsPerS float64 `json:"ring_calls_per_s"`
	// UDSCallsPerS is pipelined socket throughput, UDSDepth in flight.
	UDSCallsPerS float64 `json:"uds_calls_per_s"`

	// RingVsUDS is UDSRTTNs / RingRTTNs: how many times faster a ring
	// round trip is than a socket round trip (target: at least 20).
	RingVsUDS float64 `json:"ring_vs_uds"`
	// RingVsPingPong is RingRTTNs / PingPongRTTNs: how far the rings are
	// from the physical limit (target: at most 3).
	RingVsPingPong float64 `json:"ring_vs_pingpong"`
	// RingVsGRPC is GRPCUDSRTTNs / RingRTTNs.
	RingVsGRPC float64 `json:"ring_vs_grpc"`
	// RingSleepsPerCall is how often, per ring round trip, the client gave
	// up spinning and slept on the futex: near 0 on an idle machine; high
	// when the other side lost its CPU, which is when ring_rtt_ns jumps.
	RingSleepsPerCall float64 `json:"ring_sleeps_per_call"`

	// Load is the number of CPU-burning processes that ran alongside
	// (Options.Load); the machine's own load comes on top.
	Load int `json:"load"`

	// The shape of the run.
	MessageBytes    int   `json:"message_bytes"`
	BatchGoroutines int   `json:"batch_goroutines"`
	BatchSize       int   `json:"batch_size"`
	UDSDepth        int   `json:"uds_depth"`
	Reps            int   `json:"reps"`
	RepNs           int64 `json:"rep_ns"`
	CPUs            int   `json:"cpus"`
}

// Run starts the enclave-side child, makes every measurement in turn, and
// returns the medians. It stops the child before returning. If ctx ends,
// the child is killed and Run returns ctx's error.
func Run(ctx context.Context, opts Options) (*Result, error) {
	opts, err := opts.validate()
	if err != nil {
		return nil, fmt.Errorf("benchboundary: %w", err)
	}
	h, err := startHost(ctx, opts)
	if err != nil {
		return nil, fmt.Errorf("benchboundary: %w", err)
	}
	load, err := startBurners(ctx, opts, opts.Load)
	if err != nil {
		h.close()
		return nil, fmt.Errorf("benchboundary: %w", err)
	}
	res, err := h.measureAll(ctx, opts)
	load.stop()
	if cerr := h.close(); err == nil && cerr != nil {
		err = cerr
	}
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("benchboundary: stopped: %w", ctx.Err())
		}
		return nil, fmt.Errorf("benchboundary: %w", err)
	}
	return res, nil
}

// measureAll makes Reps+1 rounds of one repetition of each measurement
// (the first round with warm-ups, and discarded) and assembles the Result.
func (h *host) measureAll(ctx context.Context, opts Options) (*Result, error) {
	rep := opts.Duration / time.Duration(opts.Reps+1)
	res := &Result{
		MessageBytes: msgSize, BatchGoroutines: batchGoroutines, BatchSize: batchSize, UDSDepth: udsDepth,
		Reps: opts.Reps, RepNs: rep.Nanoseconds(), CPUs: runtime.NumCPU(), Load: opts.Load,
	}
	steps := []struct {
		k    kind
		out  *float64
		rate bool // report calls per second instead of ns per call
	}{
		{kindRingRTT, &res.RingRTTNs, false},
		{kindUDSRTT, &res.UDSRTTNs, false},
		{kindGRPCRTT, &res.GRPCUDSRTTNs, false},
		{kindPingPong, &res.PingPongRTTNs, false},
		{kindRingTput, &res.RingCallsPerS, true},
		{kindUDSTput, &res.UDSCallsPerS, true},
	}
	samples := make([][]sample, len(steps))
	for round := range opts.Reps + 1 {
		for i, s := range steps {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			req := request{Kind: s.k, RepNs: rep.Nanoseconds(), MaxCalls: opts.MaxCalls, Warmup: round == 0}
			smp, err := h.measure(ctx, req)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", s.k, err)
			}
			if round > 0 {
				samples[i] = append(samples[i], smp)
			}
		}
		if round > 0 {
			opts.Log.Info("round done", "round", round, "of", opts.Reps)
		}
	}
	for i, s := range steps {
		if s.rate {
			*s.out = math.Round(medianRate(samples[i]))
		} else {
			*s.out = round1(medianNsPerCall(samples[i]))
		}
	}
	var calls, sleeps int64
	for _, smp := range samples[0] { // kindRingRTT
		calls += smp.Calls
		sleeps += smp.Sleeps
	}
	if calls > 0 {
		res.RingSleepsPerCall = math.Round(float64(sleeps)/float64(calls)*1e4) / 1e4
	}
	res.RingVsUDS = ratio(res.UDSRTTNs, res.RingRTTNs)
	res.RingVsPingPong = ratio(res.RingRTTNs, res.PingPongRTTNs)
	res.RingVsGRPC = ratio(res.GRPCUDSRTTNs, res.RingRTTNs)
	return res, nil
}

// medianNsPerCall is the median over samples of nanoseconds per call.
func medianNsPerCall(samples []sample) float64 {
	v := make([]float64, 0, len(samples))
	for _, s := range samples {
		if s.Calls > 0 {
			v = append(v, float64(s.Ns)/float64(s.Calls))
		}
	}
	return median(v)
}

// medianRate is the median over samples of calls per second.
func medianRate(samples []sample) float64 {
	v := make([]float64, 0, len(samples))
	for _, s := range samples {
		if s.Ns > 0 {
			v = append(v, float64(s.Calls)*1e9/float64(s.Ns))
		}
	}
	return median(v)
}

// median of v (the mean of the middle two for an even count); 0 if empty.
func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	v = slices.Clone(v)
	slices.Sort(v)
	m := len(v) / 2
	if len(v)%2 == 1 {
		return v[m]
	}
	return (v[m-1] + v[m]) / 2
}

func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return math.Round(a/b*100) / 100
}

func round1(x float64) float64 { return math.Round(x*10) / 10 }
