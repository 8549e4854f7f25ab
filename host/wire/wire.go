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
	"path"
	"strconv"
	"strings"

	"github.com/cloister-dev/cloister/boundary"
)

// EnvBoundary is the environment variable through which `cloister run`
// tells the enclave process where its boundary is: for example
// "v2 region=3 tee=sim-sgx" (an inherited descriptor), or under Gramine
// "v2 region=/dev/shm/cloister-app.region tee=sgx" (a file in the untrusted
// shared-memory mount: Gramine passes no descriptors into an enclave). The
// enclave SDK refuses to start without it.
//
// Under Gramine the value is fixed in the signed manifest (loader.env), so
// every field of it is measured into MRENCLAVE and the host cannot change
// it; `cloister gramine manifest` never passes it through from the host.
const EnvBoundary = "CLOISTER_BOUNDARY"

// envVersion is the first word of EnvBoundary's value; a mismatch means the
// launcher and the SDK were built from incompatible sources. v2: no event
// page (network calls wait as pending calls).
const envVersion = "v2"

// ShmDir is the only directory a region may be named in: the host's
// /dev/shm, which Gramine mounts as untrusted shared memory (sub-directories
// of such a mount are refused by Gramine, and a path anywhere else could
// name a file inside the enclave).
const ShmDir = "/dev/shm"

// Launch is what EnvBoundary carries: the shared region, as an inherited
// descriptor or as a file under ShmDir, and the platform kind.
type Launch struct {
	RegionFD int
	// RegionPath names the region's file instead of a descriptor.
	RegionPath string
	TEE        string
	// AttestRoot replaces Gramine's /dev/attestation (tee=sgx only): the
	// direct-exec test mode of `cloister run --tee sgx` uses it to run the
	// app outside Gramine against a fake attestation tree. The enclave SDK
	// refuses it when the real /dev/attestation exists, so inside Gramine
	// it can never redirect attestation or sealing keys.
	AttestRoot string
}

// String encodes l as EnvBoundary's value.
func (l Launch) String() string {
	region := strconv.Itoa(l.RegionFD)
	if l.RegionPath != "" {
		region = l.RegionPath
	}
	s := fmt.Sprintf("%s region=%s tee=%s", envVersion, region, l.TEE)
	if l.AttestRoot != "" {
		s += " attest=" + l.AttestRoot
	}
	return s
}

// ParseLaunch decodes EnvBoundary's value. region and tee are required;
// descriptors 0-2 (stdio) are refused; a path must be a plain file name
// directly under ShmDir (and tee=sgx takes only a path). attest is
// optional, tee=sgx only, and must be an absolute clean path.
func ParseLaunch(s string) (Launch, error) {
	f := strings.Fields(s)
	if (len(f) != 3 && len(f) != 4) || f[0] != envVersion {
		return Launch{}, fmt.Errorf("wire: %s=%q: want %q", EnvBoundary, s, envVersion+" region=FD|PATH tee=KIND [attest=DIR]")
	}
	var l Launch
	seen := 0
	for _, kv := range f[1:] {
		k, v, _ := strings.Cut(kv, "=")
		switch k {
		case "region":
			if seen&1 != 0 {
				return Launch{}, fmt.Errorf("wire: %s=%q: region is repeated", EnvBoundary, s)
			}
			if strings.HasPrefix(v, "/") {
				if err := checkShmPath(v); err != nil {
					return Launch{}, fmt.Errorf("wire: %s: region: %w", EnvBoundary, err)
				}
				l.RegionPath = v
			} else {
				n, err := strconv.Atoi(v)
				if err != nil || n < 3 || n > 1<<20 {
					return Launch{}, fmt.Errorf("wire: %s: bad descriptor %q", EnvBoundary, kv)
				}
				l.RegionFD = n
			}
			seen |= 1
		case "tee":
			if v == "" {
				return Launch{}, fmt.Errorf("wire: %s: empty tee", EnvBoundary)
			}
			if seen&2 != 0 {
				return Launch{}, fmt.Errorf("wire: %s=%q: tee is repeated", EnvBoundary, s)
			}
			l.TEE = v
			seen |= 2
		case "attest":
			if seen&4 != 0 {
				return Launch{}, fmt.Errorf("wire: %s=%q: attest is repeated", EnvBoundary, s)
			}
			if !path.IsAbs(v) || path.Clean(v) != v {
				return Launch{}, fmt.Errorf("wire: %s: attest=%q: want an absolute, clean path", EnvBoundary, v)
			}
			l.AttestRoot = v
			seen |= 4
		default:
			return Launch{}, fmt.Errorf("wire: %s: unknown field %q", EnvBoundary, kv)
		}
	}
	if seen&3 != 3 {
		return Launch{}, fmt.Errorf("wire: %s=%q: a field is repeated or missing", EnvBoundary, s)
	}
	if l.TEE == "sgx" && l.RegionPath == "" {
		// Gramine passes no descriptors into an enclave: a descriptor
		// number there would name whatever the LibOS has open.
		return Launch{}, fmt.Errorf("wire: %s=%q: tee=sgx takes the region as a /dev/shm path", EnvBoundary, s)
	}
	if l.AttestRoot != "" && l.TEE != "sgx" {
		return Launch{}, fmt.Errorf("wire: %s=%q: attest is for tee=sgx only", EnvBoundary, s)
	}
	return l, nil
}

// checkShmPath accepts ShmDir/NAME with a plain NAME (letters, digits,
// '.', '_', '-'; not starting with '.'; at most 255 bytes).
func checkShmPath(p string) error {
	dir, name := path.Split(p)
	if dir != ShmDir+"/" || path.Clean(p) != p || name == "" || len(name) > 255 || name[0] == '.' {
		return fmt.Errorf("path %q: want %s/NAME", p, ShmDir)
	}
	for _, c := range name {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return fmt.Errorf("path %q: file name may hold only letters, digits, '.', '_' and '-'", p)
		}
	}
	return nil
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
