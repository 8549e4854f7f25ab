// Package kbsclient is the guest side of the Trustee KBS attestation
// protocol (version 0.4.0) that broker/kbs serves and Confidential
// Containers guests speak: POST /kbs/v0/auth → a challenge; POST
// /kbs/v0/attest with runtime data {nonce, tee-pubkey} bound into fresh
// evidence; GET /kbs/v0/resource/REPO/TYPE/TAG → the secret as a JWE
// encrypted to the tee-pubkey, which is decrypted here with go-jose.
//
// The tee-pubkey is an ephemeral P-256 key made in this process (inside
// the enclave) for each attestation: the broker encrypts every resource
// to it, so whoever carries the bytes (the host, a proxy) sees ciphertext
// only, even without TLS. The transport is the caller's: inside an
// enclave it is RA-TLS to the broker over the enclave's network, which
// also authenticates the broker (see enclave.Env.Secret).
//
// The package is written from the protocol text and kbs-types, not from
// broker/kbs: it imports nothing of the server, so its tests check the
// two against each other.
package kbsclient

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/cloister-dev/cloister/evidence"
	"github.com/cloister-dev/cloister/tee"
)

// Protocol constants, as kbs-types spells them.
const (
	// ProtocolVersion is the KBS protocol version this client speaks.
	ProtocolVersion = "0.4.0"
	// SessionCookie is the session cookie /auth sets.
	SessionCookie = "kbs-session-id"
	// prefix is the KBS API root under the broker URL.
	prefix = "/kbs/v0"
)

// Caps on what the broker may send back.
const (
	// MaxResponse caps any answer body; the largest is a resource JWE
	// (broker/kbs caps resources at 256 KiB, so ~342 KiB in base64url).
	MaxResponse = 1 << 20
	// maxSegment caps each of repository, type and tag, as broker/kbs does.
	maxSegment = 128
)

// ErrPolicyDenied is returned when the broker's resource policy does not
// release the resource to this attester (403 PolicyDeny).
var ErrPolicyDenied = errors.New("kbsclient: the broker's resource policy denies this attester")

// ErrNotFound is returned when the broker has no such resource (404).
var ErrNotFound = errors.New("kbsclient: no such resource")

// ErrEmptySecret is returned when the broker releases a zero-length
// resource: no bytes are never a usable secret or key, and an app that
// took them for one would encrypt under nothing.
var ErrEmptySecret = errors.New("kbsclient: resource: the broker released an empty secret")

// Error is a refusal from the broker: the HTTP status and the KBS
// ErrorInformation (type and detail) it answered. ErrPolicyDenied and
// ErrNotFound match it with errors.Is.
type Error struct {
	// Step is the request that was refused: "auth", "attest" or "resource".
	Step string
	// Status is the HTTP status code.
	Status int
	// Type is the ErrorInformation type without Trustee's URL prefix
	// (e.g. "PolicyDeny", "AttestationError").
	Type string
	// Detail is the broker's explanation.
	Detail string
}

func (e *Error) Error() string {
	return fmt.Sprintf("kbsclient: %s: HTTP %d %s: %s", e.Step, e.Status, e.Type, e.Detail)
}

// Is lets errors.Is match the sentinels the status stands for.
func (e *Error) Is(target error) bool {
	switch target {
	case ErrPolicyDenied:
		return e.Status == http.StatusForbidden
	case ErrNotFound:
		return e.Status == http.StatusNotFound
	}
	return false
}

// Config is what a Client needs. Everything from outside is here.
type Config struct {
	// URL is the broker's root, scheme://host[:port] (the KBS API is
	// under URL/kbs/v0). Required.
	URL string
	// HTTPClient carries the requests. Inside an enclave it must dial
	// through the enclave's network and verify the broker with RA-TLS;
	// the secret itself is encrypted to a key only this process holds
	// whatever the transport. It must not follow redirects to other
	// hosts with the session cookie: New sets CheckRedirect to refuse
	// every redirect. Required.
	HTTPClient *http.Client
	// Platform makes the evidence that binds the runtime data. Required.
	Platform tee.Platform
	// Rand is the source of the ephemeral tee key; nil means crypto/rand.
	Rand io.Reader
}

// Client runs the KBS flow for one workload. It attests once and keeps
// the session for later resources; when the broker no longer knows the
// session (expired, broker restarted) it attests again once. It is safe
// for concurrent use.
type Client struct {
	cfg  Config
	base string

	mu   sync.Mutex
	sess *session
}

// session is an attested KBS session: its cookie and the private key the
// broker encrypts resources to. The key never leaves this process.
type session struct {
	cookie string
	key    *ecdsa.PrivateKey
}

