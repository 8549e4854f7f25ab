package akv

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Errors of attestation token verification. Each release refusal wraps one.
var (
	// ErrUntrustedIssuer means the token's iss is no authority the
	// operator trusts (Config.Authorities): its signature is not even
	// looked at.
	ErrUntrustedIssuer = errors.New("akv: token from an untrusted issuer")
	// ErrBadToken means the token is malformed, its header is refused
	// (alg, kid, crit) or its signature does not verify under the
	// authority's key named by kid.
	ErrBadToken = errors.New("akv: attestation token invalid")
	// ErrTokenExpired means the token's exp has passed, its nbf is still
	// to come, or it has no exp.
	ErrTokenExpired = errors.New("akv: attestation token expired or not yet valid")
)

// tokenMethods are the signature algorithms accepted. MAA signs RS256;
// Cloister's attestation service RS256 or ES256. Never "none" or HMAC.
var tokenMethods = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512"}

// KeySource gives an authority's token-signing public keys by kid.
type KeySource interface {
	// Key returns the key named kid, or an error if the authority has
	// none of that name.
	Key(ctx context.Context, kid string) (crypto.PublicKey, error)
}

// Authority is an issuer of attestation tokens the operator trusts, with
// the source of its signing keys.
type Authority struct {
	// Issuer is the iss its tokens carry (its base URL).
	Issuer string
	// Keys gives its signing keys (RemoteKeys over its JWKS, or a KeySet).
	Keys KeySource
}

// verifiedToken is a token whose signature, times and issuer were checked.
type verifiedToken struct {
	issuer string
	claims map[string]any // numbers as json.Number
}

// verifyToken checks raw against the trusted authorities (keyed by
// normalised issuer) at time now: the issuer must be trusted, the header
// must name an accepted alg and a kid of that issuer and carry no crit, the
// signature must verify, exp must be present and in the future and nbf, if
// present, past. Claims are returned only after all of it.
func verifyToken(ctx context.Context, raw string, auths map[string]Authority, now time.Time) (*verifiedToken, error) {
	if len(raw) > MaxToken {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrBadToken, len(raw), MaxToken)
	}
	var auth Authority
	var kerr error // the keyfunc's refusal, returned as it is
	p := jwt.NewParser(jwt.WithValidMethods(tokenMethods), jwt.WithExpirationRequired(), jwt.WithJSONNumber(),
		jwt.WithTimeFunc(func() time.Time { return now }))
	claims := jwt.MapClaims{}
	_, err := p.ParseWithClaims(raw, claims, func(t *jwt.Token) (any, error) {
		k, err := chooseKey(ctx, t, auths, &auth)
		kerr = err
		return k, err
	})
	switch {
	case kerr != nil:
		return nil, kerr
	case err == nil:
	case errors.Is(err, jwt.ErrTokenExpired) || errors.Is(err, jwt.ErrTokenNotValidYet) || errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		return nil, fmt.Errorf("%w: %w", ErrTokenExpired, err)
	default:
		return nil, fmt.Errorf("%w: %w", ErrBadToken, err)
	}
	iss, _ := claims["iss"].(string)
	if n, err := normalizeIssuer(iss); err != nil || n != mustNormalize(auth.Issuer) {
		return nil, fmt.Errorf("%w: iss %q", ErrUntrustedIssuer, iss)
	}
	return &verifiedToken{issuer: iss, claims: claims}, nil
}

// chooseKey is the keyfunc: it refuses crit, picks the authority by the
// (not yet verified) iss and its key by kid. Reading iss before the
// signature is checked only chooses whose keys check it; verifyToken checks
// it again afterwards.
func chooseKey(ctx context.Context, t *jwt.Token, auths map[string]Authority, chosen *Authority) (crypto.PublicKey, error) {
	if _, ok := t.Header["crit"]; ok {
		return nil, fmt.Errorf("%w: header has crit, which this verifier does not implement", ErrBadToken)
	}
	iss, _ := t.Claims.(jwt.MapClaims)["iss"].(string)
	n, err := normalizeIssuer(iss)
	if err != nil {
		return nil, fmt.Errorf("%w: iss %q", ErrUntrustedIssuer, iss)
	}
	a, ok := auths[n]
	if !ok {
		return nil, fmt.Errorf("%w: iss %q", ErrUntrustedIssuer, iss)
	}
	kid, _ := t.Header["kid"].(string)
	if kid == "" {
		return nil, fmt.Errorf("%w: header has no kid", ErrBadToken)
	}
	k, err := a.Keys.Key(ctx, kid)
	if err != nil {
		return nil, fmt.Errorf("%w: issuer %s: %w", ErrBadToken, a.Issuer, err)
	}
	*chosen = a
	return k, nil
}

func mustNormalize(s string) string {
	n, err := normalizeIssuer(s)
	if err != nil {
		return "\x00invalid" // matches no issuer
	}
	return n
}
