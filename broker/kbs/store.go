package kbs

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"sync"

	"github.com/cloister-dev/cloister/kv"
	"github.com/cloister-dev/cloister/policy/rego"
)

// Names in the sealed store. Resource paths are validated (ResourcePath),
// so no resource name can collide with another entry.
const (
	resourcePrefix      = "resource/"
	policyPrefix        = "policy/resource/"
	defaultPolicyName   = "policy/default"
	maxPolicyCacheItems = 4096
)

// segmentRE is what a repository, type or tag may be: letters, digits,
// '.', '_' and '-' (what CoCo resource URIs use), never "." or "..".
var segmentRE = regexp.MustCompile(`^[A-Za-z0-9._-]+$`)

// ResourcePath checks repository, type and tag and returns the path
// "repository/type/tag".
func ResourcePath(repository, typ, tag string) (string, error) {
	for _, s := range []struct{ name, v string }{{"repository", repository}, {"type", typ}, {"tag", tag}} {
		switch {
		case s.v == "":
			return "", fmt.Errorf("kbs: resource %s is empty", s.name)
		case len(s.v) > MaxPathSegment:
			return "", fmt.Errorf("kbs: resource %s is %d bytes, more than %d", s.name, len(s.v), MaxPathSegment)
		case s.v == "." || s.v == ".." || !segmentRE.MatchString(s.v):
			return "", fmt.Errorf("kbs: resource %s %q: want letters, digits, '.', '_' and '-' (not . or ..)", s.name, s.v)
		}
	}
	return repository + "/" + typ + "/" + tag, nil
}

// DefaultPolicy is the resource policy in force until an administrator
// sets one: it releases nothing. A broker that released secrets to any
// genuine TEE would release them to anyone who rents one.
const DefaultPolicy = `package cloister

default allow := false
`

// policies are the resource policies: the default one and per-resource
// ones, kept sealed in the store and compiled once, on first use. gen
// moves on every change, so cached decisions (decisionCache) made under
// older policies are never used again.
type policies struct {
	st     func() *kv.Store              // the store in use
	failed func(st *kv.Store, err error) // told of every store error

	mu    sync.RWMutex
	gen   uint64
	cache map[string]*rego.Policy // store name → compiled; nil = no such policy
}

func newPolicies(st func() *kv.Store, failed func(*kv.Store, error)) *policies {
	return &policies{st: st, failed: failed, cache: make(map[string]*rego.Policy)}
}

// reset forgets every compiled policy and cached decision: the store was
// reopened, and may hold another state than the one they came from.
func (p *policies) reset() {
	p.mu.Lock()
	p.gen++
	clear(p.cache)
	p.mu.Unlock()
}

// generation is the current policy generation: it moves on every change
// (set, reset), so a decision made under generation g still holds if
// generation() is g.
func (p *policies) generation() uint64 {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return p.gen
}

// forPath returns the policy that governs path (its own, else the
// default, else DefaultPolicy) and the generation it belongs to.
func (p *policies) forPath(ctx context.Context, path string) (*rego.Policy, uint64, error) {
	p.mu.RLock()
	gen := p.gen
	own, okOwn := p.cache[policyPrefix+path]
	def, okDef := p.cache[defaultPolicyName]
	p.mu.RUnlock()
	var err error
	if !okOwn {
		if own, err = p.load(ctx, policyPrefix+path, gen); err != nil {
			return nil, 0, err
		}
	}
	if own != nil {
		return own, gen, nil
	}
	if !okDef {
		if def, err = p.load(ctx, defaultPolicyName, gen); err != nil {
			return nil, 0, err
		}
	}
	if def == nil {
		if def, err = rego.Compile(ctx, DefaultPolicy); err != nil {
			return nil, 0, err
		}
		p.mu.Lock()
		if p.gen == gen {
			p.cache[defaultPolicyName] = def
		}
		p.mu.Unlock()
	}
	return def, gen, nil
}

// load reads and compiles the policy stored under name (nil if none) and
// caches it unless a change happened meanwhile (gen moved).
func (p *policies) load(ctx context.Context, name string, gen uint64) (*rego.Policy, error) {
	st := p.st()
	text, err := st.Get(ctx, name)
	var pol *rego.Policy
	switch {
	case errors.Is(err, kv.ErrNotFound):
	case err != nil:
		p.failed(st, err)
		return nil, fmt.Errorf("kbs: policy store: %w", err)
	default:
		if pol, err = rego.Compile(ctx, string(text)); err != nil {
			return nil, fmt.Errorf("kbs: stored policy %s: %w", name, err)
		}
	}
	p.mu.Lock()
	if p.gen == gen {
		if len(p.cache) >= maxPolicyCacheItems {
			clear(p.cache)
		}
		p.cache[name] = pol
	}
	p.mu.Unlock()
	return pol, nil
}

// get returns the stored text of a policy.
func (p *policies) get(ctx context.Context, name string) ([]byte, error) {
	st := p.st()
	b, err := st.Get(ctx, name)
	if err != nil && !errors.Is(err, kv.ErrNotFound) {
		p.failed(st, err)
	}
	return b, err
}

// set compiles text (refusing a policy that does not compile) and stores
// it under name; text nil deletes it. The change is durable before the
// cache forgets the old policy.
func (p *policies) set(ctx context.Context, name string, text []byte) error {
	if text != nil {
		if _, err := rego.Compile(ctx, string(text)); err != nil {
			return err
		}
	}
	st := p.st()
	p.mu.Lock()
	var err error
	if text == nil {
		err = st.Delete(ctx, name)
	} else {
		err = st.Put(ctx, name, text)
	}
	// Whatever the outcome (a failed commit may still have landed), the
	// cache is dropped and decisions are invalidated.
	p.gen++
	clear(p.cache)
	p.mu.Unlock()
	if err != nil {
		p.failed(st, err) // after Unlock: a reopen resets the cache
		return fmt.Errorf("kbs: policy store: %w", err)
	}
	return nil
}
