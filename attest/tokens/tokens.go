// Package tokens validates MAA-shaped attestation tokens (JWS-signed JWTs:
// Cloister's own and Microsoft Azure Attestation's) offline, against a saved
// JSON Web Key Set such as an attestation service's /certs. It checks the
// signature with the key the token's kid names, the algorithm against that
// key, the times at a given instant and, when asked, the issuer. It does not
// attest the service that signed the token: for a Cloister service,
// `cloister attest verify-token` also verifies the key's RA-TLS evidence.
package tokens

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"slices"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Limits on what ParseJWKS and Verify accept.
const (
	MaxJWKSSize  = 1 << 20 // an MAA /certs with several x5c chains is tens of kilobytes
	MaxKeys      = 64
	MaxTokenSize = 256 << 10
)

// Algorithms are the JWS algorithms accepted: RSA (MAA signs with RS256)
// and ECDSA (Cloister's ES256). "none" and the HMAC algorithms are never
// accepted: a public key must not double as an HMAC secret.
var Algorithms = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512"}

// Errors callers branch on. Failures of the token itself also match the
// sentinels of github.com/golang-jwt/jwt/v5 (jwt.ErrTokenExpired,
// jwt.ErrTokenSignatureInvalid, jwt.ErrTokenInvalidIssuer, ...).
var (
	// ErrUnknownKey: the token's kid names no key of the set.
	ErrUnknownKey = errors.New("tokens: no key in the JWKS has the token's kid")
	// ErrKeyMismatch: the named key cannot verify this algorithm (wrong
	// type or curve, or the JWK restricts itself to another alg or use).
	ErrKeyMismatch = errors.New("tokens: the key does not fit the token's algorithm")
	// ErrCritical: the token's header has a crit member. It lists
	// extensions the recipient must understand (RFC 7515 §4.1.11), and this
	// package understands none, so any crit (even a malformed one) fails.
	ErrCritical = errors.New("tokens: the token header lists critical extensions (crit), which are not supported")
	// ErrMalformedJWKS: the key set is not a well-formed JWKS.
	ErrMalformedJWKS = errors.New("tokens: malformed JWKS")
)

// Key is one signature-verification key of a set.
type Key struct {
	// ID is the JWK kid.
	ID string
	// Alg is the JWK alg, "" when the JWK names none.
	Alg string
	// Public is the RSA or ECDSA public key.
	Public crypto.PublicKey
	// Certificate is x5c[0] when the JWK has one; Public is its key.
	Certificate *x509.Certificate
}

// KeySet is a parsed JWKS.
type KeySet struct {
	Keys []Key
}

type jwk struct {
	Kty string   `json:"kty"`
	Kid *string  `json:"kid"`
	Use string   `json:"use"`
	Alg string   `json:"alg"`
	X5C []string `json:"x5c"`
	N   string   `json:"n"`
	E   string   `json:"e"`
	Crv string   `json:"crv"`
	X   string   `json:"x"`
	Y   string   `json:"y"`
}

// ParseJWKS reads a JWK set ({"keys": [...]}) of signature keys. Each key
// needs a kid, unique in the set, and its public key either as x5c (the
// first certificate's key; MAA's /certs has only x5c) or as RSA n/e or EC
// crv/x/y members; when both are present they must be the same key. Keys
// whose "use" is not "sig" are refused rather than skipped, since a set
// meant for validating tokens has no business holding them.
func ParseJWKS(data []byte) (*KeySet, error) {
	if len(data) > MaxJWKSSize {
		return nil, fmt.Errorf("%w: %d bytes, more than %d", ErrMalformedJWKS, len(data), MaxJWKSSize)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	var set struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := dec.Decode(&set); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformedJWKS, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("%w: data after the JSON object", ErrMalformedJWKS)
	}
	if len(set.Keys) == 0 {
		return nil, fmt.Errorf("%w: no keys", ErrMalformedJWKS)
	}
	if len(set.Keys) > MaxKeys {
		return nil, fmt.Errorf("%w: %d keys, more than %d", ErrMalformedJWKS, len(set.Keys), MaxKeys)
	}
	ks := &KeySet{}
	for i, raw := range set.Keys {
		k, err := parseKey(raw)
		if err != nil {
			return nil, fmt.Errorf("%w: keys[%d]: %w", ErrMalformedJWKS, i, err)
		}
		if slices.ContainsFunc(ks.Keys, func(o Key) bool { return o.ID == k.ID }) {
			return nil, fmt.Errorf("%w: keys[%d]: kid %q appears twice", ErrMalformedJWKS, i, k.ID)
		}
		ks.Keys = append(ks.Keys, k)
	}
	return ks, nil
}

