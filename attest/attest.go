// Package attest is Cloister's attestation service, compatible with the REST
// API of Microsoft Azure Attestation (MAA): relying parties POST evidence to
// /attest/{type} and get back a JWT signed by a key whose certificate carries
// the service's own evidence (RA-TLS), so the service itself can be attested.
// docs/maa-contract.md is the contract this package follows.
package attest

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	jsonv2 "github.com/go-json-experiment/json"
	jsonv1 "github.com/go-json-experiment/json/v1"
	"github.com/golang-jwt/jwt/v5"

	"github.com/cloister-dev/cloister/evidence"
	"github.com/cloister-dev/cloister/evidence/dcap"
	"github.com/cloister-dev/cloister/evidence/pcs"
	"github.com/cloister-dev/cloister/policy/maa"
	"github.com/cloister-dev/cloister/tee"
)

// APIVersions are the api-version values accepted (contract §1).
var APIVersions = []string{"2020-10-01", "2022-08-01", "2023-04-01-preview", "2025-06-01"}

// bodyHint caps the buffer readBody allocates before the body arrives.
const bodyHint = 64 << 10

// Defaults of Config.
const (
	DefaultMaxBody = 1 << 20
	DefaultTimeout = 30 * time.Second
	// DefaultMaxInFlight is far above what two cores keep busy (a warm
	// attestation is ~0.3 ms of CPU) and far below what would exhaust
	// memory.
	DefaultMaxInFlight = 64
	DefaultQueueWait   = 2 * time.Second
	TokenLifetime      = 8 * time.Hour // MAA's tokens are valid for 8 hours
	certificateLife    = 30 * 24 * time.Hour
)

// Config configures a Service.
type Config struct {
	// Platform is the TEE the service runs on; its evidence goes into the
	// signing key's certificate. Required.
	Platform tee.Platform
	// Now is the clock for tokens and verification; nil means time.Now.
	Now func() time.Time
	// Rand is the source of keys and token ids; nil means crypto/rand.
	Rand io.Reader
	// TrustRoots are accepted in addition to the built-in Intel root for
	// SGX/TDX quotes (the simulator root for development).
	TrustRoots []*x509.Certificate
	// Collateral returns DCAP collateral for a quote. Nil means TCB
	// evaluation is skipped (tcb_status "NotEvaluated").
	Collateral func(ctx context.Context, raw []byte) (*pcs.Bundle, error)
	// Alg is "RS256" (default, as MAA) or "ES256".
	Alg string
	// Issuer is the service's base URL (iss claim, jku, OIDC). Required.
	Issuer string
	// StateDir keeps uploaded policies; empty keeps them in memory only.
	StateDir string
	// Logger receives structured logs; nil discards them.
	Logger *slog.Logger
	// MaxBody caps request bodies; 0 means DefaultMaxBody.
	MaxBody int64
	// Timeout bounds one request's work; 0 means DefaultTimeout.
	Timeout time.Duration
	// MaxInFlight bounds the attestations evaluated at once; more wait up
	// to QueueWait for a slot and are then refused with 503 and
	// Retry-After, so an overload shows as quick refusals instead of every
	// request slowing towards Timeout. 0 means DefaultMaxInFlight.
	MaxInFlight int
	// QueueWait is how long an attestation waits for a slot; 0 means
	// DefaultQueueWait.
	QueueWait time.Duration
	// PolicySigners turns on isolated mode, as MAA's: policy uploads and
	// resets must be JWS signed by a trusted signer (x5c[0]); unsigned
	// documents are refused. These are the initial signers; the set is then
	// managed through /certificates and persisted under StateDir.
	PolicySigners []*x509.Certificate
	// KeyRotation, when positive, rotates the token-signing key this often
	// (see RotateKey); zero keeps one key for the service's life.
	KeyRotation time.Duration
	// AdminToken, when not empty, is the bearer token that policy and
	// policy-signer management requests (GET/PUT /policies, :reset,
	// /certificates) must carry in "Authorization: Bearer TOKEN"; it is
	// compared in constant time and never logged. Attestation, /certs and
	// discovery stay open, as MAA's are.
	AdminToken string
	// InsecureAdmin lets management requests through without any
	// authentication: for development only. With neither AdminToken nor
	// InsecureAdmin, every management request is refused (401). Isolated
	// mode's signature rules apply in every case.
	InsecureAdmin bool
	// Transparency, when set, records every attestation token the service
	// signs in a ledger before returning it (transparency.go); nil records
	// nothing.
	Transparency Transparency
	// Shared, when set, makes this service one replica of several that
	// share policies, policy signers and published token keys through it
	// (attest/etcdstate on etcd). Each replica signs with its own attested
	// key, /certs lists every live replica's keys (retired ones until their
	// tokens expire), and a policy or signer change returns only when
	// every live replica applies it (see replica.go). StateDir then keeps
	// nothing of the policies or signers. Nil keeps today's embedded state.
	Shared SharedState
	// ReplicaID names this replica in the shared state; empty means a
	// random id. Two live replicas must not share one.
	ReplicaID string
	// ReplicaTTL is the replica's lease (see DefaultReplicaTTL); a
	// replica that cannot renew it for this long stops signing.
	ReplicaTTL time.Duration
}

