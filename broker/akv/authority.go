package akv

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"strings"
	"sync"
	"time"
)

// ErrUnknownKey means an authority's key set has no key of the token's kid.
var ErrUnknownKey = errors.New("akv: authority has no key of that kid")

// KeySet is a fixed set of token-signing keys by kid: a KeySource.
type KeySet map[string]crypto.PublicKey

// Key implements KeySource.
func (s KeySet) Key(_ context.Context, kid string) (crypto.PublicKey, error) {
	k, ok := s[kid]
	if !ok {
		return nil, fmt.Errorf("%w: kid %q", ErrUnknownKey, kid)
	}
	return k, nil
}

// jwk is the part of a JSON Web Key a token-signing key set needs.
type jwk struct {
	Kid string   `json:"kid"`
	Kty string   `json:"kty"`
	Use string   `json:"use"`
	X5c []string `json:"x5c"`
	N   string   `json:"n"`
	E   string   `json:"e"`
	Crv string   `json:"crv"`
	X   string   `json:"x"`
	Y   string   `json:"y"`
}

// ParseJWKS reads a JWK set of token-signing keys as MAA and Cloister's
// attestation service publish them at /certs: each key has a kid and its
// public key in x5c[0] (a certificate: MAA's form), in n/e (RSA) or in
// crv/x/y (EC); when both are given they must agree. Keys marked for
// another use than "sig" are skipped; a kid twice is refused. Pure.
func ParseJWKS(data []byte) (KeySet, error) {
	var doc struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("akv: jwks: %w", err)
	}
	set := KeySet{}
	for i, raw := range doc.Keys {
		var k jwk
		if err := json.Unmarshal(raw, &k); err != nil {
			return nil, fmt.Errorf("akv: jwks: key %d: %w", i, err)
		}
		if k.Use != "" && k.Use != "sig" {
			continue
		}
		if k.Kid == "" {
			return nil, fmt.Errorf("akv: jwks: key %d has no kid", i)
		}
		if _, dup := set[k.Kid]; dup {
			return nil, fmt.Errorf("akv: jwks: kid %q twice", k.Kid)
		}
		pub, err := k.publicKey()
		if err != nil {
			return nil, fmt.Errorf("akv: jwks: key %q: %w", k.Kid, err)
		}
		set[k.Kid] = pub
	}
	if len(set) == 0 {
		return nil, errors.New("akv: jwks: no signing key")
	}
	return set, nil
}

func (k jwk) publicKey() (crypto.PublicKey, error) {
	var fromCert, fromParams crypto.PublicKey
	if len(k.X5c) > 0 {
		der, err := base64.StdEncoding.DecodeString(k.X5c[0])
		if err != nil {
			return nil, fmt.Errorf("x5c[0]: %w", err)
		}
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, fmt.Errorf("x5c[0]: %w", err)
		}
		fromCert = c.PublicKey
	}
	switch {
	case k.N != "" || k.E != "":
		if k.Kty != "RSA" {
			return nil, fmt.Errorf("n/e with kty %q", k.Kty)
		}
		pub, err := rsaPublic(k.N, k.E)
		if err != nil {
			return nil, err
		}
		fromParams = pub
	case k.X != "" || k.Y != "":
		if k.Kty != "EC" {
			return nil, fmt.Errorf("x/y with kty %q", k.Kty)
		}
		pub, err := ecPublic(k.Crv, k.X, k.Y)
		if err != nil {
			return nil, err
		}
		fromParams = pub
	}
	switch {
	case fromCert != nil && fromParams != nil:
		type eq interface{ Equal(crypto.PublicKey) bool }
		if e, ok := fromCert.(eq); !ok || !e.Equal(fromParams) {
			return nil, errors.New("x5c[0] and the key parameters name different keys")
		}
		return fromCert, nil
	case fromCert != nil:
		switch fromCert.(type) {
		case *rsa.PublicKey, *ecdsa.PublicKey:
			return fromCert, nil
		}
		return nil, fmt.Errorf("x5c[0] has a %T key", fromCert)
	case fromParams != nil:
		return fromParams, nil
	}
	return nil, errors.New("no x5c and no key parameters")
}

func b64url(s string) ([]byte, error) {
	return base64.RawURLEncoding.DecodeString(strings.TrimRight(s, "="))
}

