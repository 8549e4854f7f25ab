package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/cloister-dev/cloister/attest/tokens"
	"github.com/cloister-dev/cloister/ratls"
)

// attest verify-token refuses a token whose header lists critical
// extensions before it looks for the key (RFC 7515 4.1.11), as
// `verify token` does: the JWT library ignores crit.
func TestVerifyTokenRefusesCrit(t *testing.T) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	tok := jwt.NewWithClaims(jwt.SigningMethodES256, jwt.MapClaims{"exp": now.Add(time.Hour).Unix()})
	tok.Header["kid"] = "k"
	tok.Header["crit"] = []string{"exp"}
	s, err := tok.SignedString(k)
	if err != nil {
		t.Fatal(err)
	}
	_, err = verifyToken(context.Background(), s, nil, ratls.VerifyOptions{}, now)
	if !errors.Is(err, tokens.ErrCritical) {
		t.Fatalf("token with crit: %v, want tokens.ErrCritical", err)
	}
}
