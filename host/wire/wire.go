// Package wire holds what both sides of Cloister's host services must agree
// on and nothing else: the environment variable that hands the boundary to
// the enclave process, the region geometry, the call table (boundary's
// declared host calls plus the simulator's two platform calls), the payload
// codecs of every host-service call, and the event page that tells the
// enclave when a would-block network call is worth retrying.
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
// "v1 region=3 events=4 tee=sim-sgx" (inherited descriptors), or under
// Gramine "v1 region=/dev/shm/cloister-app.region
// events=/dev/shm/cloister-app.events tee=sgx" (files in the untrusted
// shared-memory mount: Gramine passes no descriptors into an enclave). The
// enclave SDK refuses to start without it.
//
// Under Gramine the value is fixed in the signed manifest (loader.env), so
// every field of it is measured into MRENCLAVE and the host cannot change
// it; `cloister gramine manifest` never passes it through from the host.
const EnvBoundary = "CLOISTER_BOUNDARY"

// envVersion is the first word of EnvBoundary's value; a mismatch means the
// launcher and the SDK were built from incompatible sources.
const envVersion = "v1"

// ShmDir is the only directory a region or event page may be named in:
// the host's /dev/shm, which Gramine mounts as untrusted shared memory
// (sub-directories of such a mount are refused by Gramine, and a path
// anywhere else could name a file inside the enclave).
const ShmDir = "/dev/shm"

// Launch is what EnvBoundary carries: the shared region and the event page,
// each as an inherited descriptor or as a file under ShmDir (both the same
// way), and the platform kind.
type Launch struct {
	RegionFD int
	EventsFD int
	// RegionPath and EventsPath name the files instead of descriptors.
	RegionPath string
	EventsPath string
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
	region, events := strconv.Itoa(l.RegionFD), strconv.Itoa(l.EventsFD)
	if l.RegionPath != "" || l.EventsPath != "" {
		region, events = l.RegionPath, l.EventsPath
	}
	s := fmt.Sprintf("%s region=%s events=%s tee=%s", envVersion, region, events, l.TEE)
	if l.AttestRoot != "" {
		s += " attest=" + l.AttestRoot
	}
	return s
}

// ParseLaunch decodes EnvBoundary's value. region, events and tee are
// required; descriptors 0-2 (stdio) are refused; a path must be a plain
// file name directly under ShmDir, and region and events must both be
// descriptors or both paths (paths for tee=sgx). attest is optional, tee=sgx
// only, and must be an absolute clean path.
func ParseLaunch(s string) (Launch, error) {
	f := strings.Fields(s)
	if (len(f) != 4 && len(f) != 5) || f[0] != envVersion {
		return Launch{}, fmt.Errorf("wire: %s=%q: want %q", EnvBoundary, s, envVersion+" region=FD|PATH events=FD|PATH tee=KIND [attest=DIR]")
	}
	var l Launch
	seen := 0
	for _, kv := range f[1:] {
		k, v, _ := strings.Cut(kv, "=")
		switch k {
		case "region", "events":
			var fd int
			var p string
			if strings.HasPrefix(v, "/") {
				if err := checkShmPath(v); err != nil {
					return Launch{}, fmt.Errorf("wire: %s: %s: %w", EnvBoundary, k, err)
				}
				p = v
			} else {
				n, err := strconv.Atoi(v)
				if err != nil || n < 3 || n > 1<<20 {
					return Launch{}, fmt.Errorf("wire: %s: bad descriptor %q", EnvBoundary, kv)
				}
				fd = n
			}
			bit := 1
			if k == "events" {
				bit = 2
			}
			if seen&bit != 0 {
				return Launch{}, fmt.Errorf("wire: %s=%q: %s is repeated", EnvBoundary, s, k)
			}
			seen |= bit
			if k == "region" {
				l.RegionFD, l.RegionPath = fd, p
			} else {
				l.EventsFD, l.EventsPath = fd, p
			}
		case "tee":
			if v == "" {
				return Launch{}, fmt.Errorf("wire: %s: empty tee", EnvBoundary)
			}
			if seen&4 != 0 {
				return Launch{}, fmt.Errorf("wire: %s=%q: tee is repeated", EnvBoundary, s)
			}
			l.TEE = v
			seen |= 4
		case "attest":
			if seen&8 != 0 {
				return Launch{}, fmt.Errorf("wire: %s=%q: attest is repeated", EnvBoundary, s)
			}
			if !path.IsAbs(v) || path.Clean(v) != v {
				return Launch{}, fmt.Errorf("wire: %s: attest=%q: want an absolute, clean path", EnvBoundary, v)
			}
			l.AttestRoot = v
			seen |= 8
		default:
			return Launch{}, fmt.Errorf("wire: %s: unknown field %q", EnvBoundary, kv)
		}
	}
	if seen&7 != 7 {
		return Launch{}, fmt.Errorf("wire: %s=%q: a field is repeated or missing", EnvBoundary, s)
	}
	if (l.RegionPath == "") != (l.EventsPath == "") {
		return Launch{}, fmt.Errorf("wire: %s=%q: region and events must both be descriptors or both paths", EnvBoundary, s)
	}
	if l.RegionPath != "" && l.RegionPath == l.EventsPath {
		return Launch{}, fmt.Errorf("wire: %s=%q: region and events name the same file", EnvBoundary, s)
	}
	if l.TEE == "sgx" && l.RegionPath == "" {
		// Gramine passes no descriptors into an enclave: a descriptor
		// number there would name whatever the LibOS has open.
		return Launch{}, fmt.Errorf("wire: %s=%q: tee=sgx takes the region and events as /dev/shm paths", EnvBoundary, s)
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
	return boundary.Config{Channels: 4, RequestRingSize: 1 << 20, ResponseRingSize: 1 << 20}
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

// The statuses the enclave branches on (would block, not found) are typed
// codes of boundary's error responses (boundary.CodeWouldBlock,
// boundary.CodeNotFound): host handlers return errors wrapping
// boundary.ErrWouldBlock or boundary.ErrNotFound, and the enclave tests
// errors.Is on the call's error. The message text is never matched. The
// host is untrusted either way: a lying status can only stall or fail
// calls, which the host can do anyway.
