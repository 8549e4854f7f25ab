package kbs

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"
)

// sessionState is where a session is in the protocol.
type sessionState int

// Session states. Do NOT reorder.
const (
	// stateChallenged: /auth issued a nonce; one /attest may use it.
	stateChallenged sessionState = 1
	// stateUsed: an /attest consumed the nonce and failed; the session
	// serves nothing more (the client starts again at /auth).
	stateUsed sessionState = 2
	// stateAttested: /attest succeeded; resources may be requested.
	stateAttested sessionState = 3
)

// session is one kbs-session-id. Its fields are guarded by sessions.mu
// until it is attested; from then on grant is immutable.
type session struct {
	id      string
	tee     string
	nonce   string
	hash    string
	expires time.Time
	state   sessionState
	grant   *grant // set when attested
}

// grant is what an attestation (a session or a token) entitles: the
// verified claims as a policy reads them, and the key resources are
// encrypted to. Immutable once made.
type grant struct {
	tee    string
	claims map[string]any
	// claimsJSON is claims as JSON, what tokens carry (made once).
	claimsJSON json.RawMessage
	teeKey     any
	// input is the SHA-256 of tee, a NUL and claimsJSON: grants with the
	// same attested facts share policy decisions (decisionCache).
	input [32]byte
}

// newGrant makes a grant from verified claims (the JSON form of
// evidence.Claims). report_data is removed: it is the binding the broker
// checked (a digest of the session's nonce and key), different in every
// session and meaningless to a policy, and leaving it out lets every
// session of one workload share its decisions.
func newGrant(tee string, claims map[string]any, teeKey any) (*grant, error) {
	c := make(map[string]any, len(claims))
	for k, v := range claims {
		if k != "report_data" {
			c[k] = v
		}
	}
	b, err := json.Marshal(c) // map keys sorted: deterministic
	if err != nil {
		return nil, fmt.Errorf("kbs: claims: %w", err)
	}
	h := sha256.New()
	h.Write([]byte(tee))
	h.Write([]byte{0}) // a tee name has no NUL: the split is unambiguous
	h.Write(b)
	g := &grant{tee: tee, claims: c, claimsJSON: b, teeKey: teeKey}
	h.Sum(g.input[:0])
	return g, nil
}

// decisionKey names one policy decision: the attested facts, the
// resource, and the policy generation it was made under.
type decisionKey struct {
	input [32]byte
	path  string
	gen   uint64
}

// decisionCache keeps policy outcomes. Policies are pure (policy/rego
// refuses every builtin that reads time, randomness or the network), so an
// outcome is a function of the input and the policy; the input's claims
// are the grant's digest, and a policy change moves the generation, so a
// cached outcome is never one the policy in force would not give.
type decisionCache struct {
	mu sync.RWMutex
	m  map[decisionKey]bool
}

func (d *decisionCache) get(k decisionKey) (allow, ok bool) {
	d.mu.RLock()
	defer d.mu.RUnlock()
	allow, ok = d.m[k]
	return allow, ok
}

func (d *decisionCache) put(k decisionKey, allow bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.m == nil || len(d.m) >= maxDecisions {
		d.m = make(map[decisionKey]bool)
	}
	d.m[k] = allow
}

// Session errors; the server maps each to 401 with its message.
var (
	errNoSession      = errors.New("kbs: no such session: POST /kbs/v0/auth first")
	errSessionExpired = errors.New("kbs: the session has expired: POST /kbs/v0/auth for a new one")
	errNonceUsed      = errors.New("kbs: this session's challenge was already used: POST /kbs/v0/auth for a new one")
	errNotAttested    = errors.New("kbs: the session is not attested: POST /kbs/v0/attest first")
	errSessionsFull   = errors.New("kbs: too many sessions in progress; retry shortly")
)

// sessions is the session table: an in-memory map with a cap, whose
// expired entries are dropped when it is full and by sweep. The clock is
// the caller's.
type sessions struct {
	mu       sync.Mutex
	m        map[string]*session
	max      int
	lifetime time.Duration
}

func newSessions(max int, lifetime time.Duration) *sessions {
	return &sessions{m: make(map[string]*session), max: max, lifetime: lifetime}
}

// create starts a challenged session with a fresh id.
func (t *sessions) create(rand io.Reader, now time.Time, tee, nonce, hash string) (*session, error) {
	var idb [16]byte
	if _, err := io.ReadFull(rand, idb[:]); err != nil {
		return nil, fmt.Errorf("kbs: session id: %w", err)
	}
	s := &session{id: hex.EncodeToString(idb[:]), tee: tee, nonce: nonce, hash: hash,
		expires: now.Add(t.lifetime), state: stateChallenged}
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.m) >= t.max {
		t.sweepLocked(now)
		if len(t.m) >= t.max {
			return nil, errSessionsFull
		}
	}
	t.m[s.id] = s
	return s, nil
}

// sweepLocked drops every expired session.
func (t *sessions) sweepLocked(now time.Time) {
	for id, s := range t.m {
		if !now.Before(s.expires) {
			delete(t.m, id)
		}
	}
}

// sweep drops every expired session; the server calls it now and then so
// that an idle broker does not hold dead sessions until it is full.
func (t *sessions) sweep(now time.Time) {
	t.mu.Lock()
	t.sweepLocked(now)
	t.mu.Unlock()
}

// takeChallenge consumes id's challenge for one /attest: it returns the
// session's tee, nonce and hash and marks the nonce used, so that a
// replayed or second Attestation on the session is refused whatever the
// outcome of this one. finish records the outcome.
func (t *sessions) takeChallenge(id string, now time.Time) (*session, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	s, ok := t.m[id]
	switch {
	case !ok:
		return nil, errNoSession
	case !now.Before(s.expires):
		delete(t.m, id)
		return nil, errSessionExpired
	case s.state != stateChallenged:
		return nil, errNonceUsed
	}
	s.state = stateUsed
	return s, nil
}

// attested records a successful attestation of s.
func (t *sessions) attested(s *session, g *grant) {
	t.mu.Lock()
	s.grant, s.state = g, stateAttested
	t.mu.Unlock()
}

// grantOf returns the grant of an attested, unexpired session.
func (t *sessions) grantOf(id string, now time.Time) (*grant, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	s, ok := t.m[id]
	switch {
	case !ok:
		return nil, errNoSession
	case !now.Before(s.expires):
		delete(t.m, id)
		return nil, errSessionExpired
	case s.state != stateAttested:
		return nil, errNotAttested
	}
	return s.grant, nil
}

func (t *sessions) len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.m)
}