func rsaPublic(n, e string) (*rsa.PublicKey, error) {
	nb, err := b64url(n)
	if err != nil || len(nb) == 0 {
		return nil, fmt.Errorf("n: not base64url")
	}
	eb, err := b64url(e)
	if err != nil || len(eb) == 0 || len(eb) > 4 {
		return nil, fmt.Errorf("e: not a base64url exponent of 1 to 4 bytes")
	}
	ei := 0
	for _, b := range eb {
		ei = ei<<8 | int(b)
	}
	// crypto/rsa takes exponents up to 2^31-1 only: a larger one would pass
	// here and fail at encryption (a 500 after the policy held).
	if ei < 3 || ei%2 == 0 || ei > 1<<31-1 {
		return nil, fmt.Errorf("e: %d is not an RSA public exponent (odd, 3 to 2^31-1)", ei)
	}
	return &rsa.PublicKey{N: new(big.Int).SetBytes(nb), E: ei}, nil
}

func ecPublic(crv, x, y string) (*ecdsa.PublicKey, error) {
	var c elliptic.Curve
	switch crv {
	case "P-256":
		c = elliptic.P256()
	case "P-384":
		c = elliptic.P384()
	case "P-521":
		c = elliptic.P521()
	default:
		return nil, fmt.Errorf("crv %q not supported", crv)
	}
	xb, err1 := b64url(x)
	yb, err2 := b64url(y)
	size := (c.Params().BitSize + 7) / 8
	if err1 != nil || err2 != nil || len(xb) != size || len(yb) != size {
		return nil, fmt.Errorf("x, y: want base64url of %d bytes each", size)
	}
	// Through the uncompressed encoding, so the point is checked to be on
	// the curve.
	pt := append(append([]byte{4}, xb...), yb...)
	pub, err := ecdsa.ParseUncompressedPublicKey(c, pt)
	if err != nil {
		return nil, fmt.Errorf("x, y: %w", err)
	}
	return pub, nil
}

// RemoteKeys is the KeySource of an authority that publishes its key set
// over https (MAA and `cloister attest serve` at /certs). The set is
// fetched on first use and again when a token names a kid it lacks (key
// rotation), at most once per MinRefresh; a failed fetch fails the
// release (fail closed) and is retried on the next one. One fetch runs at
// a time and no lock is held during it: a caller waiting for it returns
// when its own ctx ends, so a hung authority never stalls a release past
// its deadline.
type RemoteKeys struct {
	// URL is the JWKS URL (https only).
	URL string
	// Client is the http client, with the TLS trust the operator
	// configured; nil means http.DefaultClient.
	Client *http.Client
	// Now is the clock of the refresh limit; nil means time.Now.
	Now func() time.Time
	// MinRefresh is the least time between two fetches; 0 means 30 s.
	MinRefresh time.Duration

	mu       sync.Mutex
	set      KeySet
	fetched  time.Time
	inflight chan struct{} // closed when the fetch in progress ends
}

// Key implements KeySource.
func (r *RemoteKeys) Key(ctx context.Context, kid string) (crypto.PublicKey, error) {
	for {
		r.mu.Lock()
		if k, ok := r.set[kid]; ok {
			r.mu.Unlock()
			return k, nil
		}
		if wait := r.inflight; wait != nil {
			r.mu.Unlock()
			select {
			case <-wait:
				continue // look again at what that fetch found
			case <-ctx.Done():
				return nil, fmt.Errorf("akv: waiting for the key set of %s: %w", r.URL, ctx.Err())
			}
		}
		now := r.now()
		if r.set != nil && now.Sub(r.fetched) < r.minRefresh() {
			r.mu.Unlock()
			return nil, fmt.Errorf("%w: kid %q (key set fetched %s ago)", ErrUnknownKey, kid, now.Sub(r.fetched).Round(time.Second))
		}
		done := make(chan struct{})
		r.inflight = done
		r.mu.Unlock()

		set, err := r.fetch(ctx)
		r.mu.Lock()
		r.inflight = nil
		if err == nil {
			r.set, r.fetched = set, now
		}
		r.mu.Unlock()
		close(done)
		if err != nil {
			return nil, err
		}
		return set.Key(ctx, kid)
	}
}

func (r *RemoteKeys) fetch(ctx context.Context) (KeySet, error) {
	body, err := fetch(ctx, r.client(), r.URL)
	if err != nil {
		return nil, err
	}
	set, err := ParseJWKS(body)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", r.URL, err)
	}
	return set, nil
}

func (r *RemoteKeys) now() time.Time {
	if r.Now == nil {
		return time.Now()
	}
	return r.Now()
}

func (r *RemoteKeys) minRefresh() time.Duration {
	if r.MinRefresh <= 0 {
		return 30 * time.Second
	}
	return r.MinRefresh
}

