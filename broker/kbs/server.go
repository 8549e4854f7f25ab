package kbs

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	jsonv2 "github.com/go-json-experiment/json"

	"github.com/cloister-dev/cloister/evidence"
	"github.com/cloister-dev/cloister/evidence/dcap"
	"github.com/cloister-dev/cloister/evidence/pcs"
	"github.com/cloister-dev/cloister/kv"
)

// SessionCookie is the cookie that carries a KBS session.
const SessionCookie = "kbs-session-id"

// Prefix is where the protocol is served.
const Prefix = "/kbs/v0"

// Config configures a Server. It is validated once, by New.
type Config struct {
	// OpenStore opens the sealed store of resources, policies and the
	// token key (kv/, sealed with the broker platform's key); required.
	// New calls it once; the server calls it again when a commit's
	// outcome is unknown (kv.ErrCommitUnknown: a failed host write, which
	// leaves a kv.Store unusable until reopened), as a restart would.
	OpenStore func(ctx context.Context) (*kv.Store, error)
	// Now is the clock of sessions, tokens and verification; required.
	Now func() time.Time
	// Rand supplies nonces, session ids and every JWE key; nil means
	// crypto/rand.
	Rand io.Reader
	// Issuer is the broker's public URL (scheme://host[:port]), the iss of
	// its tokens; required. An https Issuer makes the session cookie
	// Secure.
	Issuer string
	// TrustRoots are roots SGX and TDX evidence may chain to besides
	// Intel's (the simulator's, by name, for development).
	TrustRoots []*x509.Certificate
	// Collateral returns DCAP collateral for a quote; nil skips TCB
	// evaluation (tcb_status NotEvaluated, which policies can refuse).
	Collateral func(ctx context.Context, quote []byte) (*pcs.Bundle, error)
	// AdminKeys verify admin tokens (Ed25519-signed JWTs). With none and
	// InsecureAdmin false, management is refused.
	AdminKeys []ed25519.PublicKey
	// InsecureAdmin lets management through unauthenticated: development
	// only.
	InsecureAdmin bool
	// Logger receives structured logs (never a secret, token or cookie);
	// nil discards them.
	Logger *slog.Logger
	// SessionLifetime is how long a session lasts from /auth; 0 means
	// DefaultSessionLifetime.
	SessionLifetime time.Duration
	// TokenLifetime is how long an attestation token is valid; 0 means
	// DefaultTokenLifetime.
	TokenLifetime time.Duration
	// MaxInFlight bounds the attestations verified at once; more wait up
	// to QueueWait for a slot, then get 503 with Retry-After, so overload
	// shows as quick refusals rather than every guest slowing down. 0
	// means DefaultMaxInFlight.
	MaxInFlight int
	// QueueWait is how long an attestation waits for a slot; 0 means
	// DefaultQueueWait.
	QueueWait time.Duration
}

// Server serves the KBS protocol under Prefix; it is an http.Handler.
type Server struct {
	cfg       Config
	log       *slog.Logger
	mux       *http.ServeMux
	verifier  *evidence.Verifier
	dcapRoots []*x509.Certificate
	sessions  *sessions
	signer    *signer
	policies  *policies
	decisions decisionCache
	secure    bool
	lastSweep time.Time
	slots     chan struct{} // one per attestation being verified
	// afterResourceRead, when set (by tests only), runs between a release's
	// resource read and its policy-generation check.
	afterResourceRead func()
	store             atomic.Pointer[kv.Store]
	reopenMu          sync.Mutex // one reopen at a time
}

