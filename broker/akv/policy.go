package akv

import (
	"errors"
	"fmt"
	"math/big"
	"net/url"
	"strconv"
	"strings"

	jsonv2 "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
)

// ErrPolicy marks a release policy document that does not follow the
// grammar (a 400 BadParameter at create time: the policy is refused before
// any key is made under it).
var ErrPolicy = errors.New("akv: release policy")

// PolicyVersions are the release policy versions accepted. Azure documents
// "1.0.0" in its grammar; "1.2.0" is what Azure's own confidential VM
// policies carry since comparison operators were added. Both take the whole
// operator set: Azure's current grammar lists every operator under 1.0.0.
var PolicyVersions = []string{"1.0.0", "1.2.0"}

// Operators of a claim condition, as Azure's grammar spells them.
const (
	opEquals          = "equals"
	opNotEquals       = "notequals"
	opLess            = "less"
	opLessOrEquals    = "lessorequals"
	opGreater         = "greater"
	opGreaterOrEquals = "greaterorequals"
	opExists          = "exists"
)

var operators = []string{opEquals, opNotEquals, opLess, opLessOrEquals, opGreater, opGreaterOrEquals, opExists}

// Policy is a parsed secure key release policy: an anyOf over authorities,
// each with the conditions its token must meet.
type Policy struct {
	// Version is the document's version ("1.0.0" or "1.2.0").
	Version string
	// Authorities are the alternatives; a token must come from one of them
	// and meet its conditions.
	Authorities []AuthorityRule
}

// AuthorityRule is one element of the policy's anyOf: an issuer and the
// conditions (one anyOf or allOf) on its token's claims.
type AuthorityRule struct {
	// Authority is the issuer as written in the policy.
	Authority string
	// authority is its normalised form (see normalizeIssuer).
	authority string
	// Cond is the anyOf or allOf condition.
	Cond Condition
}

// Condition is a claim condition, or an anyOf/allOf of conditions.
type Condition struct {
	// Op is "anyof", "allof" or one of the claim operators (lower case).
	Op string
	// Sub are the conditions of anyof/allof.
	Sub []Condition
	// Claim is the claim name in dot notation (claim conditions only).
	Claim string
	path  []string
	// value is the value compared with (claim conditions only).
	value policyValue
}

type valueKind int

const (
	kindString valueKind = iota + 1
	kindNumber
	kindBool
)

// policyValue is a JSON scalar of a claim condition.
type policyValue struct {
	kind valueKind
	str  string   // kindString
	num  *big.Rat // kindNumber
	b    bool     // kindBool
}

func (v policyValue) String() string {
	switch v.kind {
	case kindString:
		return fmt.Sprintf("%q", v.str)
	case kindNumber:
		return v.num.RatString()
	default:
		return fmt.Sprint(v.b)
	}
}

// ParsePolicy parses a release policy document (the JSON the base64url
// "data" of a release_policy carries). It is strict: exactly the grammar's
// members, matched without regard to case as Azure does ("anyOf" and
// "anyof" alike), no member twice in an object (in any case), no unknown
// member, no null, object or array as a compared value, valid UTF-8, and
// the caps of limits.go. Pure: no I/O.
func ParsePolicy(data []byte) (*Policy, error) {
	if len(data) == 0 {
		return nil, fmt.Errorf("%w: empty document", ErrPolicy)
	}
	if len(data) > MaxPolicySize {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrPolicy, len(data), MaxPolicySize)
	}
	top, err := object(data, "policy")
	if err != nil {
		return nil, err
	}
	if err := onlyMembers(top, "policy", "version", "anyof"); err != nil {
		return nil, err
	}
	var p Policy
	vraw, ok := top["version"]
	if !ok {
		return nil, fmt.Errorf("%w: policy: no version", ErrPolicy)
	}
	if err := jsonv2.Unmarshal(vraw, &p.Version); err != nil {
		return nil, fmt.Errorf("%w: policy: version: want a string", ErrPolicy)
	}
	known := false
	for _, v := range PolicyVersions {
		known = known || p.Version == v
	}
	if !known {
		return nil, fmt.Errorf("%w: policy: version %q, want one of %s", ErrPolicy, p.Version, strings.Join(PolicyVersions, ", "))
	}
	araw, ok := top["anyof"]
	if !ok {
		return nil, fmt.Errorf("%w: policy: no anyOf of authorities", ErrPolicy)
	}
	elems, err := array(araw, "policy.anyOf")
	if err != nil {
		return nil, err
	}
	if len(elems) > MaxPolicyAuthorities {
		return nil, fmt.Errorf("%w: policy.anyOf: %d authorities, limit %d", ErrPolicy, len(elems), MaxPolicyAuthorities)
	}
	budget := MaxPolicyConditions
	for i, e := range elems {
		where := fmt.Sprintf("policy.anyOf[%d]", i)
		a, err := object(e, where)
		if err != nil {
			return nil, err
		}
		if err := onlyMembers(a, where, "authority", "anyof", "allof"); err != nil {
			return nil, err
		}
		var r AuthorityRule
		raw, ok := a["authority"]
		if !ok {
			return nil, fmt.Errorf("%w: %s: no authority", ErrPolicy, where)
		}
		if err := jsonv2.Unmarshal(raw, &r.Authority); err != nil || r.Authority == "" {
			return nil, fmt.Errorf("%w: %s.authority: want a non-empty string", ErrPolicy, where)
		}
		if r.authority, err = normalizeIssuer(r.Authority); err != nil {
			return nil, fmt.Errorf("%w: %s.authority: %w", ErrPolicy, where, err)
		}
		_, any := a["anyof"]
		_, all := a["allof"]
		if any == all {
			return nil, fmt.Errorf("%w: %s: want exactly one of anyOf and allOf", ErrPolicy, where)
		}
		if r.Cond, err = parseCondition(a, where, 1, &budget); err != nil {
			return nil, err
		}
		p.Authorities = append(p.Authorities, r)
	}
	return &p, nil
}