// Service is the attestation service; it is an http.Handler.
type Service struct {
	cfg      Config
	mux      *http.ServeMux
	log      *slog.Logger
	verifier *evidence.Verifier
	// dcapRoots is evidence.Options.TrustRoots for SGX/TDX quotes: nil for
	// the built-in Intel root, else Intel's root and Config.TrustRoots
	// (Options.TrustRoots replaces the built-in roots, so Intel's is named
	// again). Made once, not per request.
	dcapRoots []*x509.Certificate
	policies  *policyStore
	signers   *signerSet
	ring      atomic.Pointer[keyRing]
	rep       *replica // nil without Config.Shared
	jwksMu    sync.Mutex
	jwks      atomic.Pointer[[]byte] // what /certs serves
	rotateMu  sync.Mutex             // one rotation at a time
	bgCtx     context.Context        // cancelled by Close: background work ends
	bgCancel  context.CancelFunc
	bg        sync.WaitGroup // background work (rotation), waited for by Close
	oidc      []byte
	slots     chan struct{} // one per attestation in progress (MaxInFlight)
	metrics   *metrics
}

// New builds the service: it generates the token-signing key, certifies it
// with an RA-TLS key whose certificate carries the platform's evidence, and
// loads the stored policies.
func New(cfg Config) (*Service, error) {
	if cfg.Platform == nil {
		return nil, errors.New("attest: Config.Platform is required")
	}
	if cfg.Issuer == "" {
		return nil, errors.New("attest: Config.Issuer is required")
	}
	if cfg.AdminToken != "" && cfg.InsecureAdmin {
		return nil, errors.New("attest: Config.AdminToken and Config.InsecureAdmin exclude each other")
	}
	cfg.Issuer = strings.TrimRight(cfg.Issuer, "/")
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Rand == nil {
		cfg.Rand = rand.Reader
	}
	if cfg.MaxBody <= 0 {
		cfg.MaxBody = DefaultMaxBody
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.Alg == "" {
		cfg.Alg = "RS256"
	}
	if cfg.MaxInFlight <= 0 {
		cfg.MaxInFlight = DefaultMaxInFlight
	}
	if cfg.QueueWait <= 0 {
		cfg.QueueWait = DefaultQueueWait
	}
	s := &Service{cfg: cfg, log: cfg.Logger, verifier: evidence.NewVerifier(), metrics: newMetrics(),
		slots: make(chan struct{}, cfg.MaxInFlight)}
	if len(cfg.TrustRoots) > 0 {
		s.dcapRoots = append([]*x509.Certificate{dcap.IntelRoot()}, cfg.TrustRoots...)
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithTimeout(context.Background(), cfg.Timeout)
	defer cancel()
	k, err := s.newSigningKey(ctx)
	if err != nil {
		return nil, err
	}
	ring, err := newRing([]*signingKey{k})
	if err != nil {
		return nil, err
	}
	s.ring.Store(ring)
	s.refreshJWKS()
	if s.oidc, err = s.discovery(); err != nil {
		return nil, err
	}
	stateDir := cfg.StateDir
	if cfg.Shared != nil {
		stateDir = "" // policies and signers live in the shared state
	}
	if s.policies, err = newPolicyStore(ctx, stateDir); err != nil {
		return nil, err
	}
	if s.signers, err = newSignerSet(cfg.PolicySigners, stateDir); err != nil {
		return nil, err
	}
	var joinedAt int64
	if cfg.Shared != nil {
		if cfg.ReplicaTTL <= 0 {
			cfg.ReplicaTTL = DefaultReplicaTTL
			s.cfg.ReplicaTTL = cfg.ReplicaTTL
		}
		id := cfg.ReplicaID
		if id == "" {
			b := make([]byte, 8)
			if _, err := io.ReadFull(cfg.Rand, b); err != nil {
				return nil, fmt.Errorf("attest: replica id: %w", err)
			}
			id = hex.EncodeToString(b)
		}
		// Joining may wait for the store (a leader election): give it
		// more than one request's worth when the TTL is long.
		jctx, jcancel := context.WithTimeout(context.Background(), max(cfg.Timeout, 2*cfg.ReplicaTTL))
		var rep *replica
		if rep, err = newReplica(jctx, s, cfg.Shared, id, cfg.ReplicaTTL); err == nil {
			joinedAt = rep.lastJoin
		}
		jcancel()
		if err != nil {
			return nil, err
		}
	}
	s.routes()
	s.bgCtx, s.bgCancel = context.WithCancel(context.Background())
	if s.rep != nil {
		s.bg.Go(func() { s.rep.run(s.bgCtx, joinedAt) })
	}
	if cfg.KeyRotation > 0 {
		s.bg.Go(func() { s.rotateEvery(cfg.KeyRotation) })
	}
	return s, nil
}

// Close stops the service's background work (key rotation), cancelling a
// rotation under way, and waits for it. Requests in flight are the HTTP
// server's to drain.
func (s *Service) Close() error {
	s.bgCancel()
	s.bg.Wait()
	return nil
}

// discovery is the OpenID Connect metadata document.
func (s *Service) discovery() ([]byte, error) {
	b, err := json.Marshal(map[string]any{
		"issuer":                                s.cfg.Issuer,
		"jwks_uri":                              s.cfg.Issuer + "/certs",
		"id_token_signing_alg_values_supported": []string{s.cfg.Alg},
		"response_types_supported":              []string{"token", "none"},
		"claims_supported": []string{"iss", "iat", "nbf", "exp", "jti", "nonce", "x-ms-ver", "x-ms-attestation-type",
			"x-ms-policy-hash", "x-ms-runtime", "x-ms-inittime", "x-ms-sgx-mrenclave", "x-ms-sgx-mrsigner",
			"x-ms-sgx-product-id", "x-ms-sgx-svn", "x-ms-sgx-is-debuggable", "x-ms-sgx-ehd", "x-ms-sgx-collateral", "x-ms-sgx-config-id",
			"x-ms-sgx-config-svn", "x-ms-sgx-isv-extended-product-id", "x-ms-sgx-isv-family-id", "tcb_status"},
	})
	if err != nil {
		return nil, fmt.Errorf("attest: %w", err)
	}
	return b, nil
}

// Certificates returns the x5c chain of the current signing key: the
// signing certificate, then the RA-TLS certificate that certified it.
func (s *Service) Certificates() ([]*x509.Certificate, error) {
	return append([]*x509.Certificate(nil), s.ring.Load().current().certs...), nil
}

// ParseX5C decodes a JWK x5c member (standard base64 DER).
func ParseX5C(x5c []string) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	for i, s := range x5c {
		der, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			return nil, fmt.Errorf("x5c[%d]: %w", i, err)
		}
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, fmt.Errorf("x5c[%d]: %w", i, err)
		}
		out = append(out, c)
	}
	return out, nil
}

