package akv

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"strings"
)

// ErrPolicyNotMet means a verified token did not satisfy the key's release
// policy: no key is released.
var ErrPolicyNotMet = errors.New("akv: release policy not satisfied")

// Evaluate checks claims (a verified token's payload, numbers as
// json.Number) from the authority issuer (the token's verified iss) against
// p. It returns nil when one authority of the policy is issuer and the
// claims meet its conditions; otherwise an error wrapping ErrPolicyNotMet
// that names, for each authority tried, the first condition that failed.
// Rules (Azure's grammar): a claim that is absent meets no condition but
// exists:false (notEquals included: fail closed); dot notation walks JSON
// objects, never arrays; equals compares strings exactly (case matters),
// numbers by value and booleans, never across types; less/greater compare
// numbers only. Pure.
func (p *Policy) Evaluate(issuer string, claims map[string]any) error {
	iss, err := normalizeIssuer(issuer)
	if err != nil {
		return fmt.Errorf("%w: token issuer %q: %w", ErrPolicyNotMet, issuer, err)
	}
	var reasons []string
	for _, a := range p.Authorities {
		if a.authority != iss {
			continue
		}
		why := a.Cond.eval(claims)
		if why == "" {
			return nil
		}
		reasons = append(reasons, fmt.Sprintf("authority %s: %s", a.Authority, why))
	}
	if reasons == nil {
		names := make([]string, len(p.Authorities))
		for i, a := range p.Authorities {
			names[i] = a.Authority
		}
		return fmt.Errorf("%w: the token's issuer %s is none of the policy's authorities (%s)", ErrPolicyNotMet, issuer, strings.Join(names, ", "))
	}
	return fmt.Errorf("%w: %s", ErrPolicyNotMet, strings.Join(reasons, "; "))
}

// eval returns "" when c holds, else why it does not.
func (c *Condition) eval(claims map[string]any) string {
	switch c.Op {
	case "allof":
		for i := range c.Sub {
			if why := c.Sub[i].eval(claims); why != "" {
				return why
			}
		}
		return ""
	case "anyof":
		var whys []string
		for i := range c.Sub {
			why := c.Sub[i].eval(claims)
			if why == "" {
				return ""
			}
			whys = append(whys, why)
		}
		return "none of anyOf held (" + strings.Join(whys, "; ") + ")"
	}
	got, ok := lookup(claims, c.path)
	if c.Op == opExists {
		if ok == c.value.b {
			return ""
		}
		if ok {
			return fmt.Sprintf("claim %s is present, the policy wants it absent", c.Claim)
		}
		return fmt.Sprintf("claim %s is absent", c.Claim)
	}
	if !ok {
		return fmt.Sprintf("claim %s is absent", c.Claim)
	}
	switch c.Op {
	case opEquals:
		if equal(got, c.value) {
			return ""
		}
		return fmt.Sprintf("claim %s is %s, the policy wants %s", c.Claim, show(got), c.value)
	case opNotEquals:
		if !equal(got, c.value) {
			return ""
		}
		return fmt.Sprintf("claim %s is %s, which the policy refuses", c.Claim, c.value)
	}
	n, isNum := number(got)
	if !isNum {
		return fmt.Sprintf("claim %s is %s, not a number, and %s compares numbers", c.Claim, show(got), c.Op)
	}
	cmp := n.Cmp(c.value.num)
	var holds bool
	switch c.Op {
	case opLess:
		holds = cmp < 0
	case opLessOrEquals:
		holds = cmp <= 0
	case opGreater:
		holds = cmp > 0
	case opGreaterOrEquals:
		holds = cmp >= 0
	}
	if holds {
		return ""
	}
	return fmt.Sprintf("claim %s is %s, the policy wants %s %s", c.Claim, show(got), c.Op, c.value)
}

// lookup walks path through nested JSON objects.
func lookup(claims map[string]any, path []string) (any, bool) {
	var cur any = claims
	for _, seg := range path {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		if cur, ok = m[seg]; !ok {
			return nil, false
		}
	}
	return cur, true
}

func number(v any) (*big.Rat, bool) {
	n, ok := v.(json.Number)
	if !ok {
		return nil, false
	}
	return parseNumber(string(n))
}

func equal(got any, want policyValue) bool {
	switch want.kind {
	case kindString:
		s, ok := got.(string)
		return ok && s == want.str
	case kindBool:
		b, ok := got.(bool)
		return ok && b == want.b
	case kindNumber:
		n, ok := number(got)
		return ok && n.Cmp(want.num) == 0
	}
	return false
}

// show prints a claim value for an error message, cut short: claims are
// not secret, but a message should stay one line.
func show(v any) string {
	var s string
	switch v := v.(type) {
	case string:
		s = fmt.Sprintf("%q", v)
	case json.Number:
		s = string(v)
	case bool:
		s = fmt.Sprint(v)
	case nil:
		s = "null"
	case map[string]any:
		s = "an object"
	case []any:
		s = "an array"
	default:
		s = fmt.Sprintf("%v", v)
	}
	if len(s) > 80 {
		s = s[:77] + "..."
	}
	return s
}
