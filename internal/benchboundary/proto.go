package benchboundary

import (
	"time"

	"github.com/cloister-dev/cloister/boundary"
)

// ChildEnv is set (to "1") in the environment of the enclave-side child
// process. The program that Run starts must, seeing it, call Child and exit.
const ChildEnv = "CLOISTER_BENCH_BOUNDARY_CHILD"

// Descriptors of the child, in the order of exec.Cmd.ExtraFiles.
const (
	fdControl  = 3 + iota // control socket: requests in, replies out (JSON lines)
	fdRegion              // the boundary region (sealed memfd)
	fdUDS                 // Unix socket for the raw round trips (blocking)
	fdGRPC                // Unix socket carrying the gRPC connection
	fdPingPong            // memfd page for the cache-line ping-pong
)

// Shape of the measurements. Both processes are the same binary, so these
// constants are the contract between them.
const (
	// msgSize is the request and the response payload of every call.
	msgSize = 64
	// batchGoroutines × batchSize calls are in flight in the batched ring
	// measurement; each goroutine holds one channel.
	batchGoroutines = 4
	batchSize       = 128
	// udsDepth requests are in flight in the pipelined socket measurement.
	udsDepth = 64
	// The ping-pong memfd is one page; its ping, pong and stop words sit
	// 128 bytes apart, so no two share a cache line or an adjacent-line
	// prefetch pair.
	pingPongSize = 4096
	offPing      = 0
	offPong      = 128
	offStop      = 256
	// stallLimit: a side that sees no progress from its peer for this long
	// gives up instead of spinning forever.
	stallLimit = 5 * time.Second
)

// callEcho is the one call of the benchmark table: it echoes the request.
const callEcho = boundary.AppCallBase + 0xbe

// regionConfig is the geometry of the benchmark region, expected by the
// child at Attach. Small rings keep the working set in cache.
var regionConfig = boundary.Config{Channels: 4, RequestRingSize: 64 << 10, ResponseRingSize: 64 << 10}

// echoTable declares the benchmark call.
func echoTable() (*boundary.Table, error) {
	return boundary.NewTable(boundary.CallSpec{
		ID: callEcho, Name: "bench.echo", Request: "bytes", Response: "the request's bytes",
		MaxRequest: msgSize, MaxResponse: msgSize,
	})
}

// kind names one measurement.
type kind string

// The measurements, in the order Run makes them.
const (
	kindRingRTT  kind = "ring_rtt"
	kindUDSRTT   kind = "uds_rtt"
	kindGRPCRTT  kind = "grpc_uds_rtt"
	kindPingPong kind = "pingpong_rtt"
	kindRingTput kind = "ring_batch"
	kindUDSTput  kind = "uds_pipelined"
)

// request asks the child for one repetition of one measurement: RepNs
// nanoseconds or MaxCalls calls, whichever ends first, after one warm-up
// repetition (discarded) if Warmup is set. An empty Kind asks the child to
// exit.
type request struct {
	Kind     kind  `json:"kind"`
	RepNs    int64 `json:"rep_ns"`
	MaxCalls int64 `json:"max_calls"`
	Warmup   bool  `json:"warmup,omitempty"`
}

// sample is one repetition: calls completed in Ns nanoseconds, and for the
// rings, how often the client slept on the futex instead of spinning.
type sample struct {
	Calls  int64 `json:"calls"`
	Ns     int64 `json:"ns"`
	Sleeps int64 `json:"sleeps,omitempty"`
}

// reply answers a request: the samples, or what went wrong.
type reply struct {
	Sample sample `json:"sample"`
	Err    string `json:"error,omitempty"`
}
