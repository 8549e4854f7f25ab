package maa

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
)

// Claim issuers MAA documents. Claims from evidence carry IssuerService;
// claims a policy adds or issues carry IssuerPolicy. MAA's "CustomClaim"
// (client-supplied claims) has no source in Cloister.
const (
	// IssuerService marks claims read from verified evidence.
	IssuerService = "AttestationService"
	// IssuerPolicy marks claims a policy added or issued.
	IssuerPolicy = "AttestationPolicy"
)

// Claim is one (type, value, issuer) triple, the unit MAA policies reason
// about. Value is a string, an int64 or a bool for claims that conditions
// can compare; Evaluate also accepts the other Go integer types,
// json.Number and integral float64 up to 2^53 in magnitude (what
// encoding/json produces) and normalises them to int64. A larger float64
// is an error, since it may already be rounded: decode JSON with UseNumber. Any other value (a JSON object such as x-ms-runtime) can be issued
// with c.value but never equals a literal.
type Claim struct {
	Type   string `json:"type"`
	Value  any    `json:"value"`
	Issuer string `json:"issuer,omitempty"`
}

// Policy is a parsed MAA policy. It is immutable after Parse, so one Policy
// may be evaluated concurrently from many goroutines.
type Policy struct {
	version       string
	config        []*rule
	authz         []*rule
	issuance      []*rule
	configuration []Claim
}

// Version returns the policy's declared grammar version ("1.0", "1.1" or
// "1.2").
func (p *Policy) Version() string { return p.version }

// Configuration returns the properties set by configurationrules, in order.
// They are accepted and validated but change nothing for SGX, TDX and
// SEV-SNP evaluation (see the package doc); the service reports them.
func (p *Policy) Configuration() []Claim { return append([]Claim(nil), p.configuration...) }

// Result is the outcome of Evaluate.
type Result struct {
	// Permitted is true when an authorization rule permitted and none
	// denied. Only then are issuance rules run.
	Permitted bool `json:"permitted"`
	// Issued are the claims issue() put in the outgoing set, in order.
	Issued []Claim `json:"issued"`
	// Properties are the claims issueproperty() produced during issuance.
	Properties []Claim `json:"properties,omitempty"`
	// Reason says which rule decided (by line) or that none permitted.
	Reason string `json:"reason"`
}

// EvalError is a failure while evaluating a well-formed policy: a function
// applied to a value of the wrong type, or a rule matching more claim
// combinations than MaxMatches. It is an error of the policy (the service
// answers 400), not a denial.
type EvalError struct {
	Pos Pos
	Msg string
}

// Error formats as "maa: evaluate: LINE:COL: message".
func (e *EvalError) Error() string { return "maa: evaluate: " + e.Pos.String() + ": " + e.Msg }

// Evaluate runs p over the incoming claims.
//
// Order (MAA "policy version 1.0/1.1"): authorization rules run first, in
// the order written; add() in them extends the claim set for later rules.
// A deny() that fires makes the verdict "denied" whatever else fires, and
// without a permit() that fires the verdict is "denied" too: MAA's drafting
// guide starts from "=> deny();" and adds permit rules, and a policy whose
// permit rules match nothing must not pass. Only a permitted evaluation runs
// the issuance rules, in order; their add() extends the incoming set,
// issue() the incoming and outgoing sets, issueproperty() the incoming and
// property sets. A rule's action runs once for every combination of claims
// that satisfies its conditions.
//
// Evaluate never modifies incoming. A denial is a Result with Permitted
// false and a nil error; an error means the policy could not be evaluated.
func (p *Policy) Evaluate(incoming []Claim) (Result, error) {
	if p == nil {
		return Result{}, errors.New("maa: evaluate: nil policy")
	}
	if len(incoming) > MaxClaims {
		return Result{}, fmt.Errorf("maa: evaluate: %d incoming claims, more than the %d allowed", len(incoming), MaxClaims)
	}
	set := make([]Claim, 0, len(incoming)+8)
	for i, c := range incoming {
		n, err := normalize(c)
		if err != nil {
			return Result{}, fmt.Errorf("maa: evaluate: incoming claim %d (%q): %w", i, c.Type, err)
		}
		set = append(set, n)
	}
	ev := &evaluator{set: set}

	permitBy, denyBy := -1, -1
	for _, r := range p.authz {
		fired, err := ev.run(r)
		if err != nil {
			return Result{}, err
		}
		if !fired {
			continue
		}
		switch r.action.verb {
		case verbPermit:
			if permitBy < 0 {
				permitBy = r.pos.Line
			}
		case verbDeny:
			if denyBy < 0 {
				denyBy = r.pos.Line
			}
		}
	}
	switch {
	case denyBy >= 0:
		return Result{Reason: fmt.Sprintf("denied by the deny() rule at line %d", denyBy)}, nil
	case permitBy < 0:
		return Result{Reason: "no authorization rule permitted (a policy must reach permit())"}, nil
	}
	for _, r := range p.issuance {
		if _, err := ev.run(r); err != nil {
			return Result{}, err
		}
	}
	return Result{
		Permitted:  true,
		Issued:     ev.issued,
		Properties: ev.props,
		Reason:     fmt.Sprintf("permitted by the permit() rule at line %d", permitBy),
	}, nil
}