// sign signs claims with the service key, header as MAA's (jku, kid, typ).
func (s *Service) sign(claims jwt.MapClaims) (string, error) {
	if s.rep != nil && !s.rep.live() {
		return "", ErrFenced
	}
	k := s.ring.Load().current()
	t := jwt.NewWithClaims(k.method, claims)
	t.Header["jku"] = s.cfg.Issuer + "/certs"
	t.Header["kid"] = k.kid
	tok, err := t.SignedString(k.key)
	if err != nil {
		return "", fmt.Errorf("signing token: %w", err)
	}
	return tok, nil
}

func (s *Service) routes() {
	m := http.NewServeMux()
	m.HandleFunc("POST /attest/{type}", s.handleAttest)
	m.HandleFunc("GET /certs", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(*s.jwks.Load())
	})
	m.HandleFunc("GET /.well-known/openid-configuration", s.static(s.oidc))
	m.HandleFunc("GET /policies/{type}", s.admin(s.handleGetPolicy))
	m.HandleFunc("PUT /policies/{type}", s.admin(s.handlePutPolicy))
	m.HandleFunc("POST /policies/{typereset}", s.admin(s.handleResetPolicy))
	m.HandleFunc("GET /certificates", s.admin(s.handleGetCertificates))
	m.HandleFunc("POST /certificates:add", s.admin(s.handleChangeCertificate(true)))
	m.HandleFunc("POST /certificates:remove", s.admin(s.handleChangeCertificate(false)))
	m.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		_, _ = io.WriteString(w, "ok\n")
	})
	m.HandleFunc("GET /metrics", s.metrics.serve)
	s.mux = m
}

// ServeHTTP implements http.Handler: every request gets a deadline, a body
// cap, a JSON error for unmatched routes, a log line and metrics.
func (s *Service) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.Timeout)
	defer cancel()
	r = r.WithContext(ctx)
	r.Body = http.MaxBytesReader(w, r.Body, s.cfg.MaxBody)
	rw := &statusWriter{ResponseWriter: w, code: 200}
	h, pattern := s.mux.Handler(r)
	if pattern == "" {
		// ServeMux answers 404/405 in plain text; MAA clients expect
		// CloudError JSON, so we take over the status it would use.
		probe := &statusWriter{ResponseWriter: discardWriter{h: http.Header{}}, code: 200}
		h.ServeHTTP(probe, r)
		code, msg := http.StatusNotFound, "no such endpoint: "+r.URL.Path
		if probe.code == http.StatusMethodNotAllowed {
			code, msg = http.StatusMethodNotAllowed, "method "+r.Method+" not allowed on "+r.URL.Path
			rw.Header().Set("Allow", probe.ResponseWriter.Header().Get("Allow"))
		}
		writeError(rw, code, codeFor(code), msg)
	} else {
		// Through the mux again, not h: only ServeMux.ServeHTTP sets the
		// {type} path values.
		s.mux.ServeHTTP(rw, r)
	}
	d := time.Since(start)
	s.metrics.observe(pattern, rw.code, d)
	s.log.LogAttrs(ctx, slog.LevelInfo, "request", slog.String("method", r.Method), slog.String("path", r.URL.Path),
		slog.Int("status", rw.code), slog.Duration("duration", d))
}

type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) WriteHeader(code int) { w.code = code; w.ResponseWriter.WriteHeader(code) }

type discardWriter struct{ h http.Header }

