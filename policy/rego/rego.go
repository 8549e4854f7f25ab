// Package rego evaluates attestation policies written in Rego, the language
// of the Open Policy Agent (github.com/open-policy-agent/opa, v1 packages),
// as the alternative to MAA's grammar (package policy/maa).
//
// A policy is one Rego v1 module in package cloister. Its input is the
// claims object (claim name → value, as `cloister policy test --claims`
// reads it and the attestation service builds it). It decides with
// data.cloister.allow, a boolean that defaults to false when the module
// leaves it undefined, and may add claims to the token with
// data.cloister.claims, an object:
//
//	package cloister
//
//	default allow := false
//	allow if {
//		input["x-ms-sgx-is-debuggable"] == false
//		input["x-ms-sgx-mrsigner"] == "815f42f1…"
//	}
//	claims := {"tier": "gold"} if allow
//
// Like the MAA evaluator, evaluation is appraisal only and pure: every
// builtin that reaches outside the evaluation (http.send, net.lookup_ip_addr,
// opa.runtime) or is not deterministic (time.now_ns, rand.intn, uuid.rfc4122,
// and any other builtin OPA marks non-deterministic) is removed from the
// capabilities, so a module that calls one fails to compile. Evaluation is
// bounded by the caller's context and by EvalTimeout.
package rego

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
)

// PackagePath is the only package a policy module may declare.
const PackagePath = "data.cloister"

// EvalTimeout bounds one Evaluate even when the caller's context has no
// deadline: a policy is tenant input, and a tenant must not be able to tie up
// the service with an expensive comprehension.
const EvalTimeout = 2 * time.Second

// MaxModuleSize is the largest module Compile accepts, in bytes.
const MaxModuleSize = 256 << 10

// deniedBuiltins are refused by name, whatever OPA's non-determinism flags
// say, because they reach the network or the host.
var deniedBuiltins = map[string]bool{
	"http.send":          true,
	"net.lookup_ip_addr": true,
	"opa.runtime":        true,
	"time.now_ns":        true,
	"rand.intn":          true,
	"uuid.rfc4122":       true,
}

// Policy is a compiled Rego policy, ready to evaluate. It is safe for
// concurrent use: OPA's prepared queries are.
type Policy struct {
	query rego.PreparedEvalQuery
}

// Result is the outcome of Evaluate.
type Result struct {
	// Allow is data.cloister.allow; false when the module leaves it
	// undefined.
	Allow bool `json:"allow"`
	// Claims is data.cloister.claims, nil when undefined. Numbers are
	// json.Number, as OPA produces them.
	Claims map[string]any `json:"claims,omitempty"`
}

// capabilities returns this OPA version's capabilities without the denied
// and non-deterministic builtins, and with no network access at all.
func capabilities() *ast.Capabilities {
	caps := ast.CapabilitiesForThisVersion()
	kept := caps.Builtins[:0:0]
	for _, b := range caps.Builtins {
		if deniedBuiltins[b.Name] || b.Nondeterministic {
			continue
		}
		kept = append(kept, b)
	}
	caps.Builtins = kept
	caps.AllowNet = []string{} // empty, not nil: nil means "any host"
	return caps
}

// Compile parses and compiles module, which must be a Rego v1 module in
// package cloister. Errors are prefixed "rego: " and carry OPA's
// file:line:column detail.
func Compile(ctx context.Context, module string) (*Policy, error) {
	if len(module) > MaxModuleSize {
		return nil, fmt.Errorf("rego: module is %d bytes, more than the %d allowed", len(module), MaxModuleSize)
	}
	m, err := ast.ParseModuleWithOpts("policy.rego", module, ast.ParserOptions{RegoVersion: ast.RegoV1})
	if err != nil {
		return nil, fmt.Errorf("rego: %w", err)
	}
	if m == nil {
		return nil, errors.New("rego: empty module: want \"package cloister\" and rules")
	}
	if got := m.Package.Path.String(); got != PackagePath {
		return nil, fmt.Errorf("rego: module declares package %s, want package cloister", got)
	}
	q, err := rego.New(
		rego.Query(PackagePath),
		rego.ParsedModule(m),
		rego.Capabilities(capabilities()),
		rego.SetRegoVersion(ast.RegoV1),
		rego.StrictBuiltinErrors(true),
	).PrepareForEval(ctx)
	if err != nil {
		return nil, fmt.Errorf("rego: %w", err)
	}
	return &Policy{query: q}, nil
}

// maxExactFloat is 2^53: every integer up to it is a float64 exactly, and
// beyond it a float64 stands for several integers.
const maxExactFloat = 1 << 53

// checkExact refuses a float64 beyond 2^53 anywhere in v (maps and
// slices), naming its path: it may already be rounded (SEV-SNP's uint64 TCB
// versions lose their low SVNs), and a policy must not judge another number
// than the one attested. Integers of any Go type and json.Number are exact.
func checkExact(path string, v any) error {
	switch x := v.(type) {
	case float64:
		if math.Abs(x) > maxExactFloat {
			return fmt.Errorf("%s is the float64 %g, beyond 2^53, so it may have been rounded; pass it as an integer or json.Number (decode JSON with UseNumber)", path, x)
		}
	case float32:
		if math.Abs(float64(x)) > 1<<24 { // float32's 2^53
			return fmt.Errorf("%s is the float32 %g, beyond 2^24, so it may have been rounded; pass it as an integer or json.Number", path, x)
		}
	case map[string]any:
		for k, e := range x {
			if err := checkExact(path+"."+k, e); err != nil {
				return err
			}
		}
	case []any:
		for i, e := range x {
			if err := checkExact(fmt.Sprintf("%s[%d]", path, i), e); err != nil {
				return err
			}
		}
	}
	return nil
}

// Evaluate runs the policy over input. A module whose allow is not a
// boolean, or whose claims is not an object, is an error (not a denial):
// it is a mistake in the policy that its author must see. Numbers in input
// reach the policy exactly (integers of any Go type, json.Number); a
// float64 beyond 2^53 is an error, since it may already be rounded.
func (p *Policy) Evaluate(ctx context.Context, input map[string]any) (Result, error) {
	if p == nil {
		return Result{}, errors.New("rego: evaluate: nil policy")
	}
	ctx, cancel := context.WithTimeout(ctx, EvalTimeout)
	defer cancel()
	if input == nil {
		input = map[string]any{}
	}
	if err := checkExact("input", input); err != nil {
		return Result{}, fmt.Errorf("rego: evaluate: %w", err)
	}
	rs, err := p.query.Eval(ctx, rego.EvalInput(input))
	if err != nil {
		return Result{}, fmt.Errorf("rego: evaluate: %w", err)
	}
	if len(rs) == 0 || len(rs[0].Expressions) == 0 {
		return Result{}, nil
	}
	doc, ok := rs[0].Expressions[0].Value.(map[string]any)
	if !ok {
		return Result{}, fmt.Errorf("rego: evaluate: %s is %T, want an object", PackagePath, rs[0].Expressions[0].Value)
	}
	var res Result
	if v, ok := doc["allow"]; ok {
		b, isBool := v.(bool)
		if !isBool {
			return Result{}, fmt.Errorf("rego: evaluate: data.cloister.allow is %T, want a boolean", v)
		}
		res.Allow = b
	}
	if v, ok := doc["claims"]; ok {
		m, isObj := v.(map[string]any)
		if !isObj {
			return Result{}, fmt.Errorf("rego: evaluate: data.cloister.claims is %T, want an object", v)
		}
		res.Claims = m
	}
	return res, nil
}