// New validates cfg, loads (or creates) the token-signing key from the
// store and returns the server.
func New(ctx context.Context, cfg Config) (*Server, error) {
	switch {
	case cfg.OpenStore == nil:
		return nil, errors.New("kbs: Config.OpenStore is required")
	case cfg.Now == nil:
		return nil, errors.New("kbs: Config.Now is required")
	case cfg.InsecureAdmin && len(cfg.AdminKeys) > 0:
		return nil, errors.New("kbs: Config.AdminKeys and Config.InsecureAdmin exclude each other")
	}
	u, err := url.Parse(cfg.Issuer)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") {
		return nil, fmt.Errorf("kbs: Config.Issuer %q: want scheme://host[:port]", cfg.Issuer)
	}
	cfg.Issuer = strings.TrimSuffix(cfg.Issuer, "/")
	if cfg.Rand == nil {
		cfg.Rand = rand.Reader
	}
	if cfg.SessionLifetime <= 0 {
		cfg.SessionLifetime = DefaultSessionLifetime
	}
	if cfg.TokenLifetime <= 0 {
		cfg.TokenLifetime = DefaultTokenLifetime
	}
	if cfg.MaxInFlight <= 0 {
		cfg.MaxInFlight = DefaultMaxInFlight
	}
	if cfg.QueueWait <= 0 {
		cfg.QueueWait = DefaultQueueWait
	}
	s := &Server{cfg: cfg, log: cfg.Logger, verifier: evidence.NewVerifier(),
		sessions: newSessions(MaxSessions, cfg.SessionLifetime), secure: u.Scheme == "https",
		slots: make(chan struct{}, cfg.MaxInFlight)}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if len(cfg.TrustRoots) > 0 {
		s.dcapRoots = append([]*x509.Certificate{dcap.IntelRoot()}, cfg.TrustRoots...)
	}
	st, err := cfg.OpenStore(ctx)
	if err != nil {
		return nil, fmt.Errorf("kbs: opening the store: %w", err)
	}
	s.store.Store(st)
	s.policies = newPolicies(s.st, s.storeFailed)
	if s.signer, err = loadSigner(ctx, st, cfg.Rand); err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	res := Prefix + "/resource/{repository}/{type}/{tag}"
	pol := Prefix + "/resource-policy/{repository}/{type}/{tag}"
	mux.HandleFunc("POST "+Prefix+"/auth", s.handleAuth)
	mux.HandleFunc("POST "+Prefix+"/attest", s.handleAttest)
	mux.HandleFunc("GET "+res, s.handleGetResource)
	mux.HandleFunc("POST "+res, s.handlePutResource) // Trustee's spelling
	mux.HandleFunc("PUT "+res, s.handlePutResource)
	mux.HandleFunc("DELETE "+res, s.handleDeleteResource)
	mux.HandleFunc("GET "+Prefix+"/resource-policy", s.handleGetPolicy)
	mux.HandleFunc("POST "+Prefix+"/resource-policy", s.handleSetPolicy) // Trustee's
	mux.HandleFunc("PUT "+Prefix+"/resource-policy", s.handleSetPolicy)
	mux.HandleFunc("GET "+pol, s.handleGetPolicy)
	mux.HandleFunc("POST "+pol, s.handleSetPolicy)
	mux.HandleFunc("PUT "+pol, s.handleSetPolicy)
	mux.HandleFunc("DELETE "+pol, s.handleDeletePolicy)
	mux.HandleFunc("GET "+Prefix+"/token-jwks", s.handleJWKS)
	mux.HandleFunc(Prefix+"/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "InvalidRequestPath", fmt.Sprintf("%s %s is not a KBS endpoint", r.Method, r.URL.Path))
	})
	s.mux = mux
	return s, nil
}

// st is the store in use.
func (s *Server) st() *kv.Store { return s.store.Load() }

// storeFailed is told of every error of st; when a commit's outcome is
// unknown, st refuses everything until reopened, so the server reopens
// it (reading back whichever state is durable) for the next request. The
// request that failed is answered 500 either way.
func (s *Server) storeFailed(st *kv.Store, err error) {
	if !errors.Is(err, kv.ErrCommitUnknown) {
		return
	}
	s.reopenMu.Lock()
	defer s.reopenMu.Unlock()
	if s.store.Load() != st {
		return // another request reopened it already
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	next, rerr := s.cfg.OpenStore(ctx)
	if rerr != nil {
		s.log.Error("reopening the store after an unknown commit outcome failed; retried on the next failure", "err", rerr.Error())
		return
	}
	st.Close()
	s.store.Store(next)
	s.policies.reset()
	s.log.Warn("store reopened after an unknown commit outcome", "err", err.Error())
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

// errorInfo is kbs-types' ErrorInformation, the body of every refusal.
type errorInfo struct {
	Type   string `json:"type"`
	Detail string `json:"detail"`
}

// errorTypePrefix is the namespace of ErrorInformation types, Trustee's.
const errorTypePrefix = "https://github.com/confidential-containers/kbs/errors/"

func writeError(w http.ResponseWriter, status int, typ, detail string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(errorInfo{Type: errorTypePrefix + typ, Detail: detail})
}

func writeJSON(w http.ResponseWriter, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "SerdeError", err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.Write(b)
}

// readBody reads at most limit bytes of the request body; a larger body
// is answered 413 and an unreadable one 400.
func readBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, bool) {
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			writeError(w, http.StatusRequestEntityTooLarge, "PayloadTooLarge", fmt.Sprintf("request body larger than %d bytes", limit))
		} else {
			writeError(w, http.StatusBadRequest, "SerdeError", "reading the request body: "+err.Error())
		}
		return nil, false
	}
	return b, true
}