func (d discardWriter) Header() http.Header         { return d.h }
func (d discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (d discardWriter) WriteHeader(int)             {}

func codeFor(code int) string {
	switch code {
	case http.StatusNotFound:
		return "NotFound"
	case http.StatusMethodNotAllowed:
		return "MethodNotAllowed"
	case http.StatusRequestEntityTooLarge:
		return "RequestTooLarge"
	case http.StatusServiceUnavailable:
		return "ServiceUnavailable"
	}
	return "BadRequest"
}

// writeError writes MAA's CloudError body (contract §1).
func writeError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"error": map[string]string{"code": code, "message": msg}})
}

// writeToken writes the {"token": JWT} response. A compact JWS is base64url
// and dots, which JSON carries unescaped, so no encoder is needed.
func writeToken(w http.ResponseWriter, tok string) {
	w.Header().Set("Content-Type", "application/json")
	_, _ = io.WriteString(w, `{"token":"`+tok+"\"}\n")
}

func (s *Service) static(body []byte) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(body)
	}
}

// checkAPIVersion answers 400 (and returns false) unless api-version is one
// of APIVersions.
func checkAPIVersion(w http.ResponseWriter, r *http.Request) bool {
	v := r.URL.Query().Get("api-version")
	for _, ok := range APIVersions {
		if v == ok {
			return true
		}
	}
	writeError(w, http.StatusBadRequest, "InvalidApiVersion",
		fmt.Sprintf("api-version %q is not supported; use one of %s", v, strings.Join(APIVersions, ", ")))
	return false
}

// readBody reads the capped body, answering 413 or 400 on failure. A
// declared Content-Length sizes the buffer (an attest request is several
// kilobytes, which io.ReadAll would reach by repeated doubling and copying),
// up to bodyHint: a client that declares a megabyte and sends nothing must
// not cost a megabyte per connection.
func (s *Service) readBody(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	if r.ContentLength > s.cfg.MaxBody {
		writeError(w, http.StatusRequestEntityTooLarge, "RequestTooLarge", fmt.Sprintf("request body larger than %d bytes", s.cfg.MaxBody))
		return nil, false
	}
	buf := bytes.NewBuffer(make([]byte, 0, min(max(r.ContentLength, 0), bodyHint)+bytes.MinRead))
	_, err := buf.ReadFrom(r.Body)
	b := buf.Bytes()
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		writeError(w, http.StatusRequestEntityTooLarge, "RequestTooLarge", fmt.Sprintf("request body larger than %d bytes", mbe.Limit))
		return nil, false
	}
	if err != nil {
		writeError(w, http.StatusBadRequest, "BadRequest", "reading request body: "+err.Error())
		return nil, false
	}
	return b, true
}

// attestData is runtimeData / initTimeData.
type attestData struct {
	Data     string `json:"data"`
	DataType string `json:"dataType"`
}

type attestRequest struct {
	Quote        string      `json:"quote"`
	Report       string      `json:"report"`
	RuntimeData  *attestData `json:"runtimeData"`
	InitTimeData *attestData `json:"initTimeData"`
	Nonce        *string     `json:"nonce"`
	DraftPolicy  *string     `json:"draftPolicyForAttestation"`
}

// decodeRequest parses an /attest request body. It uses the v2 JSON decoder
// (the future encoding/json/v2): a quote is several kilobytes of base64,
// which encoding/json scans byte by byte twice, at ~50 µs a request here;
// v2 takes a seventh of that. v2 is also stricter, as a verifier should be:
// duplicate member names, invalid UTF-8 and trailing data are errors. Names
// still match case-insensitively, as encoding/json (and so MAA clients that
// rely on it) did, and only that: v2's case-insensitive matching alone
// would also ignore '_' and '-', so "runtime_data" would become
// runtimeData, where encoding/json ignored it.
func decodeRequest(body []byte, req *attestRequest) error {
	if err := jsonv2.Unmarshal(body, req, jsonv2.MatchCaseInsensitiveNames(true), jsonv1.MatchCaseSensitiveDelimiter(true)); err != nil {
		return fmt.Errorf("request body is not a JSON object of the attest request shape: %w", err)
	}
	return nil
}

// decodeData decodes one data member; for dataType JSON it also parses the
// JSON, which becomes x-ms-runtime / x-ms-inittime. Numbers stay exact
// (json.Number): the evidence binds the client's bytes, and a uint64 nonce
// or counter above 2^53 read as float64 would reach the token rounded.
func decodeData(name string, d *attestData) ([]byte, any, error) {
	raw, err := decodeB64(d.Data)
	if err != nil {
		return nil, nil, fmt.Errorf("%s.data: bad base64/base64url: %w", name, err)
	}
	switch d.DataType {
	case "Binary", "":
		return raw, nil, nil
	case "JSON":
		// v2 checks the data strictly (duplicate names, invalid UTF-8,
		// trailing data); encoding/json then keeps its numbers exact.
		if err := jsonv2.Unmarshal(raw, new(any)); err != nil {
			return nil, nil, fmt.Errorf("%s.data: dataType JSON but the data is not JSON: %w", name, err)
		}
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.UseNumber()
		var v any
		if err := dec.Decode(&v); err != nil {
			return nil, nil, fmt.Errorf("%s.data: dataType JSON but the data is not JSON: %w", name, err)
		}
		return raw, v, nil
	}
	return nil, nil, fmt.Errorf(`%s.dataType %q: want "Binary" or "JSON"`, name, d.DataType)
}