func (r *RemoteKeys) client() *http.Client {
	if r.Client == nil {
		return http.DefaultClient
	}
	return r.Client
}

// DiscoveredAuthority returns the Authority whose issuer is issuerURL (an
// https URL), with keys found the OpenID way on first use:
// issuerURL/.well-known/openid-configuration must name issuerURL as its
// issuer and an https jwks_uri, whose key set is then used as RemoteKeys
// do. Nothing is fetched here, so the broker starts while the authority
// is down; until discovery succeeds every release is refused.
func DiscoveredAuthority(issuerURL string, client *http.Client, now func() time.Time) (Authority, error) {
	n, err := normalizeIssuer(issuerURL)
	if err != nil {
		return Authority{}, fmt.Errorf("authority %q: %w", issuerURL, err)
	}
	if !strings.HasPrefix(n, "https://") {
		return Authority{}, fmt.Errorf("authority %q: want https", issuerURL)
	}
	return Authority{Issuer: n, Keys: &discoveredKeys{issuer: n, client: client, now: now}}, nil
}

// discoveredKeys runs OpenID discovery once (again after a failure, at
// most once per RemoteKeys' refresh interval) and then serves keys
// through RemoteKeys.
type discoveredKeys struct {
	issuer string
	client *http.Client
	now    func() time.Time

	mu       sync.Mutex
	keys     *RemoteKeys
	failed   time.Time
	inflight chan struct{} // closed when the discovery in progress ends
}

func (d *discoveredKeys) Key(ctx context.Context, kid string) (crypto.PublicKey, error) {
	for {
		d.mu.Lock()
		if keys := d.keys; keys != nil {
			d.mu.Unlock()
			return keys.Key(ctx, kid)
		}
		if wait := d.inflight; wait != nil {
			d.mu.Unlock()
			select {
			case <-wait:
				continue
			case <-ctx.Done():
				return nil, fmt.Errorf("akv: waiting for the discovery of %s: %w", d.issuer, ctx.Err())
			}
		}
		now := time.Now
		if d.now != nil {
			now = d.now
		}
		if !d.failed.IsZero() && now().Sub(d.failed) < 30*time.Second {
			d.mu.Unlock()
			return nil, fmt.Errorf("akv: authority %s: discovery failed %s ago", d.issuer, now().Sub(d.failed).Round(time.Second))
		}
		done := make(chan struct{})
		d.inflight = done
		d.mu.Unlock()

		jwksURI, err := discover(ctx, d.client, d.issuer)
		d.mu.Lock()
		d.inflight = nil
		if err != nil {
			if ctx.Err() == nil { // a caller giving up is no failure of the authority
				d.failed = now()
			}
		} else {
			d.keys = &RemoteKeys{URL: jwksURI, Client: d.client, Now: d.now}
		}
		d.mu.Unlock()
		close(done)
		if err != nil {
			return nil, err
		}
	}
}

// discover reads issuer's OpenID discovery document and returns its
// jwks_uri, after checking that it names issuer and is https.
func discover(ctx context.Context, client *http.Client, issuer string) (string, error) {
	if client == nil {
		client = http.DefaultClient
	}
	body, err := fetch(ctx, client, issuer+"/.well-known/openid-configuration")
	if err != nil {
		return "", err
	}
	var doc struct {
		Issuer  string `json:"issuer"`
		JWKSURI string `json:"jwks_uri"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		return "", fmt.Errorf("akv: authority %s: discovery document: %w", issuer, err)
	}
	if mustNormalize(doc.Issuer) != issuer {
		return "", fmt.Errorf("akv: authority %s: its discovery document names issuer %q", issuer, doc.Issuer)
	}
	if !strings.HasPrefix(doc.JWKSURI, "https://") {
		return "", fmt.Errorf("akv: authority %s: jwks_uri %q is not https", issuer, doc.JWKSURI)
	}
	return doc.JWKSURI, nil
}

func fetch(ctx context.Context, client *http.Client, url string) ([]byte, error) {
	if !strings.HasPrefix(url, "https://") {
		return nil, fmt.Errorf("akv: %s: only https is fetched", url)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, fmt.Errorf("akv: %s: %w", url, err)
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("akv: fetching %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("akv: fetching %s: status %s", url, resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxJWKS+1))
	if err != nil {
		return nil, fmt.Errorf("akv: fetching %s: %w", url, err)
	}
	if len(body) > MaxJWKS {
		return nil, fmt.Errorf("akv: fetching %s: more than %d bytes", url, MaxJWKS)
	}
	return body, nil
}
