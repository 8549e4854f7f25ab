// Package wire holds what both sides of Cloister's host services must agree
// on and nothing else: the environment variable that hands the boundary to
// the enclave process, the region geometry, the call table (boundary's
// declared host calls plus the simulator's two platform calls) and the
// payload codecs of every host-service call. Network calls that must wait
// (accept, read, write) are pending calls the host answers when they can
// proceed; there is no separate notification channel.
//
// boundary/calls.go says host/ owns the codecs; they live here, below both
// host (the launcher, which the enclave must not link) and enclave (the
// SDK), so each side imports only what it needs. Apps never use this
// package directly.
//
// Decoders fail closed: every length is checked, trailing bytes are
// rejected, and the enclave treats every response as hostile input.
package wire

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/cloister-dev/cloister/boundary"
)

// EnvBoundary is the environment variable through which `cloister run`
// tells the enclave process where its boundary is: for example
// "v2 region=3 tee=sim-sgx". The enclave SDK refuses to start without it.
const EnvBoundary = "CLOISTER_BOUNDARY"

// envVersion is the first word of EnvBoundary's value; a mismatch means the
// launcher and the SDK were built from incompatible sources. v2: no event
// page (network calls wait as pending calls).
const envVersion = "v2"

// Launch is what EnvBoundary carries: the inherited descriptor of the
// shared region, and the platform kind.
type Launch struct {
	RegionFD int
	TEE      string
}

// String encodes l as EnvBoundary's value.
func (l Launch) String() string {
	return fmt.Sprintf("%s region=%d tee=%s", envVersion, l.RegionFD, l.TEE)
}

// ParseLaunch decodes EnvBoundary's value. Every field is required, and
// descriptors 0-2 (stdio) are refused.
func ParseLaunch(s string) (Launch, error) {
	f := strings.Fields(s)
	if len(f) != 3 || f[0] != envVersion {
		return Launch{}, fmt.Errorf("wire: %s=%q: want %q", EnvBoundary, s, envVersion+" region=FD tee=KIND")
	}
	var l Launch
	seen := 0
	for _, kv := range f[1:] {
		k, v, _ := strings.Cut(kv, "=")
		switch k {
		case "region":
			n, err := strconv.Atoi(v)
			if err != nil || n < 3 || n > 1<<20 {
				return Launch{}, fmt.Errorf("wire: %s: bad descriptor %q", EnvBoundary, kv)
			}
			l.RegionFD = n
			seen |= 1
		case "tee":
			if v == "" {
				return Launch{}, fmt.Errorf("wire: %s: empty tee", EnvBoundary)
			}
			l.TEE = v
			seen |= 2
		default:
			return Launch{}, fmt.Errorf("wire: %s: unknown field %q", EnvBoundary, kv)
		}
	}
	if seen != 3 {
		return Launch{}, fmt.Errorf("wire: %s=%q: a field is repeated or missing", EnvBoundary, s)
	}
	return l, nil
}

// RegionConfig is the region geometry. The enclave attaches with this
// value compiled into its own (measured) binary, never with one read from
// the host: boundary.Attach fixes every offset from the expected Config.
func RegionConfig() boundary.Config {
	// The response ring is larger than the request ring: the host reserves
	// response space for every network call it holds (an idle connection's
	// read), and the enclave lets a channel hold as many as leave room for
	// the largest prompt answer (boundary.CallSpec.MayBlock).
	return boundary.Config{Channels: 4, RequestRingSize: 1 << 20, ResponseRingSize: 2 << 20}
}

// The simulator platform calls are declared with the other host calls in
// boundary/calls.go.
const (
	CallSimIdentity = boundary.CallSimIdentity
	CallSimSealKey  = boundary.CallSimSealKey
)

// maxIdentity bounds an encoded identity: kind, measurement and signer with
// one-byte lengths, product, SVN and debug.
const maxIdentity = 3 + 3*255 + 5

// Table returns the table both sides use: boundary.HostCalls().
func Table() (*boundary.Table, error) {
	t, err := boundary.NewTable(boundary.HostCalls()...)
	if err != nil {
		return nil, fmt.Errorf("wire: table: %w", err)
	}
	return t, nil
}

// The statuses a host answers (would block, not found) are typed
// codes of boundary's error responses (boundary.CodeWouldBlock,
// boundary.CodeNotFound): host handlers return errors wrapping
// boundary.ErrWouldBlock or boundary.ErrNotFound, and the enclave tests
// errors.Is on the call's error. The message text is never matched. The
// host is untrusted either way: a lying status can only stall or fail
// calls, which the host can do anyway.
