package kbs

import (
	"time"

	"github.com/cloister-dev/cloister/kv"
)

// All caps and default lifetimes of the package live here.
const (
	// MaxAuthBody caps a POST /auth body: a Request is a version, a TEE
	// name and small extra-params.
	MaxAuthBody = 16 << 10
	// MaxAttestBody caps a POST /attest body: a quote with its PCK chain
	// is ~5 KiB and a TDX event log tens of KiB, base64-encoded; 1 MiB
	// is far above any real Attestation.
	MaxAttestBody = 1 << 20
	// MaxResourceSize caps a resource value: the most one sealed kv
	// record holds (a larger PUT would be read whole and then fail to
	// store), just under 256 KiB.
	MaxResourceSize = kv.MaxValueSize
	// MaxAdminBody caps an admin request body (a resource or a policy).
	MaxAdminBody = MaxResourceSize + 4<<10
	// MaxPathSegment caps each of repository, type and tag.
	MaxPathSegment = 128
	// MaxSessions caps the sessions kept at once (challenged or
	// attested); when full, expired ones are dropped, and if none has
	// expired /auth answers 503 rather than grow without bound.
	MaxSessions = 100_000
	// maxDecisions caps the cached policy decisions; when full the cache
	// starts again empty.
	maxDecisions = 1 << 16
	// maxPolicyRechecks bounds how often a resource request decides again
	// because a policy change landed while it was being served; past it
	// the request is answered 503 (policies changing that fast are an
	// administrator's loop, not a state to serve secrets in).
	maxPolicyRechecks = 4
	// MaxTokenSize caps a bearer token read from Authorization.
	MaxTokenSize = 64 << 10

	// DefaultSessionLifetime is how long a session (its challenge, then
	// its attestation) lasts from /auth: Trustee's default.
	DefaultSessionLifetime = 5 * time.Minute
	// DefaultTokenLifetime is how long an attestation token is accepted
	// as a bearer credential from its iat.
	DefaultTokenLifetime = 5 * time.Minute
	// MaxAdminTokenLifetime is the longest exp - iat an admin token may
	// state: a leaked token is useful for at most this long.
	MaxAdminTokenLifetime = 24 * time.Hour
	// DefaultMaxInFlight bounds the attestations verified at once: far
	// above what two cores keep busy (~0.3 ms of CPU each), far below what
	// would exhaust memory (as the attestation service's).
	DefaultMaxInFlight = 64
	// DefaultQueueWait is how long an attestation waits for a slot.
	DefaultQueueWait = 2 * time.Second
	// nonceSize is the challenge nonce's size in bytes (Trustee's).
	nonceSize = 32
	// reportDataSize is the report data every supported TEE binds.
	reportDataSize = 64
)