// typeTEEs lists the evidence kinds each endpoint accepts.
var typeTEEs = map[string][]string{
	TypeSgxEnclave:  {evidence.TEESGX, evidence.TEESimSGX},
	TypeOpenEnclave: {evidence.TEESGX, evidence.TEESimSGX},
	TypeTdxVm:       {evidence.TEETDX, evidence.TEESimTDX},
	TypeSevSnpVm:    {evidence.TEESNP},
}

func (s *Service) handleAttest(w http.ResponseWriter, r *http.Request) {
	typ := r.PathValue("type")
	if !knownType(typ) {
		writeError(w, http.StatusNotFound, "NotFound", fmt.Sprintf("unknown attestation type %q; want one of %s", typ, strings.Join(types, ", ")))
		return
	}
	if !checkAPIVersion(w, r) {
		return
	}
	body, ok := s.readBody(w, r)
	if !ok {
		return
	}
	var req attestRequest
	if err := decodeRequest(body, &req); err != nil {
		writeError(w, http.StatusBadRequest, "InvalidRequest", err.Error())
		return
	}
	field, b64 := "quote", req.Quote
	if typ == TypeOpenEnclave || typ == TypeSevSnpVm {
		field, b64 = "report", req.Report
	}
	if b64 == "" {
		writeError(w, http.StatusBadRequest, "InvalidRequest", fmt.Sprintf("missing %q (base64url evidence)", field))
		return
	}
	raw, err := decodeB64(b64)
	if err != nil {
		writeError(w, http.StatusBadRequest, "InvalidRequest", fmt.Sprintf("%s: bad base64/base64url: %v", field, err))
		return
	}
	ev, err := decodeEvidence(typ, raw)
	if err != nil {
		writeError(w, http.StatusBadRequest, "InvalidRequest", fmt.Sprintf("%s: %v", field, err))
		return
	}
	var runtime, initTime []byte
	var runtimeJSON, initJSON any
	if req.RuntimeData != nil {
		if runtime, runtimeJSON, err = decodeData("runtimeData", req.RuntimeData); err != nil {
			writeError(w, http.StatusBadRequest, "InvalidRequest", err.Error())
			return
		}
	}
	if req.InitTimeData != nil {
		if initTime, initJSON, err = decodeData("initTimeData", req.InitTimeData); err != nil {
			writeError(w, http.StatusBadRequest, "InvalidRequest", err.Error())
			return
		}
	}
	// A slot only now: a slow client sending its body holds none.
	if !s.admit(w, r) {
		return
	}
	defer func() { <-s.slots }()
	pol := s.policies.get(typ)
	draft := req.DraftPolicy != nil
	if pol.unavailable != "" && !draft {
		writeError(w, http.StatusServiceUnavailable, "PolicyUnavailable", "the "+typ+" policy in the shared state is unusable: "+pol.unavailable)
		return
	}
	if draft {
		if pol, err = compilePolicy(r.Context(), *req.DraftPolicy); err != nil {
			writeError(w, http.StatusBadRequest, "InvalidPolicy", "draftPolicyForAttestation: "+err.Error())
			return
		}
	}

	claims, used, status, code, err := s.verify(r.Context(), ev)
	if err != nil {
		s.metrics.verdict("invalid")
		writeError(w, status, code, err.Error())
		return
	}
	if !slices.Contains(typeTEEs[typ], claims.TEE) {
		writeError(w, http.StatusBadRequest, "InvalidEvidence",
			fmt.Sprintf("evidence is %s, which /attest/%s does not take", claims.TEE, typ))
		return
	}
	if req.RuntimeData != nil {
		sum := sha256.Sum256(runtime)
		// []byte: ReportData's String method would make %x hex its hex.
		if got := []byte(claims.ReportData[:32]); !bytes.Equal(got, sum[:]) {
			s.metrics.verdict("invalid")
			writeError(w, http.StatusBadRequest, "RuntimeDataMismatch", fmt.Sprintf(
				"runtimeData does not match the evidence: SHA-256(runtimeData.data) = %x, but report_data[0:32] = %x", sum, got))
			return
		}
	}
	if req.InitTimeData != nil {
		if code, err := bindInitTimeData(typ, claims, initTime); err != nil {
			s.metrics.verdict("invalid")
			writeError(w, http.StatusBadRequest, code, err.Error())
			return
		}
	}

	incoming := maa.ClaimsFromEvidence(claims)
	if req.RuntimeData != nil && (claims.SGXClaims != nil) {
		incoming = append(incoming, maa.Claim{Type: "x-ms-sgx-ehd", Value: base64.RawURLEncoding.EncodeToString(runtime), Issuer: maa.IssuerService})
	}
	var collateral map[string]any
	if claims.SGXClaims != nil {
		if collateral, err = sgxCollateralClaim(raw, used); err != nil {
			writeError(w, http.StatusServiceUnavailable, "ServiceUnavailable", err.Error())
			return
		}
	}
	v, err := pol.evaluate(r.Context(), incoming)
	if err != nil {
		writeError(w, http.StatusBadRequest, "PolicyEvaluationError", err.Error())
		return
	}
	ear := wantsEAR(r)
	if !v.permitted {
		s.metrics.verdict("denied")
		s.log.LogAttrs(r.Context(), slog.LevelInfo, "attestation denied", slog.String("type", typ), slog.String("reason", v.reason))
		if ear && !draft {
			// EAR reports a denial as a signed "contraindicated" result.
			tok, err := s.signAttested(r.Context(), s.earClaims(claims.TEE, claims.TCBStatus, false, v.reason,
				jwt.MapClaims{"x-ms-attestation-type": claims.TEE, "x-ms-policy-hash": pol.hash, "tcb_status": claims.TCBStatus}, req.Nonce), raw)
			if err != nil {
				writeError(w, http.StatusServiceUnavailable, "ServiceUnavailable", err.Error())
				return
			}
			writeToken(w, tok)
			return
		}
		writeError(w, http.StatusBadRequest, "PolicyEvaluationError", "attestation policy denied the evidence: "+v.reason)
		return
	}

	now := s.cfg.Now()
	jti := make([]byte, 16)
	if _, err := io.ReadFull(s.cfg.Rand, jti); err != nil {
		writeError(w, http.StatusServiceUnavailable, "ServiceUnavailable", "no randomness for the token id")
		return
	}
	tc := jwt.MapClaims{}
	for k, val := range v.issued {
		tc[k] = val
	}
	for _, c := range incoming {
		if strings.HasPrefix(c.Type, "$") {
			continue // the deprecated policy-only names are not token claims
		}
		tc[c.Type] = c.Value
	}
	if len(v.issued) > 0 {
		tc["x-ms-policy"] = v.issued
	}
	tc["iss"] = s.cfg.Issuer
	tc["iat"] = now.Unix()
	tc["nbf"] = now.Unix()
	tc["exp"] = now.Add(TokenLifetime).Unix()
	tc["jti"] = hex.EncodeToString(jti)
	tc["x-ms-ver"] = "1.0"
	tc["x-ms-policy-hash"] = pol.hash
	tc["tcb_status"] = claims.TCBStatus
	if pol.signer != nil {
		tc["x-ms-policy-signer"] = pol.signer
	}
	if req.Nonce != nil {
		tc["nonce"] = *req.Nonce
	}
	if collateral != nil {
		tc["x-ms-sgx-collateral"] = collateral
	}
	if runtimeJSON != nil {
		tc["x-ms-runtime"] = runtimeJSON
	}
	if initJSON != nil {
		tc["x-ms-inittime"] = initJSON
	}
	if ear {
		tc = s.earClaims(claims.TEE, claims.TCBStatus, true, "", tc, req.Nonce)
	}
	var tok string
	if draft {
		// MAA: a token from a draft policy "cannot be validated"; it is
		// unsigned so no relying party can mistake it for a real one.
		tok, err = jwt.NewWithClaims(jwt.SigningMethodNone, tc).SignedString(jwt.UnsafeAllowNoneSignatureType)
	} else {
		tok, err = s.signAttested(r.Context(), tc, raw)
	}
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, "ServiceUnavailable", err.Error())
		return
	}
	s.metrics.verdict("permitted")
	s.log.LogAttrs(r.Context(), slog.LevelInfo, "attested", slog.String("type", typ), slog.String("tee", claims.TEE),
		slog.String("tcb_status", claims.TCBStatus), slog.Bool("draft", draft))
	writeToken(w, tok)
}