func parseKey(raw json.RawMessage) (Key, error) {
	var j jwk
	if err := json.Unmarshal(raw, &j); err != nil {
		return Key{}, err
	}
	if j.Kid == nil || *j.Kid == "" {
		return Key{}, errors.New("no kid")
	}
	if j.Use != "" && j.Use != "sig" {
		return Key{}, fmt.Errorf("use %q, not a signature key", j.Use)
	}
	k := Key{ID: *j.Kid, Alg: j.Alg}
	var fromMembers crypto.PublicKey
	switch j.Kty {
	case "RSA":
		if j.N != "" || j.E != "" {
			n, err1 := decodeInt(j.N)
			e, err2 := decodeInt(j.E)
			if err := errors.Join(err1, err2); err != nil {
				return Key{}, fmt.Errorf("RSA n/e: %w", err)
			}
			if !e.IsInt64() || e.Int64() < 3 || e.Int64() > 1<<31-1 {
				return Key{}, errors.New("RSA key: bad exponent")
			}
			fromMembers = &rsa.PublicKey{N: n, E: int(e.Int64())}
		}
	case "EC":
		if j.X != "" || j.Y != "" || j.Crv != "" {
			curve, size := curveOf(j.Crv)
			if curve == nil {
				return Key{}, fmt.Errorf("EC crv %q: want P-256, P-384 or P-521", j.Crv)
			}
			x, err1 := decodeFixed(j.X, size)
			y, err2 := decodeFixed(j.Y, size)
			if err := errors.Join(err1, err2); err != nil {
				return Key{}, fmt.Errorf("EC x/y: %w", err)
			}
			pub, err := ecdsa.ParseUncompressedPublicKey(curve, append(append([]byte{4}, x...), y...))
			if err != nil {
				return Key{}, fmt.Errorf("EC key: %w", err)
			}
			fromMembers = pub
		}
	default:
		return Key{}, fmt.Errorf("kty %q: want RSA or EC", j.Kty)
	}
	if len(j.X5C) > 0 {
		der, err := base64.StdEncoding.DecodeString(j.X5C[0])
		if err != nil {
			return Key{}, fmt.Errorf("x5c[0]: %w", err)
		}
		cert, err := x509.ParseCertificate(der)
		if err != nil {
			return Key{}, fmt.Errorf("x5c[0]: %w", err)
		}
		k.Certificate, k.Public = cert, cert.PublicKey
		if fromMembers != nil && !samePublic(fromMembers, cert.PublicKey) {
			return Key{}, errors.New("the key members and x5c[0] name different keys")
		}
	} else {
		k.Public = fromMembers
	}
	switch p := k.Public.(type) {
	case *rsa.PublicKey:
		if j.Kty != "RSA" {
			return Key{}, fmt.Errorf("kty %q but an RSA key", j.Kty)
		}
		// Checked here, whichever form (n/e or x5c) the key came in.
		if b := p.N.BitLen(); b < 2048 || b > 16384 {
			return Key{}, fmt.Errorf("RSA key of %d bits: want 2048 to 16384", b)
		}
	case *ecdsa.PublicKey:
		if j.Kty != "EC" {
			return Key{}, fmt.Errorf("kty %q but an EC key", j.Kty)
		}
		_ = p
	case nil:
		return Key{}, errors.New("no public key (neither x5c nor key members)")
	default:
		return Key{}, fmt.Errorf("unsupported public key %T", k.Public)
	}
	return k, nil
}

func samePublic(a, b crypto.PublicKey) bool {
	type equaler interface{ Equal(crypto.PublicKey) bool }
	e, ok := a.(equaler)
	return ok && e.Equal(b)
}

func curveOf(crv string) (elliptic.Curve, int) {
	switch crv {
	case "P-256":
		return elliptic.P256(), 32
	case "P-384":
		return elliptic.P384(), 48
	case "P-521":
		return elliptic.P521(), 66
	}
	return nil, 0
}

func decodeInt(s string) (*big.Int, error) {
	b, err := base64.RawURLEncoding.Strict().DecodeString(s)
	if err != nil || len(b) == 0 {
		return nil, fmt.Errorf("bad base64url integer %q", s)
	}
	return new(big.Int).SetBytes(b), nil
}

