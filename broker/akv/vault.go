package akv

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/cloister-dev/cloister/kv"
)

// Config configures a Vault.
type Config struct {
	// Store keeps the keys, sealed (kv seals every record to the broker's
	// identity). Required.
	Store *kv.Store
	// VaultURL is the vault's URL as clients reach it (https://HOST[:PORT]):
	// key ids are VaultURL/keys/NAME/VERSION. Required.
	VaultURL string
	// Resource is the resource of the WWW-Authenticate challenge. Azure's
	// clients check that the vault's host name ends with "." + Resource's
	// host; empty means the VaultURL's parent domain when its host is a DNS
	// name of two labels or more (https://vault.example.com →
	// https://example.com), else VaultURL itself.
	Resource string
	// AccessToken is the bearer token every request must carry
	// (Authorization: Bearer TOKEN), compared in constant time and never
	// logged: a client gets it from its TokenCredential. Required.
	AccessToken string
	// AnyAccessToken accepts any bearer token (the challenge flow still
	// runs): for development only (broker serve --insecure-admin).
	AnyAccessToken bool
	// Authorities are the attestation token issuers the operator trusts.
	// None means every release is refused.
	Authorities []Authority
	// Signer signs release results (RS256): an RSA key. Required.
	Signer *rsa.PrivateKey
	// SignerChain is the signer's certificate chain, leaf first, sent as
	// x5c in every release result.
	SignerChain []*x509.Certificate
	// Now is the clock (token times, key times); nil means time.Now.
	Now func() time.Time
	// Rand is the source of keys, versions and wrapping keys; nil means
	// crypto/rand.
	Rand io.Reader
	// Logger receives one line per refusal and release; nil discards.
	Logger *slog.Logger
}

// Vault is the Azure Key Vault surface over the broker's sealed store:
// create, get and release keys. ServeHTTP (http.go) is its REST face.
type Vault struct {
	cfg      Config
	auths    map[string]Authority
	token    [32]byte // SHA-256 of AccessToken
	resource string
	x5c      []string
	x5tS256  string
}