// admit takes an attestation slot, waiting up to QueueWait; when none
// frees it answers 503 with Retry-After and returns false.
func (s *Service) admit(w http.ResponseWriter, r *http.Request) bool {
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
	case <-r.Context().Done():
	}
	w.Header().Set("Retry-After", "1")
	writeError(w, http.StatusServiceUnavailable, "ServiceUnavailable",
		fmt.Sprintf("the service is at capacity (%d attestations in progress); retry shortly", cap(s.slots)))
	return false
}

// verify checks raw with evidence.Verify, mapping failures to a status,
// an error code and a message that says what was wrong with the evidence.
// It also returns the collateral bundle the verdict used (nil if none).
func (s *Service) verify(ctx context.Context, ev submitted) (*evidence.Claims, *pcs.Bundle, int, string, error) {
	raw := ev.raw
	kind := evidence.Detect(raw)
	if kind == evidence.KindUnknown {
		return nil, nil, http.StatusBadRequest, "InvalidEvidence",
			errors.New("evidence is not an SGX/TDX quote, SEV-SNP report or configfs-tsm report")
	}
	opts := evidence.Options{Time: s.cfg.Now(), VCEK: ev.vcek, SNPChain: ev.chain}
	// A configfs-tsm report carrying a TDX quote gets the quote's
	// collateral and roots, exactly as the bare quote would.
	if quote, ok := evidence.DCAPQuote(raw); ok {
		opts.TrustRoots = s.dcapRoots
		if s.cfg.Collateral == nil {
			opts.SkipTCBEvaluation = true
		} else {
			b, err := s.cfg.Collateral(ctx, quote)
			if err != nil {
				// Only now is the quote parsed for its collateral query
				// (not on every request, where it would cost a second
				// PCK chain parse): a quote that has none is the client's
				// fault (400), a failing source is not (503).
				if _, qerr := evidence.CollateralQuery(quote); qerr != nil {
					return nil, nil, http.StatusBadRequest, "InvalidEvidence", fmt.Errorf("evidence rejected: %w", qerr)
				}
				return nil, nil, http.StatusServiceUnavailable, "CollateralUnavailable", fmt.Errorf("collateral for this quote is unavailable: %w", err)
			}
			opts.Collateral = b
		}
	}
	c, err := s.verifier.Verify(ctx, raw, opts)
	if err != nil {
		if reason, ok := evidence.ReasonOf(err); ok {
			return nil, nil, http.StatusBadRequest, "InvalidEvidence", fmt.Errorf("evidence rejected (%v): %w", reason, err)
		}
		return nil, nil, http.StatusBadRequest, "InvalidEvidence", fmt.Errorf("evidence rejected: %w", err)
	}
	return c, opts.Collateral, 0, "", nil
}

