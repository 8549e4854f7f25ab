package attest

import (
	"bytes"
	"context"
	"crypto/sha1"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"

	jsonv2 "github.com/go-json-experiment/json"
	"github.com/golang-jwt/jwt/v5"
)

// signerSet is the isolated mode's trusted policy signers: configured at
// creation (Config.PolicySigners), then managed through /certificates with
// requests signed by a signer already in the set. It is persisted under
// StateDir, so additions and removals survive restart.
type signerSet struct {
	mu    sync.Mutex
	certs []*x509.Certificate
	path  string // "" keeps the set in memory only
}

const signersFile = "policy-signers.pem"

// newSignerSet loads the persisted set if there is one, else starts from
// the configured certificates. Isolated mode cannot be turned off by a
// missing or empty file: an empty set with configured signers falls back
// to them.
func newSignerSet(configured []*x509.Certificate, stateDir string) (*signerSet, error) {
	s := &signerSet{certs: append([]*x509.Certificate(nil), configured...)}
	if stateDir == "" {
		return s, nil
	}
	s.path = filepath.Join(stateDir, signersFile)
	data, err := os.ReadFile(s.path)
	if errors.Is(err, os.ErrNotExist) {
		return s, nil
	}
	if err != nil {
		return nil, fmt.Errorf("attest: policy signers: %w", err)
	}
	var loaded []*x509.Certificate
	for rest := data; ; {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			break
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("attest: policy signers: %s: %w", s.path, err)
		}
		loaded = append(loaded, c)
	}
	if len(loaded) > 0 {
		s.certs = loaded
	}
	return s, nil
}

// isolated reports whether policy changes need a trusted signer.
func (s *signerSet) isolated() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.certs) > 0
}

// allowed reports whether signer (from readJWS) is in the set.
func (s *signerSet) allowed(signer map[string]any) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return signerAllowed(signer, s.certs)
}

func (s *signerSet) snapshot() []*x509.Certificate {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*x509.Certificate(nil), s.certs...)
}

// change adds or removes c and persists the result. Removing the last
// signer is refused: it would leave an isolated instance no way to change
// policy, nor to add a signer back.
func (s *signerSet) change(c *x509.Certificate, add bool) (changed bool, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	idx := -1
	for i, have := range s.certs {
		if bytes.Equal(have.Raw, c.Raw) {
			idx = i
		}
	}
	next := s.certs
	switch {
	case add && idx >= 0, !add && idx < 0:
		return false, nil
	case add:
		next = append(append([]*x509.Certificate(nil), s.certs...), c)
	case len(s.certs) == 1:
		return false, errLastSigner
	default:
		next = append(append([]*x509.Certificate(nil), s.certs[:idx]...), s.certs[idx+1:]...)
	}
	if s.path != "" {
		var buf bytes.Buffer
		for _, n := range next {
			pem.Encode(&buf, &pem.Block{Type: "CERTIFICATE", Bytes: n.Raw})
		}
		if err := writeAtomic(s.path, buf.Bytes()); err != nil {
			return false, err
		}
	}
	s.certs = next
	return true, nil
}

// requestJWS reads a management request body that carries a compact JWS:
// bare (as MAA's samples and curl send it, Content-Type text/plain) or as a
// JSON string literal ("eyJ…", Content-Type application/json), which is how
// @azure/attestation sends certificates:add and :remove, following MAA's
// REST spec (the body parameter is a JSON string). The literal is decoded
// strictly: trailing data, invalid escapes or UTF-8 are errors. Either way
// the JWS is then checked by readJWS like any other.
func requestJWS(body []byte) (string, error) {
	t := bytes.TrimSpace(body)
	if len(t) == 0 || t[0] != '"' {
		return string(t), nil
	}
	var s string
	if err := jsonv2.Unmarshal(t, &s); err != nil {
		return "", fmt.Errorf("body is not a well-formed JSON string: %w", err)
	}
	return strings.TrimSpace(s), nil
}

// certificateJWK is a signer as a JWK carrying only its certificate.
func certificateJWK(c *x509.Certificate) map[string]any {
	return map[string]any{"kty": keyType(c), "x5c": []string{base64.StdEncoding.EncodeToString(c.Raw)}}
}

func keyType(c *x509.Certificate) string {
	switch c.PublicKeyAlgorithm {
	case x509.RSA:
		return "RSA"
	case x509.ECDSA:
		return "EC"
	}
	return "unknown"
}

