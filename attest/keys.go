package attest

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/cloister-dev/cloister/ratls"
)

// signingKey is one token-signing key with its published certificates.
type signingKey struct {
	key    crypto.Signer
	method jwt.SigningMethod
	kid    string
	certs  []*x509.Certificate // [signing certificate, RA-TLS certificate]
	jwk    map[string]any
	// retired is when the key stopped signing (zero while current). Tokens
	// it signed stay valid TokenLifetime longer, and so does its JWK.
	retired time.Time
}

// keyRing is what the service signs with and publishes: the current key,
// then the retired keys whose tokens may still be valid, newest first. A
// ring is immutable; rotation swaps in a new one, so a request signs with
// whichever ring it loaded, and /certs always lists that ring's keys.
type keyRing struct {
	keys []*signingKey // keys[0] is current
	jwks []byte
}

func (r *keyRing) current() *signingKey { return r.keys[0] }

// newSigningKey generates a token-signing key and its certificate chain.
// ratls makes only ECDSA keys while MAA signs with RSA, so the signing key
// gets its own certificate, signed by the RA-TLS key, and x5c carries
// [signing certificate, RA-TLS certificate]. The RA-TLS certificate's
// evidence also binds SHA-256 of the signing key (claim "cloister-token-key"),
// so the binding holds even for a verifier that ignores the signature.
func (s *Service) newSigningKey(ctx context.Context) (*signingKey, error) {
	k := &signingKey{}
	var pub crypto.PublicKey
	switch s.cfg.Alg {
	case "RS256":
		rk, err := rsa.GenerateKey(s.cfg.Rand, 2048)
		if err != nil {
			return nil, fmt.Errorf("attest: signing key: %w", err)
		}
		k.key, pub, k.method = rk, &rk.PublicKey, jwt.SigningMethodRS256
	case "ES256":
		ek, err := ecdsa.GenerateKey(elliptic.P256(), s.cfg.Rand)
		if err != nil {
			return nil, fmt.Errorf("attest: signing key: %w", err)
		}
		k.key, pub, k.method = ek, &ek.PublicKey, jwt.SigningMethodES256
	default:
		return nil, fmt.Errorf("attest: Alg %q: want RS256 or ES256", s.cfg.Alg)
	}
	spki, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("attest: signing key: %w", err)
	}
	keyHash := sha256.Sum256(spki)
	k.kid = base64.RawURLEncoding.EncodeToString(keyHash[:])
	srv, err := ratls.NewServer(ctx, ratls.ServerOptions{
		Platform: s.cfg.Platform, Rand: s.cfg.Rand, Now: s.cfg.Now, Validity: certificateLife,
		CommonName: "cloister-attest", Claims: map[string][]byte{"cloister-token-key": keyHash[:]},
	})
	if err != nil {
		return nil, fmt.Errorf("attest: RA-TLS certificate: %w", err)
	}
	tc, err := srv.GetCertificate(nil)
	if err != nil {
		return nil, fmt.Errorf("attest: RA-TLS certificate: %w", err)
	}
	ra := srv.Certificate()
	signer, ok := tc.PrivateKey.(crypto.Signer)
	if !ok {
		return nil, errors.New("attest: RA-TLS key is not a crypto.Signer")
	}
	now := s.cfg.Now()
	tmpl := &x509.Certificate{
		SerialNumber: new(big.Int).SetBytes(keyHash[:16]),
		Subject:      pkix.Name{CommonName: s.cfg.Issuer},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     ra.NotAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(s.cfg.Rand, tmpl, ra, pub, signer)
	if err != nil {
		return nil, fmt.Errorf("attest: signing certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("attest: signing certificate: %w", err)
	}
	k.certs = []*x509.Certificate{leaf, ra}
	x5c := []string{base64.StdEncoding.EncodeToString(der), base64.StdEncoding.EncodeToString(ra.Raw)}
	if k.jwk, err = keyJWK(k.kid, s.cfg.Alg, pub, x5c); err != nil {
		return nil, err
	}
	return k, nil
}

// keyJWK is the published JWK of a token key: kid, alg, x5c and the
// public key's members.
func keyJWK(kid, alg string, pub crypto.PublicKey, x5c any) (map[string]any, error) {
	jwk := map[string]any{"kid": kid, "use": "sig", "alg": alg, "x5c": x5c}
	switch p := pub.(type) {
	case *rsa.PublicKey:
		jwk["kty"] = "RSA"
		jwk["n"] = base64.RawURLEncoding.EncodeToString(p.N.Bytes())
		jwk["e"] = base64.RawURLEncoding.EncodeToString(big.NewInt(int64(p.E)).Bytes())
	case *ecdsa.PublicKey:
		b, err := p.Bytes()
		if err != nil {
			return nil, fmt.Errorf("attest: signing key: %w", err)
		}
		if len(b) != 65 {
			return nil, fmt.Errorf("attest: signing key: not a P-256 key")
		}
		jwk["kty"], jwk["crv"] = "EC", "P-256"
		jwk["x"] = base64.RawURLEncoding.EncodeToString(b[1:33])
		jwk["y"] = base64.RawURLEncoding.EncodeToString(b[33:])
	default:
		return nil, fmt.Errorf("attest: signing key: unsupported key type %T", pub)
	}
	return jwk, nil
}

// refreshJWKS recomputes what /certs serves: this service's ring and,
// for a replica, its peers' attested keys.
func (s *Service) refreshJWKS() {
	s.jwksMu.Lock()
	defer s.jwksMu.Unlock()
	ring := s.ring.Load()
	if s.rep == nil {
		b := ring.jwks
		s.jwks.Store(&b)
		return
	}
	keys := make([]any, 0, len(ring.keys))
	for _, k := range ring.keys {
		keys = append(keys, k.jwk)
	}
	if p := s.rep.peers.Load(); p != nil {
		var peers []any
		if json.Unmarshal(*p, &peers) == nil {
			keys = append(keys, peers...)
		}
	}
	b, err := json.Marshal(map[string]any{"keys": keys})
	if err != nil {
		b = ring.jwks
	}
	s.jwks.Store(&b)
}

// newRing returns a ring of keys (current first) with its JWKS.
func newRing(keys []*signingKey) (*keyRing, error) {
	jwks := make([]any, len(keys))
	for i, k := range keys {
		jwks[i] = k.jwk
	}
	b, err := json.Marshal(map[string]any{"keys": jwks})
	if err != nil {
		return nil, fmt.Errorf("attest: JWKS: %w", err)
	}
	return &keyRing{keys: keys, jwks: b}, nil
}

// Published keys: a retired key stays in /certs for TokenLifetime plus
// keyGrace (relying parties with skewed clocks or exp leeway still find it),
// and /certs lists at most maxPublishedKeys, so rotating faster than
// (TokenLifetime+keyGrace)/(maxPublishedKeys-1) cannot grow it without
// bound: such a rotation fails with ErrTooManyKeys instead.
const (
	keyGrace         = 5 * time.Minute
	maxPublishedKeys = 16
)

// ErrTooManyKeys is returned by RotateKey when retiring the current key
// would publish more than maxPublishedKeys keys.
var ErrTooManyKeys = errors.New("attest: too many published keys")

// RotateKey makes a new token-signing key (with a new RA-TLS certificate
// carrying fresh evidence) and signs with it from now on. The previous key
// stays in /certs for TokenLifetime plus keyGrace, so tokens it signed still
// validate; keys retired longer ago are dropped. When that would leave more
// than maxPublishedKeys keys, nothing changes and the error wraps
// ErrTooManyKeys. Safe to call while the service serves requests.
func (s *Service) RotateKey(ctx context.Context) error {
	err := s.rotateKey(ctx)
	s.metrics.rotation(err == nil)
	return err
}

func (s *Service) rotateKey(ctx context.Context) error {
	k, err := s.newSigningKey(ctx)
	if err != nil {
		return err
	}
	s.rotateMu.Lock()
	defer s.rotateMu.Unlock()
	now := s.cfg.Now()
	old := s.ring.Load()
	keys := []*signingKey{k}
	for i, o := range old.keys {
		if i == 0 {
			// Retire a copy: the old ring, still in use by requests in
			// flight, is never written to. The copy only verifies.
			c := *o
			c.retired, c.key = now, nil
			o = &c
		}
		if now.Sub(o.retired) < TokenLifetime+keyGrace {
			keys = append(keys, o)
		}
	}
	if len(keys) > maxPublishedKeys {
		oldest := keys[len(keys)-1]
		return fmt.Errorf("%w: %d keys would be published (at most %d); the oldest retired key leaves /certs at %s",
			ErrTooManyKeys, len(keys), maxPublishedKeys, oldest.retired.Add(TokenLifetime+keyGrace).UTC().Format(time.RFC3339))
	}
	ring, err := newRing(keys)
	if err != nil {
		return err
	}
	if s.rep != nil {
		// Every live replica publishes the new key before it signs
		// anything, and the retired one gets its expiry.
		rev, err := s.rep.publishKeys(ctx, keys[:2])
		if err == nil {
			_, err = s.rep.waitApplied(ctx, rev)
		}
		if err != nil {
			return fmt.Errorf("attest: publishing the new key to the other replicas: %w", err)
		}
	}
	s.ring.Store(ring)
	s.refreshJWKS()
	s.log.LogAttrs(ctx, slog.LevelInfo, "signing key rotated", slog.String("kid", k.kid),
		slog.String("retired_kid", old.current().kid), slog.Int("published_keys", len(keys)))
	return nil
}

// rotateEvery rotates the signing key every d until Close. A failed
// rotation is logged and retried at the next tick: the current key stays
// valid meanwhile (its certificate lives certificateLife).
func (s *Service) rotateEvery(d time.Duration) {
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		select {
		case <-s.bgCtx.Done():
			return
		case <-t.C:
			// Derived from bgCtx: Close cancels a rotation under way (a
			// platform quote can be slow).
			ctx, cancel := context.WithTimeout(s.bgCtx, s.cfg.Timeout)
			if err := s.RotateKey(ctx); err != nil {
				s.log.LogAttrs(ctx, slog.LevelError, "signing key rotation failed", slog.String("error", err.Error()))
			}
			cancel()
		}
	}
}