// evaluator holds the claim sets of one evaluation.
type evaluator struct {
	set    []Claim // incoming set, growing with add/issue/issueproperty
	issued []Claim
	props  []Claim
	steps  int // claim comparisons so far, against MaxSteps
}

// run evaluates one rule and performs its action for every match. It
// reports whether the conditions held at least once.
func (ev *evaluator) run(r *rule) (bool, error) {
	// Matches are collected against the set as it was before the rule's
	// own actions, so a rule never sees the claims it adds.
	snapshot := ev.set[:len(ev.set):len(ev.set)]
	var matches []map[string]Claim
	var err error
	var walk func(i int, b map[string]Claim)
	walk = func(i int, b map[string]Claim) {
		if err != nil {
			return
		}
		if i == len(r.conds) {
			if len(matches) == MaxMatches {
				err = &EvalError{Pos: r.pos, Msg: fmt.Sprintf("rule matches more than %d claim combinations", MaxMatches)}
				return
			}
			cp := make(map[string]Claim, len(b))
			for k, v := range b {
				cp[k] = v
			}
			matches = append(matches, cp)
			return
		}
		c := r.conds[i]
		found := false
		for _, cl := range snapshot {
			ev.steps++
			if ev.steps > MaxSteps {
				err = &EvalError{Pos: r.pos, Msg: fmt.Sprintf("evaluation needs more than %d claim comparisons", MaxSteps)}
				return
			}
			ok, e := ev.satisfies(c, cl, b)
			if e != nil {
				err = e
				return
			}
			if !ok {
				continue
			}
			found = true
			if c.negate {
				break
			}
			if c.ident != "" {
				b[c.ident] = cl
			}
			walk(i+1, b)
			if c.ident != "" {
				delete(b, c.ident)
			}
			if err != nil {
				return
			}
		}
		if c.negate && !found {
			walk(i+1, b)
		}
	}
	walk(0, map[string]Claim{})
	if err != nil {
		return false, err
	}
	if len(matches) == 0 {
		return false, nil
	}
	a := r.action
	if a.verb == verbPermit || a.verb == verbDeny {
		return true, nil
	}
	for _, b := range matches {
		var c Claim
		if a.claimRef != "" {
			c = b[a.claimRef]
		} else {
			t, err := ev.eval(a.typ, b)
			if err != nil {
				return false, err
			}
			ts, ok := t.(string)
			if !ok || ts == "" {
				return false, &EvalError{Pos: a.typ.exprPos(), Msg: fmt.Sprintf("claim type must be a non-empty string, got %s", describeValue(t))}
			}
			v, err := ev.eval(a.value, b)
			if err != nil {
				return false, err
			}
			if a.valueType != "" && valueTypeOf(v) != a.valueType {
				return false, &EvalError{Pos: a.value.exprPos(), Msg: fmt.Sprintf("value %s is not of valueType %q", describeValue(v), a.valueType)}
			}
			c = Claim{Type: ts, Value: v, Issuer: IssuerPolicy}
		}
		if len(ev.set) >= MaxClaims {
			return false, &EvalError{Pos: a.pos, Msg: fmt.Sprintf("claim set grew beyond %d claims", MaxClaims)}
		}
		ev.set = append(ev.set, c)
		switch a.verb {
		case verbIssue:
			ev.issued = append(ev.issued, c)
		case verbIssueProperty:
			ev.props = append(ev.props, c)
		}
	}
	return true, nil
}

// satisfies reports whether claim cl meets every property condition of c,
// with b binding the identifiers of earlier conditions.
func (ev *evaluator) satisfies(c *condition, cl Claim, b map[string]Claim) (bool, error) {
	for _, pc := range c.props {
		want, err := ev.eval(pc.expr, b)
		if err != nil {
			return false, err
		}
		var got any
		switch pc.prop {
		case propType:
			got = cl.Type
		case propValue:
			got = cl.Value
		case propIssuer:
			got = cl.Issuer
		case propValueType:
			got = valueTypeOf(cl.Value)
		}
		if !compare(pc.op, got, want) {
			return false, nil
		}
	}
	return true, nil
}

