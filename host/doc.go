// Package host is Cloister's launcher and host services: it measures an
// enclave app, starts it as a child process with the shared boundary
// region, serves the host calls the enclave makes through it (network,
// storage, untrusted time, evidence), and stops it cleanly. `cloister run`
// is a thin wrapper around Run.
//
// # Trust
//
// The host is untrusted by the enclave: everything it answers is checked on
// the enclave's side (package enclave and boundary), records it stores are
// sealed by the enclave first, and its clock is labelled untrusted. The
// host, in turn, treats the enclave as a possibly broken app: every
// resource it can make the host hold is bounded (limits.go), it may listen
// only on the addresses the operator allowed, and dial only what the dial
// policy allows (ServiceOptions.Dial).
//
// # Platforms
//
// Run supports the simulator kinds (sim-sgx, sim-tdx) and SGX under
// Gramine (tee.KindSGX, gramine_linux.go: it writes the app's manifest,
// shares the boundary as /dev/shm files, signs with gramine-sgx-sign and
// starts gramine-sgx). The simulator's quoting is done by the host: it
// holds the sim PKI and the identity it measured, and answers the
// enclave's evidence calls, just as SGX's quoting enclave lives outside
// the app enclave. The sim's sealing key likewise comes from the host,
// which is acceptable only for the simulator (on hardware the key never
// leaves the CPU). Under Gramine the enclave opens /dev/attestation in its
// own process and the host serves only network, storage and time.
//
// # Network isolation
//
// Where the machine permits (root, or working user namespaces) the app runs
// in its own network namespace: it has no network at all except through
// the rings. Otherwise it shares the host's network, and Run logs which
// mode it chose and why.
package host