func decodeFixed(s string, size int) ([]byte, error) {
	b, err := base64.RawURLEncoding.Strict().DecodeString(s)
	if err != nil || len(b) != size {
		return nil, fmt.Errorf("want %d bytes of base64url, got %q", size, s)
	}
	return b, nil
}

// Options are what Verify checks beyond the signature.
type Options struct {
	// Time is the instant exp, nbf and iat are checked at, and the signing
	// certificate's validity when the key came with one. Required.
	Time time.Time
	// Issuer, when not empty, must equal the iss claim exactly.
	Issuer string
}

// Verify validates token against ks and returns its claims. The key is the
// one whose kid the token's header names (a token without kid is refused:
// trying every key would let a set's weakest key speak for all); the
// algorithm must be one of Algorithms and fit that key (type, curve, and
// the JWK's alg when it has one); a header with crit is refused
// (ErrCritical); base64url must be canonical; exp is
// required, and exp, nbf and iat are checked at opts.Time with no leeway.
func Verify(token string, ks *KeySet, opts Options) (jwt.MapClaims, error) {
	if opts.Time.IsZero() {
		return nil, errors.New("tokens: Options.Time is required")
	}
	if len(token) > MaxTokenSize {
		return nil, fmt.Errorf("tokens: token of %d bytes, more than %d", len(token), MaxTokenSize)
	}
	parserOpts := []jwt.ParserOption{
		jwt.WithValidMethods(Algorithms), jwt.WithTimeFunc(func() time.Time { return opts.Time }),
		jwt.WithExpirationRequired(), jwt.WithIssuedAt(), jwt.WithStrictDecoding(),
	}
	if opts.Issuer != "" {
		parserOpts = append(parserOpts, jwt.WithIssuer(opts.Issuer))
	}
	claims := jwt.MapClaims{}
	_, err := jwt.NewParser(parserOpts...).ParseWithClaims(strings.TrimSpace(token), claims, func(t *jwt.Token) (any, error) {
		// golang-jwt ignores crit; a JWS recipient must not.
		if _, ok := t.Header["crit"]; ok {
			return nil, ErrCritical
		}
		kid, ok := t.Header["kid"].(string)
		if !ok || kid == "" {
			return nil, fmt.Errorf("%w: the token header has no kid", ErrUnknownKey)
		}
		i := slices.IndexFunc(ks.Keys, func(k Key) bool { return k.ID == kid })
		if i < 0 {
			return nil, fmt.Errorf("%w: kid %q", ErrUnknownKey, kid)
		}
		k := ks.Keys[i]
		alg := t.Method.Alg()
		if err := fits(k, alg); err != nil {
			return nil, err
		}
		if c := k.Certificate; c != nil && (opts.Time.Before(c.NotBefore) || opts.Time.After(c.NotAfter)) {
			return nil, fmt.Errorf("tokens: signing certificate of kid %q is valid %s to %s, not at %s", kid,
				c.NotBefore.UTC().Format(time.RFC3339), c.NotAfter.UTC().Format(time.RFC3339), opts.Time.UTC().Format(time.RFC3339))
		}
		return k.Public, nil
	})
	if err != nil {
		return nil, fmt.Errorf("token: %w", err)
	}
	return claims, nil
}

// fits checks that alg can be verified with k.
func fits(k Key, alg string) error {
	if k.Alg != "" && k.Alg != alg {
		return fmt.Errorf("%w: the token says %s, key %q is for %s", ErrKeyMismatch, alg, k.ID, k.Alg)
	}
	switch p := k.Public.(type) {
	case *rsa.PublicKey:
		if alg[:2] != "RS" && alg[:2] != "PS" {
			return fmt.Errorf("%w: %s with RSA key %q", ErrKeyMismatch, alg, k.ID)
		}
	case *ecdsa.PublicKey:
		want := map[string]string{"ES256": "P-256", "ES384": "P-384", "ES512": "P-521"}[alg]
		if want == "" || p.Curve.Params().Name != want {
			return fmt.Errorf("%w: %s with EC key %q on %s", ErrKeyMismatch, alg, k.ID, p.Curve.Params().Name)
		}
	default:
		return fmt.Errorf("%w: key %q", ErrKeyMismatch, k.ID)
	}
	return nil
}