// maybeSweep drops expired sessions at most once a minute.
func (s *Server) maybeSweep(now time.Time) {
	s.sessions.mu.Lock()
	due := now.Sub(s.lastSweep) >= time.Minute
	if due {
		s.lastSweep = now
	}
	s.sessions.mu.Unlock()
	if due {
		s.sessions.sweep(now)
	}
}

// handleAuth answers a Request with a Challenge and a new session cookie.
func (s *Server) handleAuth(w http.ResponseWriter, r *http.Request) {
	body, ok := readBody(w, r, MaxAuthBody)
	if !ok {
		return
	}
	req, hash, err := ParseRequest(body)
	if err != nil {
		writeError(w, http.StatusBadRequest, "SerdeError", err.Error())
		return
	}
	now := s.cfg.Now()
	s.maybeSweep(now)
	var nb [nonceSize]byte
	if _, err := io.ReadFull(s.cfg.Rand, nb[:]); err != nil {
		writeError(w, http.StatusInternalServerError, "Internal", "nonce: "+err.Error())
		return
	}
	nonce := base64.StdEncoding.EncodeToString(nb[:]) // Trustee's nonce form
	sess, err := s.sessions.create(s.cfg.Rand, now, req.Tee, nonce, hash)
	if err != nil {
		if errors.Is(err, errSessionsFull) {
			w.Header().Set("Retry-After", "1")
			writeError(w, http.StatusServiceUnavailable, "ServiceUnavailable", err.Error())
			return
		}
		writeError(w, http.StatusInternalServerError, "Internal", err.Error())
		return
	}
	s.setCookie(w, sess)
	writeJSON(w, map[string]any{"nonce": nonce, "extra-params": map[string]string{"selected-hash-algorithm": hash}})
}

func (s *Server) setCookie(w http.ResponseWriter, sess *session) {
	http.SetCookie(w, &http.Cookie{Name: SessionCookie, Value: sess.id, Path: Prefix, Expires: sess.expires,
		HttpOnly: true, Secure: s.secure})
}

// handleAttest verifies an Attestation against the session's challenge
// and answers with a token. The challenge is consumed first, so a second
// or replayed Attestation on the session is refused whatever happened to
// the first.
func (s *Server) handleAttest(w http.ResponseWriter, r *http.Request) {
	c, err := r.Cookie(SessionCookie)
	if err != nil {
		writeError(w, http.StatusUnauthorized, "AttestationError", "no kbs-session-id cookie: POST /kbs/v0/auth first")
		return
	}
	now := s.cfg.Now()
	sess, err := s.sessions.takeChallenge(c.Value, now)
	if err != nil {
		writeError(w, http.StatusUnauthorized, "AttestationError", err.Error())
		return
	}
	body, ok := readBody(w, r, MaxAttestBody)
	if !ok {
		return
	}
	a, err := ParseAttestation(body)
	if err != nil {
		writeError(w, http.StatusBadRequest, "SerdeError", err.Error())
		return
	}
	if !s.admit(r.Context()) {
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusServiceUnavailable, "ServiceUnavailable",
			fmt.Sprintf("kbs: the broker is at capacity (%d attestations in progress); POST /kbs/v0/auth again shortly", cap(s.slots)))
		return
	}
	g, status, typ, err := s.attest(r.Context(), sess, a)
	<-s.slots
	if err != nil {
		s.log.Info("attestation refused", "tee", sess.tee, "err", err.Error())
		if status == http.StatusServiceUnavailable {
			w.Header().Set("Retry-After", "1")
		}
		writeError(w, status, typ, err.Error())
		return
	}
	tok, err := s.signer.issue(s.cfg.Rand, s.cfg.Issuer, now, s.cfg.TokenLifetime, sess.tee, a.RuntimeData.TeePubKey, g.claimsJSON)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "Internal", "signing the token: "+err.Error())
		return
	}
	s.sessions.attested(sess, g)
	s.log.Info("attested", "tee", sess.tee, "evidence_tee", g.claims["tee"], "tcb_status", g.claims["tcb_status"], "key", keyString(&a.RuntimeData.TeePubKey))
	s.setCookie(w, sess)
	writeJSON(w, map[string]string{"token": tok})
}