// New checks cfg and returns a Client; it makes no request.
func New(cfg Config) (*Client, error) {
	if cfg.HTTPClient == nil {
		return nil, errors.New("kbsclient: config: no HTTPClient")
	}
	if cfg.Platform == nil {
		return nil, errors.New("kbsclient: config: no Platform")
	}
	u, err := url.Parse(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("kbsclient: config: URL %q: %w", cfg.URL, err)
	}
	if (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return nil, fmt.Errorf("kbsclient: config: URL %q: want scheme://host[:port] (https, or http behind another secure channel)", cfg.URL)
	}
	if _, err := teeName(cfg.Platform.Kind()); err != nil {
		return nil, err
	}
	if cfg.Rand == nil {
		cfg.Rand = rand.Reader
	}
	hc := *cfg.HTTPClient
	hc.Jar = nil // the session cookie is sent by hand, to this broker only
	hc.CheckRedirect = func(*http.Request, []*http.Request) error {
		return errors.New("kbsclient: the broker answered with a redirect; refusing to follow it")
	}
	cfg.HTTPClient = &hc
	return &Client{cfg: cfg, base: u.Scheme + "://" + u.Host + prefix}, nil
}

// ParsePath checks a resource path "repository/type/tag": three
// segments of letters, digits, '.', '_' and '-' (not "." or ".."), each
// at most 128 bytes, as the broker names resources.
func ParsePath(path string) (string, error) {
	parts := strings.Split(path, "/")
	if len(parts) != 3 {
		return "", fmt.Errorf("kbsclient: resource path %q: want repository/type/tag", path)
	}
	for i, s := range parts {
		name := [...]string{"repository", "type", "tag"}[i]
		if s == "" || s == "." || s == ".." || len(s) > maxSegment {
			return "", fmt.Errorf("kbsclient: resource path %q: bad %s %q", path, name, s)
		}
		for _, c := range []byte(s) {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
				return "", fmt.Errorf("kbsclient: resource path %q: %s %q: want letters, digits, '.', '_' and '-'", path, name, s)
			}
		}
	}
	return path, nil
}

// Resource returns the resource at path ("repository/type/tag"),
// attesting first if there is no session. A policy refusal is
// ErrPolicyDenied, a missing resource ErrNotFound (both *Error).
func (c *Client) Resource(ctx context.Context, path string) ([]byte, error) {
	if _, err := ParsePath(path); err != nil {
		return nil, err
	}
	for attempt := 0; ; attempt++ {
		s, fresh, err := c.session(ctx)
		if err != nil {
			return nil, err
		}
		out, err := c.resource(ctx, s, path)
		var e *Error
		// A session the broker lost (401) is attested again, once, unless
		// it was made just now: then the refusal is the answer.
		if errors.As(err, &e) && e.Status == http.StatusUnauthorized && !fresh && attempt == 0 {
			c.drop(s)
			continue
		}
		return out, err
	}
}

// session returns the current session, attesting if there is none;
// fresh says it was made by this call.
func (c *Client) session(ctx context.Context) (*session, bool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.sess != nil {
		return c.sess, false, nil
	}
	s, err := c.attest(ctx)
	if err != nil {
		return nil, false, err
	}
	c.sess = s
	return s, true, nil
}

// drop forgets s if it is still the current session.
func (c *Client) drop(s *session) {
	c.mu.Lock()
	if c.sess == s {
		c.sess = nil
	}
	c.mu.Unlock()
}

// teeName is the KBS tee of a platform kind.
func teeName(k tee.Kind) (string, error) {
	switch k {
	case tee.KindSGX, tee.KindSimSGX:
		return "sgx", nil
	case tee.KindTDX, tee.KindSimTDX:
		return "tdx", nil
	case tee.KindSNP:
		return "snp", nil
	}
	return "", fmt.Errorf("kbsclient: platform %q has no KBS tee name", k)
}

// attest runs /auth and /attest and returns the attested session.
func (c *Client) attest(ctx context.Context) (*session, error) {
	teeN, _ := teeName(c.cfg.Platform.Kind())
	req, _ := json.Marshal(map[string]any{"version": ProtocolVersion, "tee": teeN,
		"extra-params": map[string]any{"supported-hash-algorithms": []string{"sha384", "sha512", "sha256"}}})
	resp, body, err := c.do(ctx, "auth", http.MethodPost, "/auth", req, "")
	if err != nil {
		return nil, err
	}
	ch, err := parseChallenge(body)
	if err != nil {
		return nil, err
	}
	cookie := ""
	for _, ck := range resp.Cookies() {
		if ck.Name == SessionCookie {
			cookie = ck.Value
		}
	}
	if cookie == "" || strings.ContainsAny(cookie, ";\r\n") {
		return nil, errors.New("kbsclient: auth: the broker set no usable kbs-session-id cookie")
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), c.cfg.Rand)
	if err != nil {
		return nil, fmt.Errorf("kbsclient: tee key: %w", err)
	}
	pub, err := publicJWK(key)
	if err != nil {
		return nil, err
	}
	rd, err := ReportData(ch.Nonce, pub, ch.Hash)
	if err != nil {
		return nil, err
	}
	ev, err := c.cfg.Platform.Evidence(ctx, rd)
	if err != nil {
		return nil, fmt.Errorf("kbsclient: evidence: %w", err)
	}
	primary, err := primaryEvidence(ev)
	if err != nil {
		return nil, err
	}
	att, err := json.Marshal(map[string]any{
		"runtime-data": map[string]any{"nonce": ch.Nonce, "tee-pubkey": pub},
		"tee-evidence": map[string]any{"primary_evidence": primary, "additional_evidence": ""},
	})
	if err != nil {
		return nil, fmt.Errorf("kbsclient: attest: %w", err)
	}
	if _, _, err := c.do(ctx, "attest", http.MethodPost, "/attest", att, cookie); err != nil {
		return nil, err
	}
	return &session{cookie: cookie, key: key}, nil
}

