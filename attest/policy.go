package attest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"

	"github.com/golang-jwt/jwt/v5"

	"github.com/cloister-dev/cloister/policy/maa"
	"github.com/cloister-dev/cloister/policy/rego"
)

// Attestation types of the /attest and /policies paths (MAA's names;
// TdxVm is Cloister's addition to the policy endpoints, see the contract).
const (
	TypeSgxEnclave  = "SgxEnclave"
	TypeOpenEnclave = "OpenEnclave"
	TypeTdxVm       = "TdxVm"
	TypeSevSnpVm    = "SevSnpVm"
)

var types = []string{TypeSgxEnclave, TypeOpenEnclave, TypeTdxVm, TypeSevSnpVm}

func knownType(t string) bool { return slices.Contains(types, t) }

// defaultSGXPolicy is MAA's default SGX policy (policy-examples, version
// 1.1 without the Azure-only configuration rule): it permits every verified
// quote and issues the identity under the short names older MAA clients read.
const defaultSGXPolicy = `version= 1.0;
authorizationrules{
	=> permit();
};
issuancerules{
	c:[type=="x-ms-sgx-is-debuggable"] => issue(type="is-debuggable", value=c.value);
	c:[type=="x-ms-sgx-mrsigner"] => issue(type="sgx-mrsigner", value=c.value);
	c:[type=="x-ms-sgx-mrenclave"] => issue(type="sgx-mrenclave", value=c.value);
	c:[type=="x-ms-sgx-product-id"] => issue(type="product-id", value=c.value);
	c:[type=="x-ms-sgx-svn"] => issue(type="svn", value=c.value);
	c:[type=="x-ms-attestation-type"] => issue(type="tee", value=c.value);
};
`

// defaultVMPolicy permits every verified TDX or SNP report: MAA's default
// for those types is "permit all" too.
const defaultVMPolicy = `version= 1.0;
authorizationrules{
	=> permit();
};
`

func defaultPolicyText(typ string) string {
	if typ == TypeSgxEnclave || typ == TypeOpenEnclave {
		return defaultSGXPolicy
	}
	return defaultVMPolicy
}

// compiled is one usable policy: its text, the JWS it came in (what GET
// returns), and the parsed form of whichever language it is written in.
type compiled struct {
	text   string
	jws    string
	hash   string // x-ms-policy-hash
	signer map[string]any
	maa    *maa.Policy
	rego   *rego.Policy
	// unavailable, when set, says why the shared state's policy for the
	// type cannot be used: attestations of the type are refused (503)
	// rather than judged by another policy.
	unavailable string
}

// verdict is a policy decision with the claims it adds to the token.
type verdict struct {
	permitted bool
	reason    string
	issued    map[string]any
}

func (c *compiled) evaluate(ctx context.Context, incoming []maa.Claim) (verdict, error) {
	if c.rego != nil {
		res, err := c.rego.Evaluate(ctx, maa.ClaimsObject(incoming))
		if err != nil {
			return verdict{}, fmt.Errorf("policy evaluation: %w", err)
		}
		v := verdict{permitted: res.Allow, issued: res.Claims}
		if !res.Allow {
			v.reason = "denied: data.cloister.allow is not true"
		}
		return v, nil
	}
	res, err := c.maa.Evaluate(incoming)
	if err != nil {
		return verdict{}, fmt.Errorf("policy evaluation: %w", err)
	}
	v := verdict{permitted: res.Permitted, reason: res.Reason, issued: map[string]any{}}
	for _, cl := range res.Issued {
		v.issued[cl.Type] = cl.Value
	}
	return v, nil
}

var (
	leadingComments = regexp.MustCompile(`^(\s+|//[^\n]*\n?|#[^\n]*\n?|/\*(?s:.*?)\*/)*`)
	maaStart        = regexp.MustCompile(`(?i)^version\s*=`)
	regoStart       = regexp.MustCompile(`^package\s+cloister\b`)
)

// compilePolicy parses text as MAA grammar or Rego (the same detection as
// `cloister policy test`), so an uploaded policy is rejected at upload with
// its line:column error rather than failing every later attestation.
func compilePolicy(ctx context.Context, text string) (*compiled, error) {
	rest := text[len(leadingComments.FindString(text)):]
	c := &compiled{text: text, hash: policyHash(text)}
	switch {
	case maaStart.MatchString(rest):
		p, err := maa.Parse(text)
		if err != nil {
			return nil, fmt.Errorf("invalid policy: %w", err)
		}
		c.maa = p
	case regoStart.MatchString(rest):
		p, err := rego.Compile(ctx, text)
		if err != nil {
			return nil, fmt.Errorf("invalid policy: %w", err)
		}
		c.rego = p
	default:
		return nil, errors.New(`invalid policy: want an MAA policy starting with "version=1.0;" or a Rego module starting with "package cloister"`)
	}
	return c, nil
}