// admit takes an attestation slot, waiting up to QueueWait (or until ctx
// ends); false when none freed.
func (s *Server) admit(ctx context.Context) bool {
	select {
	case s.slots <- struct{}{}:
		return true
	default:
	}
	t := time.NewTimer(s.cfg.QueueWait)
	defer t.Stop()
	select {
	case s.slots <- struct{}{}:
		return true
	case <-t.C:
	case <-ctx.Done():
	}
	return false
}

// attest checks a against sess: nonce, evidence (verified, of the
// session's TEE), and the binding of the runtime data in its report data.
func (s *Server) attest(ctx context.Context, sess *session, a *Attestation) (*grant, int, string, error) {
	if a.RuntimeData.Nonce != sess.nonce {
		return nil, http.StatusUnauthorized, "AttestationError", errors.New("kbs: the runtime-data nonce is not this session's challenge")
	}
	teeKey, err := a.RuntimeData.TeePubKey.Parse()
	if err != nil {
		return nil, http.StatusBadRequest, "SerdeError", err
	}
	d, err := decodeEvidence(sess.tee, a.TeeEvidence.PrimaryEvidence)
	if err != nil {
		return nil, http.StatusBadRequest, "SerdeError", err
	}
	claims, err := s.verify(ctx, d)
	if err != nil {
		if errors.Is(err, errCollateral) {
			return nil, http.StatusServiceUnavailable, "ServiceUnavailable", err
		}
		return nil, http.StatusUnauthorized, "AttestationError", err
	}
	if !teeMatches(sess.tee, claims.TEE) {
		return nil, http.StatusUnauthorized, "AttestationError", fmt.Errorf("kbs: the session is for tee %s, the evidence is %s", sess.tee, claims.TEE)
	}
	want, err := BindingDigests(&a.RuntimeData, a.TeeEvidence.AdditionalEvidence, sess.hash)
	if err != nil {
		return nil, http.StatusInternalServerError, "Internal", err
	}
	bound := false
	for _, rd := range want {
		bound = bound || string(claims.ReportData) == string(rd[:])
	}
	if !bound {
		return nil, http.StatusUnauthorized, "AttestationError", fmt.Errorf("kbs: the evidence's report data %x does not bind this runtime-data (nonce and tee-pubkey, %s, zero-padded)", []byte(claims.ReportData), sess.hash)
	}
	m, err := claimsMap(claims)
	if err != nil {
		return nil, http.StatusInternalServerError, "Internal", err
	}
	g, err := newGrant(sess.tee, m, teeKey)
	if err != nil {
		return nil, http.StatusInternalServerError, "Internal", err
	}
	return g, 0, "", nil
}

// claimsMap is the verified claims as policies read them: the JSON of
// evidence.Claims (DESIGN.md "Common claims"), decoded generically.
func claimsMap(c *evidence.Claims) (map[string]any, error) {
	b, err := json.Marshal(c)
	if err != nil {
		return nil, fmt.Errorf("kbs: claims: %w", err)
	}
	return decodeClaims(b)
}

// decodeClaims decodes a claims object with its numbers as json.Number:
// SEV-SNP's TCB versions are uint64s that a float64 would round (losing
// the bootloader and TEE SVNs), and a policy must judge the exact value.
func decodeClaims(b []byte) (map[string]any, error) {
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var m map[string]any
	if err := d.Decode(&m); err != nil {
		return nil, fmt.Errorf("kbs: claims: %w", err)
	}
	if m == nil {
		return nil, errors.New("kbs: claims: not an object")
	}
	return m, nil
}

// grantOf authenticates a resource request: the bearer token when there
// is an Authorization header, else the session cookie.
func (s *Server) grantOf(r *http.Request) (*grant, string, error) {
	tok, ok := bearer(r)
	if !ok {
		return nil, "TokenVerifierError", errors.New("kbs: malformed Authorization header: want one \"Bearer TOKEN\"")
	}
	if tok != "" {
		g, err := s.signer.check(tok, s.cfg.Issuer, s.cfg.Now())
		if err != nil {
			return nil, "TokenVerifierError", err
		}
		return g, "", nil
	}
	c, err := r.Cookie(SessionCookie)
	if err != nil {
		return nil, "TokenNotFound", errors.New("kbs: no kbs-session-id cookie and no bearer token: attest first (POST /kbs/v0/auth, /kbs/v0/attest)")
	}
	g, err := s.sessions.grantOf(c.Value, s.cfg.Now())
	if err != nil {
		return nil, "TokenNotFound", err
	}
	return g, "", nil
}