func (s *Service) handleGetCertificates(w http.ResponseWriter, r *http.Request) {
	if !checkAPIVersion(w, r) {
		return
	}
	keys := []any{}
	for _, c := range s.signerCerts() {
		keys = append(keys, certificateJWK(c))
	}
	s.respondSigned(w, jwt.MapClaims{"x-ms-policy-certificates": map[string]any{"keys": keys}})
}

// handleChangeCertificate serves POST /certificates:add and :remove. The
// body (bare or as a JSON string literal, see requestJWS) is a JWS signed by a signer already trusted, whose payload carries
// the certificate as a JWK ("policyCertificate", or "maa-policyCertificate"
// as in MAA's sample).
func (s *Service) handleChangeCertificate(add bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !checkAPIVersion(w, r) {
			return
		}
		if !s.isolated() {
			writeError(w, http.StatusBadRequest, "NotIsolated", "policy signers are managed only in isolated mode (start the service with policy signers)")
			return
		}
		body, ok := s.readBody(w, r)
		if !ok {
			return
		}
		jws, err := requestJWS(body)
		if err != nil {
			writeError(w, http.StatusBadRequest, "InvalidRequest", "certificate request: "+err.Error())
			return
		}
		payload, signer, err := readJWS(jws, "certificate request")
		if err != nil {
			writeError(w, http.StatusBadRequest, "InvalidRequest", err.Error())
			return
		}
		if !s.signerAllowed(signer) {
			writeError(w, http.StatusForbidden, "PolicyNotSigned", "the request must be signed by a trusted policy signer (x5c[0])")
			return
		}
		c, err := requestedCertificate(payload)
		if err != nil {
			writeError(w, http.StatusBadRequest, "InvalidRequest", err.Error())
			return
		}
		result := map[bool]string{true: "IsPresent", false: "IsAbsent"}[add]
		out := jwt.MapClaims{"x-ms-policycertificates-result": result, "x-ms-certificate-thumbprint": thumbprint(c)}
		if s.rep != nil {
			s.sharedChange(w, r, func(ctx context.Context) (int64, error) {
				changed, rev, err := s.rep.changeSigner(ctx, c, add, jws)
				if err == nil && !changed {
					return 0, errNoChange
				}
				return rev, err
			}, out)
			return
		}
		changed, err := s.signers.change(c, add)
		if errors.Is(err, errLastSigner) {
			writeError(w, http.StatusBadRequest, "InvalidRequest", err.Error())
			return
		}
		if err != nil {
			s.log.LogAttrs(r.Context(), slog.LevelError, "storing policy signers", slog.String("error", err.Error()))
			writeError(w, http.StatusServiceUnavailable, "ServiceUnavailable", "the policy signers could not be stored")
			return
		}
		s.log.LogAttrs(r.Context(), slog.LevelInfo, "policy signers changed", slog.Bool("add", add), slog.Bool("changed", changed), slog.String("subject", c.Subject.String()))
		s.respondSigned(w, out)
	}
}

var (
	errLastSigner = errors.New("refusing to remove the last policy signer")
	// errNoChange: the change asked for is already the state (nothing
	// written, nothing to wait for).
	errNoChange = errors.New("no change")
)

// thumbprint is the certificate's SHA-1 thumbprint, as MAA reports it (an
// identifier, not a security check).
func thumbprint(c *x509.Certificate) string {
	return fmt.Sprintf("%X", sha1.Sum(c.Raw))
}

// requestedCertificate reads the JWK certificate out of a request payload.
func requestedCertificate(payload []byte) (*x509.Certificate, error) {
	var body map[string]json.RawMessage
	if err := json.Unmarshal(payload, &body); err != nil {
		return nil, fmt.Errorf("certificate request payload: bad JSON: %w", err)
	}
	raw, ok := body["policyCertificate"]
	if !ok {
		raw, ok = body["maa-policyCertificate"]
	}
	if !ok {
		return nil, errors.New("certificate request payload: no policyCertificate")
	}
	var jwk struct {
		X5C []string `json:"x5c"`
	}
	if err := json.Unmarshal(raw, &jwk); err != nil || len(jwk.X5C) == 0 {
		return nil, errors.New("certificate request payload: policyCertificate must be a JWK with x5c")
	}
	certs, err := ParseX5C(jwk.X5C[:1])
	if err != nil {
		return nil, fmt.Errorf("certificate request payload: %w", err)
	}
	return certs[0], nil
}