// policyHash is MAA's x-ms-policy-hash:
// BASE64URL(SHA256(UTF8(BASE64URL(UTF8(policy text))))).
func policyHash(text string) string {
	inner := base64.RawURLEncoding.EncodeToString([]byte(text))
	sum := sha256.Sum256([]byte(inner))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// decodeB64 accepts both base64 alphabets, padded or not (contract §1).
// base64url, the spec's alphabet, is tried first; a standard-alphabet input
// fails it at its first '+' or '/' and is decoded again, which is cheaper on
// the common path than scanning every input for those characters first.
func decodeB64(s string) ([]byte, error) {
	s = strings.TrimRight(s, "=")
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil && strings.ContainsAny(s, "+/") {
		return base64.RawStdEncoding.DecodeString(s)
	}
	return b, err
}

// parsePolicyJWS reads MAA's JWT-wrapped policy document
// {"AttestationPolicy": base64url(text)}: unsigned (alg none, empty
// signature) or signed (RS256/ES256 with the signer in x5c, checked here).
func parsePolicyJWS(jws string) (text string, signer map[string]any, err error) {
	pb, signer, err := readJWS(jws, "policy document")
	if err != nil {
		return "", nil, err
	}
	var body struct {
		AttestationPolicy *string `json:"AttestationPolicy"`
	}
	if err := json.Unmarshal(pb, &body); err != nil {
		return "", nil, fmt.Errorf("policy document payload: bad JSON: %w", err)
	}
	if body.AttestationPolicy == nil {
		return "", nil, errors.New("policy document payload: missing AttestationPolicy")
	}
	tb, err := decodeB64(*body.AttestationPolicy)
	if err != nil {
		return "", nil, fmt.Errorf("policy document: AttestationPolicy: bad base64url: %w", err)
	}
	if len(tb) > maa.MaxPolicySize {
		return "", nil, fmt.Errorf("policy of %d bytes, more than %d", len(tb), maa.MaxPolicySize)
	}
	return string(tb), signer, nil
}

// readJWS splits a compact JWS, checks its signature when it has one (the
// signer's certificate in x5c[0]; alg none needs an empty signature), and
// returns the payload and the signer (nil when unsigned). Policy documents
// and signed reset requests both go through it.
func readJWS(jws, what string) (payload []byte, signer map[string]any, err error) {
	jws = strings.TrimSpace(jws)
	parts := strings.Split(jws, ".")
	if len(parts) != 3 {
		return nil, nil, fmt.Errorf("%s: want a JWS (header.payload.signature), got %d dot-separated parts", what, len(parts))
	}
	hb, err := decodeB64(parts[0])
	if err != nil {
		return nil, nil, fmt.Errorf("%s header: bad base64url: %w", what, err)
	}
	var hdr struct {
		Alg string   `json:"alg"`
		X5C []string `json:"x5c"`
	}
	if err := json.Unmarshal(hb, &hdr); err != nil {
		return nil, nil, fmt.Errorf("%s header: bad JSON: %w", what, err)
	}
	pb, err := decodeB64(parts[1])
	if err != nil {
		return nil, nil, fmt.Errorf("%s payload: bad base64url: %w", what, err)
	}
	switch {
	case strings.EqualFold(hdr.Alg, "none"):
		if parts[2] != "" {
			return nil, nil, fmt.Errorf(`%s: alg "none" with a non-empty signature`, what)
		}
	case hdr.Alg == "RS256" || hdr.Alg == "ES256" || hdr.Alg == "RS384" || hdr.Alg == "ES384":
		if len(hdr.X5C) == 0 {
			return nil, nil, fmt.Errorf("signed %s: alg %s without an x5c signer certificate", what, hdr.Alg)
		}
		der, err := base64.StdEncoding.DecodeString(hdr.X5C[0])
		if err != nil {
			return nil, nil, fmt.Errorf("signed %s: x5c[0]: %w", what, err)
		}
		cert, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, nil, fmt.Errorf("signed %s: x5c[0]: %w", what, err)
		}
		m := jwt.GetSigningMethod(hdr.Alg)
		if err := m.Verify(parts[0]+"."+parts[1], mustB64(parts[2]), cert.PublicKey); err != nil {
			return nil, nil, fmt.Errorf("signed %s: signature does not verify with x5c[0]: %w", what, err)
		}
		signer = map[string]any{"x5c": hdr.X5C[:1]}
	default:
		return nil, nil, fmt.Errorf("%s: unsupported alg %q (want none, RS256 or ES256)", what, hdr.Alg)
	}
	return pb, signer, nil
}