// handleGetResource releases a resource, encrypted to the attested key,
// when the policy governing it allows: 401 without a valid session or
// token, 403 when the policy denies (see the package documentation for
// why not Trustee's 401), 404 when the resource does not exist (only
// told to a requester the policy allows).
func (s *Server) handleGetResource(w http.ResponseWriter, r *http.Request) {
	path, err := ResourcePath(r.PathValue("repository"), r.PathValue("type"), r.PathValue("tag"))
	if err != nil {
		writeError(w, http.StatusBadRequest, "InvalidRequestPath", err.Error())
		return
	}
	g, typ, err := s.grantOf(r)
	if err != nil {
		writeError(w, http.StatusUnauthorized, typ, err.Error())
		return
	}
	// The decision and the read are redone when a policy change lands in
	// between: a change whose PUT has returned governs every release that
	// completes after it, so the generation the decision was made under
	// must still be current once the value is in hand.
	var val []byte
	for attempt := 0; ; attempt++ {
		allow, gen, err := s.decide(r.Context(), g, path)
		if err != nil {
			s.log.Error("policy evaluation failed", "resource", path, "err", err.Error())
			writeError(w, http.StatusInternalServerError, "PolicyEngine", "kbs: evaluating the policy of "+path+" failed; nothing is released")
			return
		}
		if !allow {
			writeError(w, http.StatusForbidden, "PolicyDeny", "kbs: the resource policy of "+path+" denies this attester")
			return
		}
		st := s.st()
		val, err = st.Get(r.Context(), resourcePrefix+path)
		if errors.Is(err, kv.ErrNotFound) {
			writeError(w, http.StatusNotFound, "ResourceNotFound", "kbs: no resource "+path)
			return
		}
		if err != nil {
			s.storeFailed(st, err)
			s.log.Error("resource store", "resource", path, "err", err.Error())
			writeError(w, http.StatusInternalServerError, "Internal", "kbs: reading the resource failed")
			return
		}
		if s.afterResourceRead != nil {
			s.afterResourceRead()
		}
		if s.policies.generation() == gen {
			break
		}
		if attempt+1 >= maxPolicyRechecks {
			w.Header().Set("Retry-After", "1")
			writeError(w, http.StatusServiceUnavailable, "ServiceUnavailable", "kbs: the policies changed during every attempt to release "+path+"; retry shortly")
			return
		}
	}
	resp, err := Encrypt(s.cfg.Rand, g.teeKey, val)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "JweError", err.Error())
		return
	}
	writeJSON(w, resp)
}

// decide evaluates the policy governing path for g, once per policy
// generation, and returns the generation the decision belongs to.
func (s *Server) decide(ctx context.Context, g *grant, path string) (bool, uint64, error) {
	pol, gen, err := s.policies.forPath(ctx, path)
	if err != nil {
		return false, 0, err
	}
	k := decisionKey{input: g.input, path: path, gen: gen}
	if allow, ok := s.decisions.get(k); ok {
		return allow, gen, nil
	}
	repo, rest, _ := strings.Cut(path, "/")
	typ, tag, _ := strings.Cut(rest, "/")
	res, err := pol.Evaluate(ctx, map[string]any{
		"tee": g.tee, "claims": g.claims,
		"resource": map[string]any{"repository": repo, "type": typ, "tag": tag, "path": path},
	})
	if err != nil {
		return false, 0, err
	}
	s.decisions.put(k, res.Allow)
	return res.Allow, gen, nil
}

func (s *Server) handlePutResource(w http.ResponseWriter, r *http.Request) {
	path, err := ResourcePath(r.PathValue("repository"), r.PathValue("type"), r.PathValue("tag"))
	if err != nil {
		writeError(w, http.StatusBadRequest, "InvalidRequestPath", err.Error())
		return
	}
	if !s.admin(w, r) {
		return
	}
	body, ok := readBody(w, r, MaxResourceSize)
	if !ok {
		return
	}
	st := s.st()
	if err := st.Put(r.Context(), resourcePrefix+path, body); err != nil {
		s.storeFailed(st, err)
		writeError(w, http.StatusInternalServerError, "Internal", "kbs: storing the resource: "+err.Error())
		return
	}
	s.log.Info("resource stored", "resource", path, "bytes", len(body))
	w.WriteHeader(http.StatusOK)
}

