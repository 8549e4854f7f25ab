// Package boundary is Cloister's host↔enclave boundary: RPC over rings in
// one shared memory region, replacing per-request enclave transitions
// (ECALL/OCALL, ~10,000 cycles each) with shared-memory queues, and
// declaring in one table (calls.go, the analog of an EDL file) exactly
// which calls may cross.
//
// # Shape
//
// The host creates the region (Create: a sealed memfd, or a file under
// /dev/shm for Gramine's untrusted_shm), passes its File to the enclave
// process (exec.Cmd.ExtraFiles), and runs a Server. The enclave maps it
// (Attach, with the Config it expects) and makes calls through a Client:
//
//	host:    r, _ := boundary.Create(cfg); cmd.ExtraFiles = []*os.File{r.File()}
//	         s, _ := boundary.NewServer(r, table, handler); go s.Serve(ctx)
//	enclave: r, _ := boundary.Attach(os.NewFile(3, "boundary"), cfg)
//	         c, _ := boundary.NewClient(r, table)
//	         n, err := c.Call(ctx, boundary.CallTimeNowUntrusted, nil, buf)
//
// The region holds Config.Channels channels, each a request ring (enclave
// to host) and a response ring (host to enclave). Each ring is
// single-producer single-consumer with a power-of-two capacity; its head
// and tail are free-running byte counters, each on its own cache line.
// Frames are [u32 len][u32 call][u64 id][payload], little-endian, 8-byte
// aligned, never split at the ring's end (padding with a skip marker
// instead). The id correlates a response with its request, so a Batch can
// have many calls in flight and the host may answer them in any order. A
// Client spreads concurrent calls over the channels (round-robin); calls on
// one channel wait for their replies by id (one of them reads the ring and
// hands replies out), so a call the host holds (deferred: a network read
// waiting for data) does not hold the channel.
//
// # Pure core, thin driver
//
// The ring protocol lives in internal/ring as a pure type over a byte view:
// indices in, frames or errors out, no syscalls, goroutines or clock. This
// package is the driver: it loads and publishes indices with sync/atomic,
// and waits by spinning briefly and then sleeping on a futex word in the
// region, announced by a flag so the other side makes the wake system call
// only when someone sleeps. Each wake-up drains every ready frame.
//
// Ordering contracts: a frame's bytes are written before the tail that
// covers them is published; a frame's payload is copied out before the head
// that frees it is published; the server takes a request only when the
// response ring has room for the largest response of that call, so
// responses never wait.
//
// # The enclave treats the host as hostile
//
// Capacities and offsets are computed from the enclave's expected Config at
// Attach and never read from the region again. The host's head or tail is
// read once per step and must be aligned, move only forward, and stay within
// a ring of the enclave's own index. Each frame header is copied out of
// shared memory before it is validated; every length is checked against
// limits.go and the call's declared bound; the payload is copied into the
// caller's buffer before the caller sees it. A violation fails the affected
// call with a named error (ErrBadIndex, ErrMalformedFrame, ErrUnknownID,
// ...), is counted (Client.Counters), and never panics or reads or writes
// outside the region; the next call proceeds. The Server applies the same
// checks to what the enclave writes.
//
// The package is Linux-only (memfd, futex).
package boundary
