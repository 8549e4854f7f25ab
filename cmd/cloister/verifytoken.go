package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/cloister-dev/cloister/attest/tokens"
)

const verifyTokenHelp = `Validate an MAA-shaped attestation token (a JWT from Cloister's attestation
service or from Microsoft Azure Attestation) against a JSON Web Key Set, and
print its claims as JSON, numbers exactly as the token carries them (a
uint64 above 2^53 is not rounded).

TOKEN is the compact JWT itself, a file holding it, or - for standard input.
--jwks is a saved JWKS (a service's GET /certs; MAA's has x5c certificates) or
an http(s) URL to fetch it from; without --jwks the keys are fetched from
ISSUER/certs, which needs --issuer. The token's own jku is never followed: a
forger would point it at keys of their own.

Checked: the signature, with the key whose kid the token names (RS*, PS* or
ES*, matching that key; none and HMAC are refused); exp (required), nbf and iat
at --at (default: now); the signing certificate's validity, when the key has
one; and iss = --issuer when given. Not checked: who runs the service. For a
Cloister service, 'cloister attest verify-token' also attests the key's RA-TLS
evidence.

Exit status: 0 valid, 1 invalid (the reason on standard error), 2 usage.
`

// jwtShape is a compact JWS: three base64url segments.
var jwtShape = regexp.MustCompile(`^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$`)

// runVerifyToken implements "cloister verify token".
func runVerifyToken(e *env, args []string) error {
	fs := newFlagSet("verify token", "TOKEN [--jwks FILE|URL] [--issuer URL] [--at TIME]", verifyTokenHelp)
	jwksFlag := fs.String("jwks", "", "the JWK set: a `FILE` or an http(s) URL (default: ISSUER/certs)")
	issuer := fs.String("issuer", "", "the expected iss claim, exactly (e.g. https://sharedeus.eus.attest.azure.net)")
	at := fs.String("at", "", "validation `TIME`, RFC 3339 or Unix seconds (default: now)")
	arg, err := parseOneArg(e, fs, args, "TOKEN")
	if err != nil {
		return err
	}
	when := e.now()
	if *at != "" {
		if when, err = parseTime(*at); err != nil {
			return usagef("--at: %v", err)
		}
	}
	if *issuer != "" {
		if u, err := url.Parse(*issuer); err != nil || u.Scheme == "" || u.Host == "" {
			return usagef("--issuer %q: want the issuer URL, e.g. https://HOST", *issuer)
		}
	}
	source := *jwksFlag
	if source == "" {
		if *issuer == "" {
			return usagef("give --jwks FILE|URL, or --issuer to fetch ISSUER/certs")
		}
		source = strings.TrimRight(*issuer, "/") + "/certs"
	}
	token, err := readToken(e, arg)
	if err != nil {
		return err
	}
	data, err := readJWKS(e.ctx, source)
	if err != nil {
		return err
	}
	ks, err := tokens.ParseJWKS(data)
	if err != nil {
		return fmt.Errorf("JWKS %s: %w", source, err)
	}
	if _, err := tokens.Verify(token, ks, tokens.Options{Time: when, Issuer: *issuer}); err != nil {
		return err
	}
	claims, err := exactClaims(token)
	if err != nil {
		return err
	}
	return printJSON(e.stdout, claims)
}

// exactClaims reads the payload of a token whose signature was verified,
// numbers as written (json.Number): the JWT parser's float64s would print
// a uint64 in x-ms-runtime, or an SNP TCB a policy issued, as another
// number than the token carries.
func exactClaims(token string) (map[string]any, error) {
	parts := strings.Split(strings.TrimSpace(token), ".")
	if len(parts) != 3 {
		return nil, errors.New("token: not a compact JWS")
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return nil, fmt.Errorf("token payload: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.UseNumber()
	var claims map[string]any
	if err := dec.Decode(&claims); err != nil {
		return nil, fmt.Errorf("token payload: %w", err)
	}
	return claims, nil
}

// readToken takes TOKEN as "-" for standard input, an existing file (even
// one named like "id.v1.jwt"), or else the JWT itself.
func readToken(e *env, arg string) (string, error) {
	if arg != "-" {
		if st, err := os.Stat(arg); err != nil || st.IsDir() {
			if jwtShape.MatchString(arg) {
				return arg, nil
			}
			return "", usagef("TOKEN %q is neither a JWT (header.payload.signature) nor a readable file", arg)
		}
	}
	var data []byte
	name, err := arg, error(nil)
	if arg == "-" {
		data, name, err = readInput(e, arg)
	} else {
		data, err = readFileMax(arg, tokens.MaxTokenSize)
	}
	if err != nil {
		return "", fmt.Errorf("reading the token: %w", err)
	}
	if len(data) > tokens.MaxTokenSize {
		return "", fmt.Errorf("%s: more than %d bytes: not a token", name, tokens.MaxTokenSize)
	}
	return strings.TrimSpace(string(data)), nil
}

// readJWKS reads the key set from a file or fetches it from an http(s)
// URL, bounded in size and time.
func readJWKS(ctx context.Context, source string) ([]byte, error) {
	if !strings.HasPrefix(source, "http://") && !strings.HasPrefix(source, "https://") {
		data, err := readFileMax(source, tokens.MaxJWKSSize)
		if err != nil {
			return nil, fmt.Errorf("reading the JWKS: %w", err)
		}
		return data, nil
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, source, nil)
	if err != nil {
		return nil, usagef("JWKS URL %q: %v", source, err)
	}
	req.Header.Set("Accept", "application/json")
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error {
		return errors.New("refusing to follow a redirect for the JWKS")
	}}
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetching the JWKS: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("fetching the JWKS from %s: %s", source, resp.Status)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, tokens.MaxJWKSSize+1))
	if err != nil {
		return nil, fmt.Errorf("fetching the JWKS from %s: %w", source, err)
	}
	return data, nil
}

// readFileMax reads a file of at most limit bytes. It stops after limit+1
// bytes: a pipe, a device such as /dev/zero or a file that grows must not
// be read into memory to its (possibly never reached) end.
func readFileMax(name string, limit int64) ([]byte, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("%s: more than %d bytes", name, limit)
	}
	return data, nil
}