// policyType reads {type} and answers 404 when it is unknown.
func policyType(w http.ResponseWriter, t string) bool {
	if !knownType(t) {
		writeError(w, http.StatusNotFound, "NotFound", fmt.Sprintf("unknown attestation type %q; want one of %s", t, strings.Join(types, ", ")))
		return false
	}
	return true
}

func (s *Service) handleGetPolicy(w http.ResponseWriter, r *http.Request) {
	t := r.PathValue("type")
	if !policyType(w, t) || !checkAPIVersion(w, r) {
		return
	}
	c := s.policies.get(t)
	s.respondSigned(w, jwt.MapClaims{"x-ms-policy": c.jws})
}

func (s *Service) handlePutPolicy(w http.ResponseWriter, r *http.Request) {
	t := r.PathValue("type")
	if !policyType(w, t) || !checkAPIVersion(w, r) {
		return
	}
	body, ok := s.readBody(w, r)
	if !ok {
		return
	}
	jws, err := requestJWS(body)
	if err != nil {
		writeError(w, http.StatusBadRequest, "InvalidPolicy", "policy document: "+err.Error())
		return
	}
	text, signer, err := parsePolicyJWS(jws)
	if err != nil {
		writeError(w, http.StatusBadRequest, "InvalidPolicy", err.Error())
		return
	}
	if s.isolated() && !s.signerAllowed(signer) {
		writeError(w, http.StatusForbidden, "PolicyNotSigned", "isolated mode: the policy document must be signed by a configured policy signer (x5c[0])")
		return
	}
	c, err := compilePolicy(r.Context(), text)
	if err != nil {
		writeError(w, http.StatusBadRequest, "InvalidPolicy", err.Error())
		return
	}
	c.jws, c.signer = jws, signer
	if s.rep != nil {
		out := jwt.MapClaims{"x-ms-policy-result": "Updated"}
		sum := sha256.Sum256([]byte(jws))
		out["x-ms-policy-token-hash"] = base64.RawURLEncoding.EncodeToString(sum[:])
		if signer != nil {
			out["x-ms-policy-signer"] = signer
		}
		s.sharedChange(w, r, func(ctx context.Context) (int64, error) { return s.rep.putPolicy(ctx, t, jws) }, out)
		return
	}
	if err := s.policies.set(r.Context(), t, c); err != nil {
		s.log.LogAttrs(r.Context(), slog.LevelError, "storing policy", slog.String("type", t), slog.String("error", err.Error()))
		writeError(w, http.StatusServiceUnavailable, "ServiceUnavailable", "the policy could not be stored")
		return
	}
	sum := sha256.Sum256([]byte(jws))
	out := jwt.MapClaims{"x-ms-policy-result": "Updated", "x-ms-policy-token-hash": base64.RawURLEncoding.EncodeToString(sum[:])}
	if signer != nil {
		out["x-ms-policy-signer"] = signer
	}
	s.log.LogAttrs(r.Context(), slog.LevelInfo, "policy updated", slog.String("type", t), slog.String("policy_hash", c.hash))
	s.respondSigned(w, out)
}