// parseCondition parses the condition object obj (already split into
// members) found at where.
func parseCondition(obj map[string]jsontext.Value, where string, depth int, budget *int) (Condition, error) {
	if depth > MaxPolicyDepth {
		return Condition{}, fmt.Errorf("%w: %s: nested deeper than %d", ErrPolicy, where, MaxPolicyDepth)
	}
	*budget--
	if *budget < 0 {
		return Condition{}, fmt.Errorf("%w: %s: more than %d conditions", ErrPolicy, where, MaxPolicyConditions)
	}
	for _, op := range []string{"anyof", "allof"} {
		raw, ok := obj[op]
		if !ok {
			continue
		}
		elems, err := array(raw, where+"."+op)
		if err != nil {
			return Condition{}, err
		}
		c := Condition{Op: op}
		for i, e := range elems {
			w := fmt.Sprintf("%s.%s[%d]", where, op, i)
			sub, err := object(e, w)
			if err != nil {
				return Condition{}, err
			}
			if err := onlyMembers(sub, w, append([]string{"claim", "anyof", "allof"}, operators...)...); err != nil {
				return Condition{}, err
			}
			_, isClaim := sub["claim"]
			_, isAny := sub["anyof"]
			_, isAll := sub["allof"]
			n := 0
			for _, b := range []bool{isClaim, isAny, isAll} {
				if b {
					n++
				}
			}
			if n != 1 {
				return Condition{}, fmt.Errorf("%w: %s: want exactly one of claim, anyOf and allOf", ErrPolicy, w)
			}
			if !isClaim && len(sub) != 1 {
				return Condition{}, fmt.Errorf("%w: %s: an anyOf or allOf condition has no other member", ErrPolicy, w)
			}
			var sc Condition
			if isClaim {
				sc, err = parseClaim(sub, w, budget)
			} else {
				sc, err = parseCondition(sub, w, depth+1, budget)
			}
			if err != nil {
				return Condition{}, err
			}
			c.Sub = append(c.Sub, sc)
		}
		return c, nil
	}
	return Condition{}, fmt.Errorf("%w: %s: want anyOf or allOf", ErrPolicy, where)
}

func parseClaim(obj map[string]jsontext.Value, where string, budget *int) (Condition, error) {
	*budget--
	if *budget < 0 {
		return Condition{}, fmt.Errorf("%w: %s: more than %d conditions", ErrPolicy, where, MaxPolicyConditions)
	}
	var c Condition
	if err := jsonv2.Unmarshal(obj["claim"], &c.Claim); err != nil {
		return Condition{}, fmt.Errorf("%w: %s.claim: want a string", ErrPolicy, where)
	}
	if c.Claim == "" || len(c.Claim) > MaxClaimName {
		return Condition{}, fmt.Errorf("%w: %s.claim: want 1 to %d bytes", ErrPolicy, where, MaxClaimName)
	}
	c.path = strings.Split(c.Claim, ".")
	for _, seg := range c.path {
		if seg == "" {
			return Condition{}, fmt.Errorf("%w: %s.claim %q: empty segment in dot notation", ErrPolicy, where, c.Claim)
		}
	}
	for _, op := range operators {
		raw, ok := obj[op]
		if !ok {
			continue
		}
		if c.Op != "" {
			return Condition{}, fmt.Errorf("%w: %s: two operators (%s and %s)", ErrPolicy, where, c.Op, op)
		}
		c.Op = op
		v, err := scalar(raw, where+"."+op)
		if err != nil {
			return Condition{}, err
		}
		switch op {
		case opExists:
			if v.kind != kindBool {
				return Condition{}, fmt.Errorf("%w: %s.exists: want true or false", ErrPolicy, where)
			}
		case opLess, opLessOrEquals, opGreater, opGreaterOrEquals:
			if v.kind != kindNumber {
				return Condition{}, fmt.Errorf("%w: %s.%s: want a number (ordering compares numbers only)", ErrPolicy, where, op)
			}
		}
		c.value = v
	}
	if c.Op == "" {
		return Condition{}, fmt.Errorf("%w: %s: no operator (want one of equals, notEquals, less, lessOrEquals, greater, greaterOrEquals, exists)", ErrPolicy, where)
	}
	return c, nil
}

