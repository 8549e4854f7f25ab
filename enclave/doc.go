// Package enclave is Cloister's enclave SDK. An app calls Run from main;
// Run attaches the shared boundary region that `cloister run` handed over,
// and gives the app an Env: network listeners and connections backed by
// the host's network service (ordinary net.Listener and net.Conn, so
// net/http and crypto/tls work unchanged on top), the Platform (evidence
// and sealing keys), a Store for sealed records, the host's clock
// (labelled untrusted) and a logger.
//
//	func main() {
//		enclave.Run(func(ctx context.Context, env *enclave.Env) error {
//			l, err := env.Listen("tcp", ":8443")
//			if err != nil {
//				return err
//			}
//			srv := &http.Server{Handler: mux}
//			go func() { <-ctx.Done(); srv.Shutdown(context.Background()) }()
//			return srv.ServeTLS(l, "", "") // or tls.NewListener
//		})
//	}
//
// An app built against this package is an ordinary Go binary; it runs only
// under `cloister run`, which measures it, serves its host calls and
// passes the boundary in (wire.EnvBoundary).
//
// # The host is hostile
//
// Everything the host answers is checked before use (package boundary for
// frames, package wire for payloads). The host may still refuse service,
// stall, lie about the network (which TLS inside the enclave detects), lose
// records (which sealing and kv/ freshness detect) and lie about the time
// (so UntrustedNow says so). Store records must be sealed before they are
// stored: Store moves opaque bytes and does not encrypt them itself.
//
// # Platforms
//
// On the simulator kinds (sim-sgx, sim-tdx) Platform's Evidence goes
// through the host's evidence call and its Identity is what the host
// measured; its sealing keys come from the host too, which is acceptable
// only for the simulator, or in a confidential VM (tdx, sev-snp), where
// `cloister run` is inside the TEE with the app and serves its configfs-tsm
// platform the same way (DESIGN.md "Platforms"). On SGX under Gramine
// (tee=sgx) the enclave opens Gramine's /dev/attestation in its own
// process (package tee/gramine): the quote and the sealing keys never pass
// through the host, which serves only network, storage and time, through
// the same rings, here named as /dev/shm files (Gramine's untrusted shared
// memory) rather than inherited descriptors. A process that finds
// /dev/attestation refuses the simulator kinds, so a host cannot make a
// Gramine enclave take host-made keys.
package enclave