// signerAllowed reports whether signer (from readJWS) is one of the
// configured policy signers, compared by certificate bytes.
func signerAllowed(signer map[string]any, allowed []*x509.Certificate) bool {
	if signer == nil {
		return false
	}
	x5c, _ := signer["x5c"].([]string)
	if len(x5c) == 0 {
		return false
	}
	der, err := base64.StdEncoding.DecodeString(x5c[0])
	if err != nil {
		return false
	}
	for _, c := range allowed {
		if bytes.Equal(c.Raw, der) {
			return true
		}
	}
	return false
}

func mustB64(s string) []byte {
	b, err := decodeB64(s)
	if err != nil {
		return nil // an undecodable signature then fails Verify
	}
	return b
}

// UnsignedPolicy wraps policy text in MAA's unsigned policy document
// (header {"alg":"none"}, payload {"AttestationPolicy": base64url(text)}),
// the body PUT /policies/{type} expects.
func UnsignedPolicy(text string) string {
	p, _ := json.Marshal(map[string]string{"AttestationPolicy": base64.RawURLEncoding.EncodeToString([]byte(text))})
	return "eyJhbGciOiJub25lIn0." + base64.RawURLEncoding.EncodeToString(p) + "."
}

// policyStore holds the current policy per type. Writers serialise on mu
// and persist before publishing, so a reader never sees a policy that would
// not survive a restart.
type policyStore struct {
	dir string
	mu  sync.RWMutex
	cur map[string]*compiled
}

func newPolicyStore(ctx context.Context, dir string) (*policyStore, error) {
	s := &policyStore{dir: dir, cur: map[string]*compiled{}}
	for _, t := range types {
		c, err := compilePolicy(ctx, defaultPolicyText(t))
		if err != nil {
			return nil, fmt.Errorf("attest: default policy for %s: %w", t, err)
		}
		c.jws = UnsignedPolicy(c.text)
		s.cur[t] = c
		if dir == "" {
			continue
		}
		data, err := os.ReadFile(s.path(t))
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("attest: reading stored policy: %w", err)
		}
		text, signer, err := parsePolicyJWS(string(data))
		if err != nil {
			return nil, fmt.Errorf("attest: stored policy %s: %w", s.path(t), err)
		}
		c, err = compilePolicy(ctx, text)
		if err != nil {
			return nil, fmt.Errorf("attest: stored policy %s: %w", s.path(t), err)
		}
		c.jws, c.signer = strings.TrimSpace(string(data)), signer
		s.cur[t] = c
	}
	if dir != "" {
		if err := os.MkdirAll(filepath.Join(dir, "policies"), 0o700); err != nil {
			return nil, fmt.Errorf("attest: state dir: %w", err)
		}
	}
	return s, nil
}

func (s *policyStore) path(t string) string {
	return filepath.Join(s.dir, "policies", t+".jwt")
}

func (s *policyStore) get(t string) *compiled {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.cur[t]
}

// install publishes c (nil: the default) without persisting it: the
// shared state's watch calls it with what the store already holds.
func (s *policyStore) install(t string, c *compiled) {
	if c == nil {
		if cur := s.get(t); cur != nil && cur.jws == UnsignedPolicy(defaultPolicyText(t)) && cur.unavailable == "" {
			return // already the default: skip recompiling it
		}
		d, err := compilePolicy(context.Background(), defaultPolicyText(t))
		if err != nil {
			d = &compiled{unavailable: err.Error()}
		} else {
			d.jws = UnsignedPolicy(d.text)
		}
		c = d
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cur[t] = c
}

// set persists and publishes c (nil resets to the default).
func (s *policyStore) set(ctx context.Context, t string, c *compiled) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c == nil {
		d, err := compilePolicy(ctx, defaultPolicyText(t))
		if err != nil {
			return err
		}
		d.jws = UnsignedPolicy(d.text)
		if s.dir != "" {
			if err := os.Remove(s.path(t)); err != nil && !errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("removing stored policy: %w", err)
			}
		}
		s.cur[t] = d
		return nil
	}
	if s.dir != "" {
		if err := writeAtomic(s.path(t), []byte(c.jws)); err != nil {
			return err
		}
	}
	s.cur[t] = c
	return nil
}

// writeAtomic writes via a synced temporary file and rename, so a crash
// leaves either the old or the new policy, never a torn one.
func writeAtomic(path string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return fmt.Errorf("storing policy: %w", err)
	}
	tmp := f.Name()
	_, werr := f.Write(data)
	if werr == nil {
		werr = f.Sync()
	}
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr == nil {
		werr = os.Rename(tmp, path)
	}
	if werr != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("storing policy: %w", werr)
	}
	return nil
}
