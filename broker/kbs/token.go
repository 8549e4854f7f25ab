package kbs

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	jsonv2 "github.com/go-json-experiment/json"
	"github.com/golang-jwt/jwt/v5"

	"github.com/cloister-dev/cloister/attest/tokens"
	"github.com/cloister-dev/cloister/kv"
)

// tokenKeyName is the sealed store's entry for the token-signing key, so
// that tokens stay valid across a restart within their lifetime.
const tokenKeyName = "token-signing-key"

// signer issues and checks the broker's attestation tokens: ES256 JWTs
// signed by one P-256 key, kid its RFC 7638 thumbprint, published as a
// JWKS at /kbs/v0/token-jwks.
type signer struct {
	key  *ecdsa.PrivateKey
	kid  string
	keys *tokens.KeySet
	jwks []byte
}

// loadSigner reads the signing key from the sealed store, creating it on
// first use.
func loadSigner(ctx context.Context, st *kv.Store, rand io.Reader) (*signer, error) {
	der, err := st.Get(ctx, tokenKeyName)
	var key *ecdsa.PrivateKey
	switch {
	case err == nil:
		k, perr := x509.ParsePKCS8PrivateKey(der)
		if perr != nil {
			return nil, fmt.Errorf("kbs: token key: %w", perr)
		}
		var ok bool
		if key, ok = k.(*ecdsa.PrivateKey); !ok || key.Curve != elliptic.P256() {
			return nil, errors.New("kbs: token key: not a P-256 key")
		}
	case errors.Is(err, kv.ErrNotFound):
		if key, err = ecdsa.GenerateKey(elliptic.P256(), rand); err != nil {
			return nil, fmt.Errorf("kbs: token key: %w", err)
		}
		if der, err = x509.MarshalPKCS8PrivateKey(key); err != nil {
			return nil, fmt.Errorf("kbs: token key: %w", err)
		}
		if err := st.Put(ctx, tokenKeyName, der); err != nil {
			return nil, fmt.Errorf("kbs: token key: %w", err)
		}
	default:
		return nil, fmt.Errorf("kbs: token key: %w", err)
	}
	return newSigner(key)
}

func newSigner(key *ecdsa.PrivateKey) (*signer, error) {
	pt, err := key.PublicKey.Bytes() // 0x04 ‖ X ‖ Y
	if err != nil {
		return nil, fmt.Errorf("kbs: token key: %w", err)
	}
	x := base64.RawURLEncoding.EncodeToString(pt[1:33])
	y := base64.RawURLEncoding.EncodeToString(pt[33:])
	// RFC 7638: SHA-256 of the required members in lexicographic order.
	tp := sha256.Sum256(canonicalJSON(nil, map[string]string{"crv": "P-256", "kty": "EC", "x": x, "y": y}))
	kid := base64.RawURLEncoding.EncodeToString(tp[:])
	jwks, err := json.Marshal(map[string]any{"keys": []map[string]string{{
		"kty": "EC", "crv": "P-256", "x": x, "y": y, "kid": kid, "alg": "ES256", "use": "sig"}}})
	if err != nil {
		return nil, err
	}
	return &signer{key: key, kid: kid, jwks: jwks,
		keys: &tokens.KeySet{Keys: []tokens.Key{{ID: kid, Alg: "ES256", Public: &key.PublicKey}}}}, nil
}

// issue signs a token for g: iss, iat, exp, jti, and the grant as claims
// "tee" (the session's tee), "tee-pubkey" (the runtime key as sent) and
// "evidence" (the verified claims).
func (s *signer) issue(rand io.Reader, iss string, now time.Time, life time.Duration, tee string, teeKey TeePubKey, claims json.RawMessage) (string, error) {
	var jti [16]byte
	if _, err := io.ReadFull(rand, jti[:]); err != nil {
		return "", fmt.Errorf("kbs: token id: %w", err)
	}
	t := jwt.NewWithClaims(jwt.SigningMethodES256, jwt.MapClaims{
		"iss": iss, "iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(life).Unix(),
		"jti": hex.EncodeToString(jti[:]), "tee": tee, "tee-pubkey": teeKey, "evidence": claims,
	})
	t.Header["kid"] = s.kid
	// ecdsa.Sign draws from crypto/rand whatever reader it is given (Go
	// 1.20+), so rand here only feeds the token id.
	return t.SignedString(s.key)
}

// check validates a bearer token: signed by this broker's key (kid, ES256,
// no crit), iss this broker, unexpired (exp required; nbf, iat checked at
// now with no leeway); and returns the grant its claims carry.
func (s *signer) check(token, iss string, now time.Time) (*grant, error) {
	mc, err := tokens.Verify(token, s.keys, tokens.Options{Time: now, Issuer: iss})
	if err != nil {
		return nil, fmt.Errorf("kbs: bearer %w", err)
	}
	tee, _ := mc["tee"].(string)
	raw, err := json.Marshal(mc["tee-pubkey"])
	if err != nil || tee == "" || mc["evidence"] == nil {
		return nil, errors.New("kbs: bearer token: missing tee, tee-pubkey or evidence claims")
	}
	// The evidence claims are read again from the (now verified) payload
	// with exact numbers: the parser's float64s round SNP's uint64 TCB
	// versions, and policies must see what the session saw.
	claims, err := evidenceClaims(token)
	if err != nil {
		return nil, err
	}
	var k TeePubKey
	if err := jsonv2.Unmarshal(raw, &k, jsonv2.RejectUnknownMembers(true)); err != nil {
		return nil, fmt.Errorf("kbs: bearer token: tee-pubkey: %w", err)
	}
	pub, err := k.Parse()
	if err != nil {
		return nil, fmt.Errorf("kbs: bearer token: %w", err)
	}
	return newGrant(tee, claims, pub)
}

// evidenceClaims returns the "evidence" claim of a token whose signature
// was verified, numbers as json.Number.
func evidenceClaims(token string) (map[string]any, error) {
	parts := strings.Split(strings.TrimSpace(token), ".")
	if len(parts) != 3 {
		return nil, errors.New("kbs: bearer token: not a compact JWS")
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return nil, fmt.Errorf("kbs: bearer token: payload: %w", err)
	}
	var p struct {
		Evidence json.RawMessage `json:"evidence"`
	}
	if err := json.Unmarshal(payload, &p); err != nil {
		return nil, fmt.Errorf("kbs: bearer token: payload: %w", err)
	}
	claims, err := decodeClaims(p.Evidence)
	if err != nil {
		return nil, fmt.Errorf("kbs: bearer token: evidence: %w", err)
	}
	return claims, nil
}