func (s *Service) handleResetPolicy(w http.ResponseWriter, r *http.Request) {
	seg := r.PathValue("typereset")
	t, ok := strings.CutSuffix(seg, ":reset")
	if !ok {
		writeError(w, http.StatusMethodNotAllowed, "MethodNotAllowed", "method POST not allowed on "+r.URL.Path+" (did you mean "+seg+":reset?)")
		return
	}
	if !policyType(w, t) || !checkAPIVersion(w, r) {
		return
	}
	body, ok := s.readBody(w, r)
	if !ok {
		return
	}
	// MAA's reset body is a JWS with an empty payload ("eyJhbGciOiJub25lIn0..").
	// Outside isolated mode only its shape matters (an unsigned form proves
	// nothing); in isolated mode it must be signed by a policy signer.
	jws, err := requestJWS(body)
	if err != nil {
		writeError(w, http.StatusBadRequest, "InvalidPolicy", "reset body: "+err.Error())
		return
	}
	if parts := strings.Split(jws, "."); len(parts) != 3 {
		writeError(w, http.StatusBadRequest, "InvalidPolicy", `reset body: want a JWS with an empty payload, e.g. "eyJhbGciOiJub25lIn0.."`)
		return
	}
	if s.isolated() {
		_, signer, err := readJWS(jws, "reset request")
		if err != nil {
			writeError(w, http.StatusBadRequest, "InvalidPolicy", err.Error())
			return
		}
		if !s.signerAllowed(signer) {
			writeError(w, http.StatusForbidden, "PolicyNotSigned", "isolated mode: the reset request must be signed by a configured policy signer (x5c[0])")
			return
		}
	}
	if s.rep != nil {
		s.sharedChange(w, r, func(ctx context.Context) (int64, error) { return s.rep.putPolicy(ctx, t, "") },
			jwt.MapClaims{"x-ms-policy-result": "Removed"})
		return
	}
	if err := s.policies.set(r.Context(), t, nil); err != nil {
		s.log.LogAttrs(r.Context(), slog.LevelError, "resetting policy", slog.String("type", t), slog.String("error", err.Error()))
		writeError(w, http.StatusServiceUnavailable, "ServiceUnavailable", "the policy could not be reset")
		return
	}
	s.log.LogAttrs(r.Context(), slog.LevelInfo, "policy reset", slog.String("type", t))
	s.respondSigned(w, jwt.MapClaims{"x-ms-policy-result": "Removed"})
}

// isolated reports whether policy changes need a trusted signer.
func (s *Service) isolated() bool {
	if s.rep != nil {
		return len(s.rep.signers.Load().certs) > 0
	}
	return s.signers.isolated()
}

// signerAllowed reports whether signer (from readJWS) is a current policy
// signer.
func (s *Service) signerAllowed(signer map[string]any) bool {
	if s.rep != nil {
		return signerAllowed(signer, s.rep.signers.Load().certs)
	}
	return s.signers.allowed(signer)
}

// signerCerts is the current policy signer set.
func (s *Service) signerCerts() []*x509.Certificate {
	if s.rep != nil {
		return slices.Clone(s.rep.signers.Load().certs)
	}
	return s.signers.snapshot()
}

// sharedChange stores a change in the shared state (write returns its
// revision) and answers only when every live replica has applied it: the
// PolicyResult out, with x-cloister-revision (the change's revision) and
// x-cloister-replicas (how many live replicas acknowledged it). When the
// request's deadline passes first, the change is stored but some replica
// has not confirmed it: 503 ChangeNotConfirmed names the revision, and the
// unconfirmed replicas stop signing within their lease TTL at the latest.
func (s *Service) sharedChange(w http.ResponseWriter, r *http.Request, write func(context.Context) (int64, error), out jwt.MapClaims) {
	if !s.rep.live() {
		// Refused before writing: a fenced replica could not sign the
		// answer, and its view of the signers may be stale.
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusServiceUnavailable, "ServiceUnavailable", ErrFenced.Error())
		return
	}
	rev, err := write(r.Context())
	switch {
	case errors.Is(err, errNoChange):
		s.respondSigned(w, out)
		return
	case errors.Is(err, errLastSigner):
		writeError(w, http.StatusBadRequest, "InvalidRequest", err.Error())
		return
	}
	if errors.Is(err, ErrConflict) {
		writeError(w, http.StatusConflict, "Conflict", "the shared state changed concurrently; retry")
		return
	}
	if err != nil {
		s.log.LogAttrs(r.Context(), slog.LevelError, "storing in the shared state", slog.String("error", err.Error()))
		writeError(w, http.StatusServiceUnavailable, "ServiceUnavailable", "the change could not be stored in the shared state")
		return
	}
	n, err := s.rep.waitApplied(r.Context(), rev)
	if err != nil {
		w.Header().Set("Retry-After", strconv.Itoa(int(s.cfg.ReplicaTTL.Seconds()+0.999)))
		writeError(w, http.StatusServiceUnavailable, "ChangeNotConfirmed", fmt.Sprintf(
			"the change is stored (revision %d) but not every replica confirmed it: %v; unconfirmed replicas stop signing within %v", rev, err, s.cfg.ReplicaTTL))
		return
	}
	out["x-cloister-revision"] = rev
	out["x-cloister-replicas"] = n
	s.log.LogAttrs(r.Context(), slog.LevelInfo, "shared state changed", slog.Int64("revision", rev), slog.Int("replicas", n))
	s.respondSigned(w, out)
}

// respondSigned wraps a PolicyResult in a service-signed {"token": JWT}.
func (s *Service) respondSigned(w http.ResponseWriter, c jwt.MapClaims) {
	now := s.cfg.Now()
	c["iss"], c["iat"], c["nbf"], c["exp"] = s.cfg.Issuer, now.Unix(), now.Unix(), now.Add(TokenLifetime).Unix()
	tok, err := s.sign(c)
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, "ServiceUnavailable", err.Error())
		return
	}
	writeToken(w, tok)
}