func (s *Server) handleDeleteResource(w http.ResponseWriter, r *http.Request) {
	path, err := ResourcePath(r.PathValue("repository"), r.PathValue("type"), r.PathValue("tag"))
	if err != nil {
		writeError(w, http.StatusBadRequest, "InvalidRequestPath", err.Error())
		return
	}
	if !s.admin(w, r) {
		return
	}
	st := s.st()
	if _, err := st.Get(r.Context(), resourcePrefix+path); errors.Is(err, kv.ErrNotFound) {
		writeError(w, http.StatusNotFound, "ResourceNotFound", "kbs: no resource "+path)
		return
	}
	if err := st.Delete(r.Context(), resourcePrefix+path); err != nil {
		s.storeFailed(st, err)
		writeError(w, http.StatusInternalServerError, "Internal", "kbs: deleting the resource: "+err.Error())
		return
	}
	s.log.Info("resource deleted", "resource", path)
	w.WriteHeader(http.StatusOK)
}

// policyName is the store name of the policy a request addresses: the
// default one, or a resource's.
func policyName(r *http.Request) (string, error) {
	if r.PathValue("repository") == "" {
		return defaultPolicyName, nil
	}
	path, err := ResourcePath(r.PathValue("repository"), r.PathValue("type"), r.PathValue("tag"))
	if err != nil {
		return "", err
	}
	return policyPrefix + path, nil
}

// policyBody is the body of a policy request, Trustee's: the Rego module
// base64-encoded (standard or URL alphabet, as Trustee's client sends).
type policyBody struct {
	Policy string `json:"policy"`
}

func (s *Server) handleSetPolicy(w http.ResponseWriter, r *http.Request) {
	name, err := policyName(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, "InvalidRequestPath", err.Error())
		return
	}
	if !s.admin(w, r) {
		return
	}
	body, ok := readBody(w, r, MaxAdminBody)
	if !ok {
		return
	}
	var pb policyBody
	if err := jsonv2.Unmarshal(body, &pb, jsonv2.RejectUnknownMembers(true)); err != nil {
		writeError(w, http.StatusBadRequest, "SerdeError", "kbs: policy request: "+err.Error())
		return
	}
	text, err := decodePolicy(pb.Policy)
	if err != nil {
		writeError(w, http.StatusBadRequest, "SerdeError", err.Error())
		return
	}
	if err := s.policies.set(r.Context(), name, text); err != nil {
		status := http.StatusBadRequest
		if strings.HasPrefix(err.Error(), "kbs: policy store") {
			status = http.StatusInternalServerError
		}
		writeError(w, status, "PolicyEngine", err.Error())
		return
	}
	s.log.Info("policy set", "policy", name)
	w.WriteHeader(http.StatusOK)
}

func decodePolicy(s string) ([]byte, error) {
	if s == "" {
		return nil, errors.New("kbs: policy request: no policy")
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if b, err := enc.Strict().DecodeString(s); err == nil {
			return b, nil
		}
	}
	return nil, errors.New("kbs: policy request: policy is not base64")
}

func (s *Server) handleGetPolicy(w http.ResponseWriter, r *http.Request) {
	name, err := policyName(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, "InvalidRequestPath", err.Error())
		return
	}
	if !s.admin(w, r) {
		return
	}
	text, err := s.policies.get(r.Context(), name)
	switch {
	case errors.Is(err, kv.ErrNotFound) && name == defaultPolicyName:
		text = []byte(DefaultPolicy)
	case errors.Is(err, kv.ErrNotFound):
		writeError(w, http.StatusNotFound, "PolicyNotFound", "kbs: the resource has no policy of its own (the default governs it)")
		return
	case err != nil:
		writeError(w, http.StatusInternalServerError, "Internal", err.Error())
		return
	}
	writeJSON(w, policyBody{Policy: base64.StdEncoding.EncodeToString(text)})
}

func (s *Server) handleDeletePolicy(w http.ResponseWriter, r *http.Request) {
	name, err := policyName(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, "InvalidRequestPath", err.Error())
		return
	}
	if !s.admin(w, r) {
		return
	}
	if err := s.policies.set(r.Context(), name, nil); err != nil {
		writeError(w, http.StatusInternalServerError, "Internal", err.Error())
		return
	}
	s.log.Info("policy deleted", "policy", name)
	w.WriteHeader(http.StatusOK)
}

func (s *Server) handleJWKS(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Write(s.signer.jwks)
}