// object splits a JSON object into its members, names lower-cased. Two
// members whose names differ only in case are refused: Azure matches
// names without regard to case, so they would be one member twice.
func object(raw []byte, where string) (map[string]jsontext.Value, error) {
	var m map[string]jsontext.Value
	if err := jsonv2.Unmarshal(raw, &m); err != nil {
		return nil, fmt.Errorf("%w: %s: want a JSON object: %w", ErrPolicy, where, err)
	}
	if m == nil {
		return nil, fmt.Errorf("%w: %s: want a JSON object, got null", ErrPolicy, where)
	}
	out := make(map[string]jsontext.Value, len(m))
	for k, v := range m {
		lk := strings.ToLower(k)
		if _, dup := out[lk]; dup {
			return nil, fmt.Errorf("%w: %s: member %q twice (names match without regard to case)", ErrPolicy, where, lk)
		}
		out[lk] = v
	}
	return out, nil
}

func onlyMembers(m map[string]jsontext.Value, where string, allowed ...string) error {
	for k := range m {
		ok := false
		for _, a := range allowed {
			ok = ok || k == a
		}
		if !ok {
			return fmt.Errorf("%w: %s: unknown member %q", ErrPolicy, where, k)
		}
	}
	return nil
}

func array(raw []byte, where string) ([]jsontext.Value, error) {
	var a []jsontext.Value
	if err := jsonv2.Unmarshal(raw, &a); err != nil || a == nil {
		return nil, fmt.Errorf("%w: %s: want a JSON array", ErrPolicy, where)
	}
	if len(a) == 0 {
		return nil, fmt.Errorf("%w: %s: empty (one condition or more is required)", ErrPolicy, where)
	}
	return a, nil
}

func scalar(raw jsontext.Value, where string) (policyValue, error) {
	switch raw.Kind() {
	case '"':
		var s string
		if err := jsonv2.Unmarshal(raw, &s); err != nil {
			return policyValue{}, fmt.Errorf("%w: %s: %w", ErrPolicy, where, err)
		}
		return policyValue{kind: kindString, str: s}, nil
	case '0':
		r, ok := parseNumber(string(raw))
		if !ok {
			return policyValue{}, fmt.Errorf("%w: %s: number %s out of range", ErrPolicy, where, raw)
		}
		return policyValue{kind: kindNumber, num: r}, nil
	case 't', 'f':
		return policyValue{kind: kindBool, b: raw.Kind() == 't'}, nil
	default:
		return policyValue{}, fmt.Errorf("%w: %s: want a string, number or boolean (the grammar allows no null, object or array)", ErrPolicy, where)
	}
}

// parseNumber reads a JSON number exactly, refusing what would cost more
// than a number can mean here: over 64 characters, or an exponent beyond
// ±400 (big.Rat would expand 1e999999999 digit by digit).
func parseNumber(s string) (*big.Rat, bool) {
	if len(s) > 64 {
		return nil, false
	}
	if i := strings.IndexAny(s, "eE"); i >= 0 {
		e, err := strconv.Atoi(strings.TrimPrefix(s[i+1:], "+"))
		if err != nil || e > 400 || e < -400 {
			return nil, false
		}
	}
	return new(big.Rat).SetString(s)
}

// normalizeIssuer puts an issuer or authority in the form they are
// compared in: an https URL (a bare host gets https://, as Azure's examples
// write authorities either way) with the scheme and host lower-cased, the
// default port dropped and no trailing slash. Anything but scheme, host,
// port and path is refused.
func normalizeIssuer(s string) (string, error) {
	if !strings.Contains(s, "://") {
		s = "https://" + s
	}
	u, err := url.Parse(s)
	if err != nil {
		return "", fmt.Errorf("not a URL: %w", err)
	}
	if u.Scheme != "https" && u.Scheme != "http" {
		return "", fmt.Errorf("scheme %q, want https", u.Scheme)
	}
	if u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" || u.Opaque != "" {
		return "", fmt.Errorf("%q: want scheme://host[:port][/path] only", s)
	}
	host := strings.ToLower(u.Hostname())
	port := u.Port()
	if (u.Scheme == "https" && port == "443") || (u.Scheme == "http" && port == "80") {
		port = ""
	}
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	if port != "" {
		host += ":" + port
	}
	return strings.ToLower(u.Scheme) + "://" + host + strings.TrimRight(u.EscapedPath(), "/"), nil
}