// resource fetches and decrypts one resource in session s.
func (c *Client) resource(ctx context.Context, s *session, path string) ([]byte, error) {
	_, body, err := c.do(ctx, "resource", http.MethodGet, "/resource/"+path, nil, s.cookie)
	if err != nil {
		return nil, err
	}
	return DecryptResponse(body, s.key)
}

// DecryptResponse opens a resource answer (JWE JSON {protected,
// encrypted_key, iv, ciphertext, tag}) with key: ECDH-ES+A256KW and
// A256GCM only, the AAD being the protected header as sent. A
// zero-length plaintext is ErrEmptySecret.
func DecryptResponse(body []byte, key *ecdsa.PrivateKey) ([]byte, error) {
	obj, err := jose.ParseEncryptedJSON(string(body), []jose.KeyAlgorithm{jose.ECDH_ES_A256KW}, []jose.ContentEncryption{jose.A256GCM})
	if err != nil {
		return nil, fmt.Errorf("kbsclient: resource: not a JWE this client accepts: %w", err)
	}
	out, err := obj.Decrypt(key)
	if err != nil {
		return nil, fmt.Errorf("kbsclient: resource: the JWE does not decrypt with this session's key: %w", err)
	}
	if len(out) == 0 {
		return nil, ErrEmptySecret
	}
	return out, nil
}

// do sends one request and returns the answer when it is 200; any other
// status is an *Error carrying the broker's ErrorInformation.
func (c *Client) do(ctx context.Context, step, method, path string, body []byte, cookie string) (*http.Response, []byte, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return nil, nil, fmt.Errorf("kbsclient: %s: %w", step, err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if cookie != "" {
		req.Header.Set("Cookie", SessionCookie+"="+cookie)
	}
	resp, err := c.cfg.HTTPClient.Do(req)
	if err != nil {
		return nil, nil, fmt.Errorf("kbsclient: %s: %w", step, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, MaxResponse+1))
	if err != nil {
		return nil, nil, fmt.Errorf("kbsclient: %s: reading the answer: %w", step, err)
	}
	if len(b) > MaxResponse {
		return nil, nil, fmt.Errorf("kbsclient: %s: the answer is larger than %d bytes", step, MaxResponse)
	}
	if resp.StatusCode != http.StatusOK {
		e := &Error{Step: step, Status: resp.StatusCode, Type: "unknown", Detail: "(no ErrorInformation)"}
		var ei struct{ Type, Detail string }
		if json.Unmarshal(b, &ei) == nil && ei.Type != "" {
			e.Type = ei.Type[strings.LastIndexByte(ei.Type, '/')+1:]
			e.Detail = ei.Detail
		}
		return nil, nil, e
	}
	return resp, b, nil
}

// challenge is the answer to /auth.
type challenge struct {
	Nonce string
	Hash  string
}

// parseChallenge reads a Challenge: a nonce and, in extra-params, the
// selected hash algorithm (SHA-384 when absent, as kbs-types defaults).
func parseChallenge(body []byte) (*challenge, error) {
	var ch struct {
		Nonce       string          `json:"nonce"`
		ExtraParams json.RawMessage `json:"extra-params"`
	}
	if err := json.Unmarshal(body, &ch); err != nil {
		return nil, fmt.Errorf("kbsclient: auth: challenge: %w", err)
	}
	if ch.Nonce == "" {
		return nil, errors.New("kbsclient: auth: the challenge has no nonce")
	}
	out := &challenge{Nonce: ch.Nonce, Hash: "sha384"}
	var ep struct {
		Hash string `json:"selected-hash-algorithm"`
	}
	if len(ch.ExtraParams) > 0 && ch.ExtraParams[0] == '{' {
		if err := json.Unmarshal(ch.ExtraParams, &ep); err != nil {
			return nil, fmt.Errorf("kbsclient: auth: challenge extra-params: %w", err)
		}
		if ep.Hash != "" {
			out.Hash = strings.ToLower(ep.Hash)
		}
	}
	return out, nil
}

// primaryEvidence is the primary_evidence object for raw evidence: a
// quote (SGX, TDX) or a configfs-tsm report, base64 as CoCo's attesters
// write it.
func primaryEvidence(raw []byte) (map[string]string, error) {
	switch evidence.Detect(raw) {
	case evidence.KindSGXQuote, evidence.KindTDXQuote:
		return map[string]string{"quote": base64.StdEncoding.EncodeToString(raw)}, nil
	case evidence.KindTSMReport:
		return map[string]string{"tsm": base64.StdEncoding.EncodeToString(raw)}, nil
	}
	return nil, errors.New("kbsclient: evidence: the platform made evidence of a kind the KBS protocol does not carry")
}
