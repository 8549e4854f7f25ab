// Package benchboundary measures the host↔enclave boundary against its
// alternatives, in one process pair: this process is the host and a child
// process it starts (the same binary, marked by ChildEnv) is the enclave
// side. The child makes 64-byte request/response calls and the host answers
// them over
//
//   - the boundary rings (boundary.Client.Call in the child, a
//     boundary.Server in the host), one call at a time and, for throughput,
//     several goroutines each with a boundary.Batch in flight;
//   - a Unix-domain socket pair, one blocking write(2) and one read(2) per
//     message on each side: the stand-in for an enclave transition. For
//     throughput, requests are pipelined (each still its own write(2)),
//     and responses are read as they come;
//   - gRPC over a Unix socket pair: a unary echo method declared by hand
//     (grpc.ServiceDesc) with a raw-bytes codec, so no generated code;
//   - a cache-line ping-pong through a shared memfd page: two counters on
//     separate cache lines, both sides spinning, the physical limit of any
//     shared-memory protocol between two cores.
//
// The child measures with its own monotonic clock and reports the number of
// calls and the elapsed time of each repetition over a control socket. The
// measurements are interleaved (one repetition of each in turn, round after
// round) so that a change in the machine's load hits them alike, and Run
// reports the median repetition of each. Everything stays on
// the machine (socket pairs and memfds passed as inherited descriptors).
//
// The figures are measurements, not promises: on a busy or small machine
// they move from run to run, and nothing here asserts on them.
package benchboundary
