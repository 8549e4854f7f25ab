package kbs

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/cloister-dev/cloister/attest/tokens"
)

// Admin authentication errors; each is answered 401 (AdminAuth).
var (
	errAdminDisabled = errors.New("kbs: management is disabled: the broker has no admin key")
	errAdminNoToken  = errors.New("kbs: management needs an admin token: Authorization: Bearer JWT signed with the admin Ed25519 key")
)

// checkAdminToken verifies an admin token as Trustee's admin API does: a
// JWT signed with EdDSA (Ed25519) by one of keys, with exp and iat (exp,
// nbf and iat checked at now, no leeway), no crit header, and a lifetime
// (exp - iat) of at most MaxAdminTokenLifetime, so that a leaked token is
// short-lived. Every key is tried: they are equally trusted.
func checkAdminToken(token string, keys []ed25519.PublicKey, now time.Time) error {
	if len(keys) == 0 {
		return errAdminDisabled
	}
	if len(token) > MaxTokenSize {
		return fmt.Errorf("kbs: admin token of %d bytes, more than %d", len(token), MaxTokenSize)
	}
	p := jwt.NewParser(jwt.WithValidMethods([]string{"EdDSA"}), jwt.WithTimeFunc(func() time.Time { return now }),
		jwt.WithExpirationRequired(), jwt.WithIssuedAt(), jwt.WithStrictDecoding())
	var lastErr error
	for _, k := range keys {
		claims := jwt.MapClaims{}
		_, err := p.ParseWithClaims(token, claims, func(t *jwt.Token) (any, error) {
			if _, ok := t.Header["crit"]; ok {
				return nil, tokens.ErrCritical
			}
			return k, nil
		})
		if err != nil {
			lastErr = err
			if errors.Is(err, jwt.ErrTokenSignatureInvalid) {
				continue // perhaps another key's
			}
			return fmt.Errorf("kbs: admin token: %w", err)
		}
		iat, err := claims.GetIssuedAt()
		if err != nil || iat == nil {
			return errors.New("kbs: admin token: no iat claim")
		}
		exp, _ := claims.GetExpirationTime() // required by the parser
		if life := exp.Sub(iat.Time); life > MaxAdminTokenLifetime {
			return fmt.Errorf("kbs: admin token: lifetime %v (iat to exp) is more than %v", life, MaxAdminTokenLifetime)
		}
		return nil
	}
	return fmt.Errorf("kbs: admin token: %w", lastErr)
}

// bearer returns the token of "Authorization: Bearer TOKEN", or "" when
// the header is absent; ok is false for a malformed header.
func bearer(r *http.Request) (token string, ok bool) {
	h := r.Header.Values("Authorization")
	switch len(h) {
	case 0:
		return "", true
	case 1:
	default:
		return "", false
	}
	scheme, tok, found := strings.Cut(h[0], " ")
	if !found || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	tok = strings.TrimSpace(tok)
	return tok, tok != ""
}

// admin authenticates a management request and answers 401 when it
// fails.
func (s *Server) admin(w http.ResponseWriter, r *http.Request) bool {
	if s.cfg.InsecureAdmin {
		return true
	}
	tok, ok := bearer(r)
	var err error
	switch {
	case len(s.cfg.AdminKeys) == 0:
		err = errAdminDisabled
	case !ok:
		err = errors.New("kbs: malformed Authorization header: want one \"Bearer TOKEN\"")
	case tok == "":
		err = errAdminNoToken
	default:
		err = checkAdminToken(tok, s.cfg.AdminKeys, s.cfg.Now())
	}
	if err != nil {
		s.log.Warn("admin request refused", "path", r.URL.Path, "err", err.Error())
		writeError(w, http.StatusUnauthorized, "AdminAuth", err.Error())
		return false
	}
	return true
}