// compare applies op. Equality needs equal types (a string "1" never equals
// the integer 1), and != is exactly its negation. Ordering needs two
// integers; otherwise it is false, so a claim of the wrong type never
// satisfies a bound check.
func compare(op tokenKind, got, want any) bool {
	switch op {
	case tokEq:
		return equal(got, want)
	case tokNe:
		return !equal(got, want)
	}
	g, ok1 := got.(int64)
	w, ok2 := want.(int64)
	if !ok1 || !ok2 {
		return false
	}
	switch op {
	case tokLt:
		return g < w
	case tokLe:
		return g <= w
	case tokGt:
		return g > w
	case tokGe:
		return g >= w
	}
	return false
}

func equal(a, b any) bool {
	switch x := a.(type) {
	case string:
		y, ok := b.(string)
		return ok && x == y
	case int64:
		y, ok := b.(int64)
		return ok && x == y
	case bool:
		y, ok := b.(bool)
		return ok && x == y
	}
	return false
}

// eval computes an expression under bindings b.
func (ev *evaluator) eval(e expr, b map[string]Claim) (any, error) {
	switch x := e.(type) {
	case *litExpr:
		return x.v, nil
	case *refExpr:
		cl := b[x.ident]
		switch x.prop {
		case propType:
			return cl.Type, nil
		case propValue:
			return cl.Value, nil
		case propIssuer:
			return cl.Issuer, nil
		case propValueType:
			return valueTypeOf(cl.Value), nil
		}
	case *callExpr:
		args := make([]any, len(x.args))
		for i, a := range x.args {
			v, err := ev.eval(a, b)
			if err != nil {
				return nil, err
			}
			args[i] = v
		}
		switch x.name {
		case "appendstring":
			s1, ok1 := args[0].(string)
			s2, ok2 := args[1].(string)
			if !ok1 || !ok2 {
				return nil, &EvalError{Pos: x.pos, Msg: fmt.Sprintf("AppendString needs two strings, got %s and %s", describeValue(args[0]), describeValue(args[1]))}
			}
			if len(s1)+len(s2) > MaxStringLen {
				return nil, &EvalError{Pos: x.pos, Msg: fmt.Sprintf("AppendString result longer than %d bytes", MaxStringLen)}
			}
			return s1 + s2, nil
		case "negatebool":
			v, ok := args[0].(bool)
			if !ok {
				return nil, &EvalError{Pos: x.pos, Msg: fmt.Sprintf("NegateBool needs a boolean, got %s", describeValue(args[0]))}
			}
			return !v, nil
		}
	}
	return nil, &EvalError{Pos: e.exprPos(), Msg: "internal: unknown expression"}
}

// valueTypeOf returns MAA's valueType name of a normalised value.
func valueTypeOf(v any) string {
	switch v.(type) {
	case string:
		return "String"
	case int64:
		return "Integer"
	case bool:
		return "Boolean"
	}
	return "Other"
}

// maxExactFloat is 2^53: every integer up to it is a float64 exactly, and
// beyond it a float64 stands for several integers.
const maxExactFloat = 1 << 53

// normalize brings a claim's value to the types conditions compare.
func normalize(c Claim) (Claim, error) {
	switch v := c.Value.(type) {
	case string, int64, bool:
	case int:
		c.Value = int64(v)
	case int8:
		c.Value = int64(v)
	case int16:
		c.Value = int64(v)
	case int32:
		c.Value = int64(v)
	case uint8:
		c.Value = int64(v)
	case uint16:
		c.Value = int64(v)
	case uint32:
		c.Value = int64(v)
	case uint:
		if uint64(v) > math.MaxInt64 {
			return c, fmt.Errorf("integer %d does not fit 64-bit signed", v)
		}
		c.Value = int64(v)
	case uint64:
		if v > math.MaxInt64 {
			return c, fmt.Errorf("integer %d does not fit 64-bit signed", v)
		}
		c.Value = int64(v)
	case float64:
		if v != math.Trunc(v) {
			return c, fmt.Errorf("number %v is not an integer (MAA claims hold integers only)", v)
		}
		// Above 2^53 a float64 may already be rounded (SEV-SNP's uint64
		// TCB versions lose their low SVNs): judging it would judge
		// another number, so the caller must pass it exactly.
		if math.Abs(v) > maxExactFloat {
			return c, fmt.Errorf("number %.0f is a float64 beyond 2^53, so it may have been rounded; pass it as int64 or json.Number (decode JSON with UseNumber)", v)
		}
		c.Value = int64(v)
	case json.Number:
		n, err := v.Int64()
		if err != nil {
			return c, fmt.Errorf("number %s is not a 64-bit integer (MAA claims hold integers only)", v)
		}
		c.Value = n
	}
	if strings.TrimSpace(c.Type) == "" {
		return c, errors.New("claim without a type")
	}
	return c, nil
}