// New checks cfg and returns the Vault.
func New(cfg Config) (*Vault, error) {
	if cfg.Store == nil {
		return nil, errors.New("akv: config: Store is required")
	}
	u, err := url.Parse(cfg.VaultURL)
	if err != nil || u.Scheme != "https" || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.User != nil {
		return nil, fmt.Errorf("akv: config: VaultURL %q: want https://HOST[:PORT]", cfg.VaultURL)
	}
	cfg.VaultURL = "https://" + u.Host
	if cfg.AccessToken == "" && !cfg.AnyAccessToken {
		return nil, errors.New("akv: config: AccessToken is required")
	}
	if cfg.Signer == nil {
		return nil, errors.New("akv: config: Signer is required")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Rand == nil {
		cfg.Rand = rand.Reader
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	v := &Vault{cfg: cfg, auths: map[string]Authority{}, token: sha256.Sum256([]byte(cfg.AccessToken))}
	for _, a := range cfg.Authorities {
		n, err := normalizeIssuer(a.Issuer)
		if err != nil {
			return nil, fmt.Errorf("akv: config: authority %q: %w", a.Issuer, err)
		}
		if a.Keys == nil {
			return nil, fmt.Errorf("akv: config: authority %q has no Keys", a.Issuer)
		}
		v.auths[n] = a
	}
	v.resource = cfg.Resource
	if v.resource == "" {
		v.resource = defaultResource(u)
	}
	for _, c := range cfg.SignerChain {
		v.x5c = append(v.x5c, base64.StdEncoding.EncodeToString(c.Raw))
	}
	if len(cfg.SignerChain) > 0 {
		sum := sha256.Sum256(cfg.SignerChain[0].Raw)
		v.x5tS256 = base64.RawURLEncoding.EncodeToString(sum[:])
	}
	return v, nil
}

func defaultResource(u *url.URL) string {
	host := u.Hostname()
	if net.ParseIP(host) == nil {
		if i := strings.IndexByte(host, '.'); i > 0 && i < len(host)-1 {
			return "https://" + host[i+1:]
		}
	}
	return "https://" + u.Host
}

// ReleasePolicy is a key's release policy as the REST API carries it.
type ReleasePolicy struct {
	// ContentType is "application/json; charset=utf-8" (the default).
	ContentType string `json:"contentType,omitempty"`
	// Immutable marks a policy that can never change (none can here: keys
	// have no update operation yet).
	Immutable bool `json:"immutable,omitempty"`
	// Data is the policy document, base64url in JSON.
	Data string `json:"data,omitempty"`
}

// KeyAttributes are a key's attributes as the REST API carries them.
type KeyAttributes struct {
	Enabled         *bool  `json:"enabled,omitempty"`
	NotBefore       *int64 `json:"nbf,omitempty"`
	Expires         *int64 `json:"exp,omitempty"`
	Created         int64  `json:"created,omitempty"`
	Updated         int64  `json:"updated,omitempty"`
	RecoveryLevel   string `json:"recoveryLevel,omitempty"`
	RecoverableDays *int   `json:"recoverableDays,omitempty"`
	Exportable      *bool  `json:"exportable,omitempty"`
}

// CreateKeyRequest is the body of POST /keys/NAME/create.
type CreateKeyRequest struct {
	Kty            string            `json:"kty"`
	KeySize        int               `json:"key_size,omitempty"`
	PublicExponent int               `json:"public_exponent,omitempty"`
	KeyOps         []string          `json:"key_ops,omitempty"`
	Attributes     *KeyAttributes    `json:"attributes,omitempty"`
	Tags           map[string]string `json:"tags,omitempty"`
	Crv            string            `json:"crv,omitempty"`
	ReleasePolicy  *ReleasePolicy    `json:"release_policy,omitempty"`
}

// KeyBundle is a key as create and get return it.
type KeyBundle struct {
	Key           JSONWebKey        `json:"key"`
	Attributes    KeyAttributes     `json:"attributes"`
	Tags          map[string]string `json:"tags,omitempty"`
	ReleasePolicy *ReleasePolicy    `json:"release_policy,omitempty"`
}

// ReleaseRequest is the body of POST /keys/NAME[/VERSION]/release.
type ReleaseRequest struct {
	// Target is the attestation token of the environment the key goes to.
	Target string `json:"target"`
	// Nonce, when set, must be the token's nonce (freshness).
	Nonce string `json:"nonce,omitempty"`
	// Enc is the wrapping algorithm; empty means CKM_RSA_AES_KEY_WRAP.
	Enc string `json:"enc,omitempty"`
}

// CreateKey makes a new version of key name as req asks and stores it
// sealed. An exportable key must carry a release policy, which must parse
// (ParsePolicy): a policy no release could ever satisfy the way it is
// written is refused now, not at release time.
func (v *Vault) CreateKey(ctx context.Context, name string, req CreateKeyRequest) (*KeyBundle, error) {
	if !keyNameRE.MatchString(name) {
		return nil, badParam("key name %q: want 1 to 127 letters, digits and dashes", name)
	}
	spec := keySpec{kty: req.Kty, size: req.KeySize, crv: req.Crv, pubExp: req.PublicExponent, keyOps: req.KeyOps}
	if err := spec.check(); err != nil {
		return nil, err
	}
	if len(req.Tags) > MaxTags {
		return nil, badParam("%d tags, limit %d", len(req.Tags), MaxTags)
	}
	for k, val := range req.Tags {
		if k == "" || len(k) > MaxTagSize || len(val) > MaxTagSize {
			return nil, badParam("tag %.40q: names are 1 to %d bytes, values at most %d", k, MaxTagSize, MaxTagSize)
		}
	}
	now := v.cfg.Now().Unix()
	rec := &keyRecord{Name: name, Kty: spec.kty, Crv: spec.crv, Size: spec.size, KeyOps: spec.keyOps,
		Enabled: true, Created: now, Updated: now, Tags: req.Tags}
	if a := req.Attributes; a != nil {
		if a.Enabled != nil {
			rec.Enabled = *a.Enabled
		}
		rec.NotBefore, rec.Expires = a.NotBefore, a.Expires
		rec.Exportable = a.Exportable != nil && *a.Exportable
		if a.NotBefore != nil && a.Expires != nil && *a.Expires <= *a.NotBefore {
			return nil, badParam("attributes: exp %d is not after nbf %d", *a.Expires, *a.NotBefore)
		}
	}
	if p := req.ReleasePolicy; p != nil {
		data, err := decodePolicyData(p.Data)
		if err != nil {
			return nil, err
		}
		if _, err := ParsePolicy(data); err != nil {
			return nil, fmt.Errorf("%w: release_policy: %w", errBadParameter, err)
		}
		ct := p.ContentType
		if ct == "" {
			ct = "application/json; charset=utf-8"
		}
		if !strings.HasPrefix(strings.ToLower(ct), "application/json") {
			return nil, badParam("release_policy.contentType %q: want application/json; charset=utf-8", ct)
		}
		rec.Policy = &policyRecord{ContentType: ct, Immutable: p.Immutable, Data: data}
	}
	if rec.Exportable && rec.Policy == nil {
		return nil, badParam("an exportable key needs a release_policy")
	}
	if err := spec.generate(v.cfg.Rand); err != nil {
		return nil, err
	}
	rec.Private = spec.private
	defer clear(rec.Private)
	ver := make([]byte, 16)
	if _, err := io.ReadFull(v.cfg.Rand, ver); err != nil {
		return nil, fmt.Errorf("akv: key version: %w", err)
	}
	rec.Version = hex.EncodeToString(ver)
	if err := putVersion(ctx, v.cfg.Store, rec); err != nil {
		return nil, fmt.Errorf("akv: storing key %s: %w", name, err)
	}
	v.cfg.Logger.LogAttrs(ctx, slog.LevelInfo, "akv key created", slog.String("kid", rec.id(v.cfg.VaultURL)),
		slog.String("kty", rec.Kty), slog.Bool("exportable", rec.Exportable))
	return v.bundle(rec)
}

// decodePolicyData reads release_policy.data: base64url, padded or not.
func decodePolicyData(s string) ([]byte, error) {
	if s == "" {
		return nil, badParam("release_policy.data is empty")
	}
	b, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(s, "="))
	if err != nil {
		return nil, badParam("release_policy.data: not base64url: %v", err)
	}
	return b, nil
}

// GetKey returns key name at version, or its newest version when version
// is "": public parts only.
func (v *Vault) GetKey(ctx context.Context, name, version string) (*KeyBundle, error) {
	if err := checkNameVersion(name, version); err != nil {
		return nil, err
	}
	rec, err := getVersion(ctx, v.cfg.Store, name, version)
	if err != nil {
		return nil, err
	}
	defer clear(rec.Private)
	return v.bundle(rec)
}

func checkNameVersion(name, version string) error {
	if !keyNameRE.MatchString(name) {
		return fmt.Errorf("%w: key name %q", ErrKeyNotFound, name)
	}
	if version != "" && !keyVersionRE.MatchString(version) {
		return fmt.Errorf("%w: %s version %q", ErrKeyNotFound, name, version)
	}
	return nil
}

func (v *Vault) bundle(rec *keyRecord) (*KeyBundle, error) {
	jwk, err := rec.publicJWK(v.cfg.VaultURL)
	if err != nil {
		return nil, err
	}
	enabled, exportable, days := rec.Enabled, rec.Exportable, 0
	b := &KeyBundle{Key: jwk, Tags: rec.Tags, Attributes: KeyAttributes{
		Enabled: &enabled, NotBefore: rec.NotBefore, Expires: rec.Expires, Created: rec.Created, Updated: rec.Updated,
		// No soft delete: a deleted key would be gone at once.
		RecoveryLevel: "Purgeable", RecoverableDays: &days, Exportable: &exportable,
	}}
	if rec.Policy != nil {
		b.ReleasePolicy = &ReleasePolicy{ContentType: rec.Policy.ContentType, Immutable: rec.Policy.Immutable,
			Data: base64.RawURLEncoding.EncodeToString(rec.Policy.Data)}
	}
	return b, nil
}

// ErrReleaseRefused marks every refusal of a release whose request was
// well formed: the key, the token or the policy said no (403).
var ErrReleaseRefused = errors.New("akv: key release refused")

// Release releases key name (newest version when version is "") to the
// environment req.Target attests, for a request made under apiVersion. In
// order, and nothing is released unless all hold: the key exists, is
// enabled, inside its nbf/exp and exportable, with a release policy; the
// token verifies (trusted issuer, its key, signature, exp/nbf); the
// policy holds for its claims; req.Nonce, if any, is the token's nonce;
// the token's x-ms-runtime keys hold an RSA encryption key. The result is
// a JWS (RS256, x5c = SignerChain) whose payload is Azure's
// {request, response: {key: {key: {..., key_hsm}}}}.
func (v *Vault) Release(ctx context.Context, name, version string, req ReleaseRequest, apiVersion string) (string, error) {
	if req.Target == "" {
		return "", badParam("target (the attestation token) is required")
	}
	if req.Enc == "" {
		req.Enc = EncCkmRsaAesKeyWrap
	}
	if _, err := oaepHash(req.Enc); err != nil {
		return "", fmt.Errorf("%w: %w", errBadParameter, err)
	}
	if len(req.Nonce) > 1024 {
		return "", badParam("nonce of %d bytes, limit 1024", len(req.Nonce))
	}
	if err := checkNameVersion(name, version); err != nil {
		return "", err
	}
	rec, err := getVersion(ctx, v.cfg.Store, name, version)
	if err != nil {
		return "", err
	}
	defer clear(rec.Private)
	now := v.cfg.Now()
	refuse := func(err error) (string, error) {
		err = fmt.Errorf("%w: %s: %w", ErrReleaseRefused, rec.id(v.cfg.VaultURL), err)
		v.cfg.Logger.LogAttrs(ctx, slog.LevelInfo, "akv release refused", slog.String("reason", err.Error()))
		return "", err
	}
	switch {
	case !rec.Exportable:
		return refuse(errors.New("the key is not exportable"))
	case rec.Policy == nil:
		return refuse(errors.New("the key has no release policy"))
	case !rec.Enabled:
		return refuse(errors.New("the key is disabled"))
	case rec.NotBefore != nil && now.Unix() < *rec.NotBefore:
		return refuse(errors.New("the key is not valid yet (nbf)"))
	case rec.Expires != nil && now.Unix() >= *rec.Expires:
		return refuse(errors.New("the key has expired (exp)"))
	}
	pol, err := ParsePolicy(rec.Policy.Data)
	if err != nil {
		return refuse(err) // was checked at create: a stored policy that no longer parses refuses
	}
	tok, err := verifyToken(ctx, req.Target, v.auths, now)
	if err != nil {
		return refuse(err)
	}
	if err := pol.Evaluate(tok.issuer, tok.claims); err != nil {
		return refuse(err)
	}
	if req.Nonce != "" {
		if err := checkNonce(tok.claims, req.Nonce); err != nil {
			return refuse(err)
		}
	}
	tkid, pub, err := transferKey(tok.claims)
	if err != nil {
		return refuse(err)
	}
	ct, err := wrap(v.cfg.Rand, pub, req.Enc, rec.Private)
	if err != nil {
		return "", err
	}
	jws, err := v.releaseResult(rec, req, apiVersion, tkid, ct)
	if err != nil {
		return "", err
	}
	v.cfg.Logger.LogAttrs(ctx, slog.LevelInfo, "akv key released", slog.String("kid", rec.id(v.cfg.VaultURL)),
		slog.String("issuer", tok.issuer), slog.String("enc", req.Enc), slog.String("transfer_kid", tkid))
	return jws, nil
}

// checkNonce requires the token to carry nonce: as its nonce claim (what
// Cloister's attestation service and MAA issue for a nonce the attester
// sent) or as x-ms-runtime.client-payload.nonce (Azure confidential VMs).
func checkNonce(claims map[string]any, nonce string) error {
	if n, ok := claims["nonce"].(string); ok && n == nonce {
		return nil
	}
	if n, ok := lookup(claims, []string{"x-ms-runtime", "client-payload", "nonce"}); ok && n == nonce {
		return nil
	}
	return errors.New("the request's nonce is not the token's nonce")
}

// transferKey picks the key the released key is wrapped to: the first
// key of the token's x-ms-runtime.keys (or x-ms-isolation-tee's, for
// Azure confidential VM tokens) that is an RSA key for encryption (use
// "enc", or "encrypt" in key_ops), as Azure's documentation says.
func transferKey(claims map[string]any) (string, *rsa.PublicKey, error) {
	var keys []any
	for _, path := range [][]string{{"x-ms-runtime", "keys"}, {"x-ms-isolation-tee", "x-ms-runtime", "keys"}} {
		if v, ok := lookup(claims, path); ok {
			ks, isArr := v.([]any)
			if !isArr {
				return "", nil, fmt.Errorf("token claim %s is not a JWK array", strings.Join(path, "."))
			}
			keys = ks
			break
		}
	}
	if keys == nil {
		return "", nil, errors.New("the token has no x-ms-runtime keys to wrap the key to")
	}
	for _, k := range keys {
		m, ok := k.(map[string]any)
		if !ok {
			continue
		}
		kty, _ := m["kty"].(string)
		use, _ := m["use"].(string)
		ops, _ := m["key_ops"].([]any)
		if kty != "RSA" || !(use == "enc" || slices.Contains(ops, any("encrypt"))) {
			continue
		}
		kid, _ := m["kid"].(string)
		n, _ := m["n"].(string)
		e, _ := m["e"].(string)
		pub, err := rsaPublic(n, e)
		if err != nil {
			return "", nil, fmt.Errorf("x-ms-runtime key %q: %w", kid, err)
		}
		if bits := pub.N.BitLen(); bits < MinTransferKeyBits || bits > MaxTransferKeyBits {
			return "", nil, fmt.Errorf("x-ms-runtime key %q: %d bits, want %d to %d", kid, bits, MinTransferKeyBits, MaxTransferKeyBits)
		}
		return kid, pub, nil
	}
	return "", nil, errors.New("the token's x-ms-runtime keys hold no RSA encryption key (use \"enc\" or key_ops \"encrypt\")")
}

// keyHSM is the blob under key_hsm, base64url of its JSON.
type keyHSM struct {
	SchemaVersion string       `json:"schema_version"`
	Header        keyHSMHeader `json:"header"`
	Ciphertext    string       `json:"ciphertext"`
	Generator     string       `json:"generator"`
}

type keyHSMHeader struct {
	Kid string `json:"kid"` // the transfer key's kid
	Alg string `json:"alg"` // "dir"
	Enc string `json:"enc"`
}

// releasePayload is the payload of the release JWS.
type releasePayload struct {
	Request  releaseEcho   `json:"request"`
	Response releaseAnswer `json:"response"`
}

type releaseEcho struct {
	APIVersion string `json:"api-version"`
	Enc        string `json:"enc"`
	Kid        string `json:"kid"`
	Nonce      string `json:"nonce,omitempty"`
}

type releaseAnswer struct {
	Key releasedBundle `json:"key"`
}

type releasedBundle struct {
	Key           JSONWebKey        `json:"key"`
	Attributes    KeyAttributes     `json:"attributes"`
	Tags          map[string]string `json:"tags,omitempty"`
	ReleasePolicy *ReleasePolicy    `json:"release_policy,omitempty"`
}

func (v *Vault) releaseResult(rec *keyRecord, req ReleaseRequest, apiVersion, transferKid string, ct []byte) (string, error) {
	b, err := v.bundle(rec)
	if err != nil {
		return "", err
	}
	blob, err := json.Marshal(keyHSM{SchemaVersion: "1.0", Header: keyHSMHeader{Kid: transferKid, Alg: "dir", Enc: req.Enc},
		Ciphertext: base64.RawURLEncoding.EncodeToString(ct), Generator: "cloister broker akv"})
	if err != nil {
		return "", err
	}
	b.Key.KeyHSM = base64.RawURLEncoding.EncodeToString(blob)
	payload, err := json.Marshal(releasePayload{
		Request:  releaseEcho{APIVersion: apiVersion, Enc: req.Enc, Kid: rec.id(v.cfg.VaultURL), Nonce: req.Nonce},
		Response: releaseAnswer{Key: releasedBundle{Key: b.Key, Attributes: b.Attributes, Tags: b.Tags, ReleasePolicy: b.ReleasePolicy}},
	})
	if err != nil {
		return "", err
	}
	hdr := map[string]any{"alg": "RS256", "typ": "JWT"}
	if len(v.x5c) > 0 {
		hdr["x5c"], hdr["x5t#S256"] = v.x5c, v.x5tS256
	}
	h, err := json.Marshal(hdr)
	if err != nil {
		return "", err
	}
	enc := base64.RawURLEncoding.EncodeToString
	input := enc(h) + "." + enc(payload)
	digest := sha256.Sum256([]byte(input))
	sig, err := v.cfg.Signer.Sign(v.cfg.Rand, digest[:], crypto.SHA256)
	if err != nil {
		return "", fmt.Errorf("akv: signing the release result: %w", err)
	}
	return input + "." + enc(sig), nil
}
