package maa

import (
	"fmt"
	"strings"
)

// SyntaxError is a policy that does not follow the grammar, or uses a
// construct this implementation rejects. Pos is where the problem starts;
// Msg says what was found and what was expected. The attestation service
// returns it to the policy's author as a 400 body, so it must be enough to
// fix the policy without reading our code.
type SyntaxError struct {
	Pos Pos
	Msg string
}

// Error formats as "maa: LINE:COL: message".
func (e *SyntaxError) Error() string { return "maa: " + e.Pos.String() + ": " + e.Msg }

// Supported policy versions. MAA documents 1.0, 1.1 (adds
// configurationrules) and 1.2 (adds "!" conditions and functions).
var supportedVersions = map[string]int{"1.0": 10, "1.1": 11, "1.2": 12}

// functions maps the function names MAA documents for version 1.2 to their
// arity, or to -1 for those this implementation refuses (see the package
// doc: they need a JSON/JMESPath claim model we do not have).
var functions = map[string]int{
	"appendstring":      2,
	"negatebool":        1,
	"jmespath":          -1,
	"jsontoclaimvalue":  -1,
	"issubsetof":        -1,
	"containsonlyvalue": -1,
	"notcontainsvalue":  -1,
}

// Configuration properties MAA documents, with the literal type each takes.
// None changes how this implementation evaluates SGX, TDX or SEV-SNP
// claims; see the package doc.
var configProps = map[string]string{
	"require_valid_aik_cert": "Boolean",
	"required_pcr_mask":      "Integer",
	"x-ms-sgx-tcbidentifier": "String",
}

type parser struct {
	lex     *lexer
	tok     token
	version int
	rules   int
}

// Parse parses policy text in the MAA policy grammar (see the package doc)
// and checks everything that can be checked without claims: structure,
// which actions each section allows, identifier references, literal types
// in ordering comparisons and configuration properties. Errors are
// *SyntaxError with the line and column.
func Parse(text string) (*Policy, error) {
	if len(text) > MaxPolicySize {
		return nil, fmt.Errorf("maa: policy is %d bytes, more than the %d allowed", len(text), MaxPolicySize)
	}
	p := &parser{lex: newLexer(text)}
	if err := p.advance(); err != nil {
		return nil, err
	}
	pol, err := p.parsePolicy()
	if err != nil {
		return nil, err
	}
	return pol, nil
}

func (p *parser) advance() error {
	t, err := p.lex.next()
	if err != nil {
		return err
	}
	p.tok = t
	return nil
}

func (p *parser) errorf(pos Pos, format string, args ...any) error {
	return &SyntaxError{Pos: pos, Msg: fmt.Sprintf(format, args...)}
}

// expected reports the current token as not what the grammar wants here.
func (p *parser) expected(what string) error {
	return p.errorf(p.tok.pos, "expected %s, found %s", what, p.tok.describe())
}

func (p *parser) expect(k tokenKind, what string) (token, error) {
	t := p.tok
	if t.kind != k {
		return t, p.expected(what)
	}
	return t, p.advance()
}

// isKeyword reports whether the current token is the identifier kw. Keywords
// match case-insensitively: MAA's own sample writes "Version= 1.0".
func (p *parser) isKeyword(kw string) bool {
	return p.tok.kind == tokIdent && strings.EqualFold(p.tok.text, kw)
}

func (p *parser) parsePolicy() (*Policy, error) {
	if !p.isKeyword("version") {
		return nil, p.expected(`"version=1.0;" (or 1.1, 1.2) at the start of the policy`)
	}
	if err := p.advance(); err != nil {
		return nil, err
	}
	if _, err := p.expect(tokAssign, "'=' after version"); err != nil {
		return nil, err
	}
	vt := p.tok
	if vt.kind != tokNumber && vt.kind != tokInt {
		return nil, p.expected("a version number such as 1.0")
	}
	v, ok := supportedVersions[vt.text]
	if !ok {
		return nil, p.errorf(vt.pos, "unsupported policy version %s: want 1.0, 1.1 or 1.2", vt.text)
	}
	p.version = v
	if err := p.advance(); err != nil {
		return nil, err
	}
	if _, err := p.expect(tokSemi, "';' after the version"); err != nil {
		return nil, err
	}

	pol := &Policy{version: vt.text}
	seen := map[section]bool{}
	last := section(0)
	for p.tok.kind != tokEOF {
		st := p.tok
		var sec section
		switch {
		case p.isKeyword("configurationrules"):
			sec = secConfiguration
		case p.isKeyword("authorizationrules"):
			sec = secAuthorization
		case p.isKeyword("issuancerules"):
			sec = secIssuance
		default:
			return nil, p.expected("a section (configurationrules, authorizationrules or issuancerules)")
		}
		if seen[sec] {
			return nil, p.errorf(st.pos, "duplicate %s section", sec)
		}
		// MAA documents the sections in this order; enforcing it keeps
		// "what runs first" visible in the text.
		if sec < last {
			return nil, p.errorf(st.pos, "%s section must come before %s", sec, last)
		}
		if sec == secConfiguration && p.version < 11 {
			return nil, p.errorf(st.pos, "configurationrules requires version=1.1 or later")
		}
		seen[sec], last = true, sec
		if err := p.advance(); err != nil {
			return nil, err
		}
		rules, err := p.parseSection(sec)
		if err != nil {
			return nil, err
		}
		switch sec {
		case secConfiguration:
			pol.config = rules
		case secAuthorization:
			pol.authz = rules
		case secIssuance:
			pol.issuance = rules
		}
	}
	if !seen[secAuthorization] {
		return nil, p.errorf(p.tok.pos, "missing authorizationrules section: without it no attestation can be permitted")
	}
	for _, r := range pol.config {
		c, err := configClaim(r)
		if err != nil {
			return nil, err
		}
		pol.configuration = append(pol.configuration, c)
	}
	return pol, nil
}

// parseSection parses "{ rule* };" after the section keyword.
func (p *parser) parseSection(sec section) ([]*rule, error) {
	if _, err := p.expect(tokLBrace, "'{' to open "+sec.String()); err != nil {
		return nil, err
	}
	var rules []*rule
	for p.tok.kind != tokRBrace {
		if p.tok.kind == tokEOF {
			return nil, p.expected("'}' to close " + sec.String())
		}
		r, err := p.parseRule(sec)
		if err != nil {
			return nil, err
		}
		p.rules++
		if p.rules > MaxRules {
			return nil, p.errorf(r.pos, "more than %d rules", MaxRules)
		}
		rules = append(rules, r)
	}
	if err := p.advance(); err != nil {
		return nil, err
	}
	if _, err := p.expect(tokSemi, "';' after the closing '}' of "+sec.String()); err != nil {
		return nil, err
	}
	return rules, nil
}

// parseRule parses "[conditions] => action [;]". The ';' after a rule may be
// left out: MAA's "author a policy" sample omits it.
func (p *parser) parseRule(sec section) (*rule, error) {
	r := &rule{pos: p.tok.pos}
	idents := map[string]bool{}
	if p.tok.kind != tokArrow {
		for {
			if len(r.conds) == MaxConditions {
				return nil, p.errorf(p.tok.pos, "more than %d conditions in one rule", MaxConditions)
			}
			c, err := p.parseCondition(idents)
			if err != nil {
				return nil, err
			}
			r.conds = append(r.conds, c)
			if c.ident != "" {
				idents[c.ident] = true
			}
			if p.tok.kind != tokAnd {
				break
			}
			if err := p.advance(); err != nil {
				return nil, err
			}
		}
	}
	if _, err := p.expect(tokArrow, "'=>' or '&&' after the conditions"); err != nil {
		return nil, err
	}
	a, err := p.parseAction(sec, idents)
	if err != nil {
		return nil, err
	}
	r.action = a
	if sec == secConfiguration && len(r.conds) > 0 {
		return nil, p.errorf(r.pos, "configurationrules take no conditions: write \"=> issueproperty(type=..., value=...);\"")
	}
	if p.tok.kind == tokSemi {
		if err := p.advance(); err != nil {
			return nil, err
		}
	}
	return r, nil
}

// parseCondition parses "[!] [ident:] [ prop op expr, ... ]". idents holds
// the identifiers declared by earlier conditions of the same rule, the only
// ones a property condition may refer to.
func (p *parser) parseCondition(idents map[string]bool) (*condition, error) {
	c := &condition{pos: p.tok.pos}
	if p.tok.kind == tokNot {
		if p.version < 12 {
			return nil, p.errorf(p.tok.pos, "the '!' condition requires version=1.2")
		}
		c.negate = true
		if err := p.advance(); err != nil {
			return nil, err
		}
	}
	if p.tok.kind == tokIdent {
		id := p.tok
		if c.negate {
			return nil, p.errorf(id.pos, "a '!' condition matches no claim, so it cannot bind identifier %q", id.text)
		}
		if idents[id.text] {
			return nil, p.errorf(id.pos, "identifier %q declared twice in one rule", id.text)
		}
		if err := p.advance(); err != nil {
			return nil, err
		}
		if _, err := p.expect(tokColon, fmt.Sprintf("':' after identifier %q", id.text)); err != nil {
			return nil, err
		}
		c.ident = id.text
	}
	if _, err := p.expect(tokLBrack, "'[' to open a condition"); err != nil {
		return nil, err
	}
	seen := map[claimProp]bool{}
	for p.tok.kind != tokRBrack {
		if len(c.props) > 0 {
			if _, err := p.expect(tokComma, "',' or ']' in the condition"); err != nil {
				return nil, err
			}
		}
		pc, err := p.parsePropCond(idents)
		if err != nil {
			return nil, err
		}
		if seen[pc.prop] && pc.prop != propValue {
			return nil, p.errorf(pc.pos, "%s named twice in one condition", pc.prop)
		}
		seen[pc.prop] = true
		c.props = append(c.props, pc)
	}
	if len(c.props) == 0 {
		return nil, p.errorf(p.tok.pos, "empty condition []: name at least the claim type")
	}
	if err := p.advance(); err != nil {
		return nil, err
	}
	return c, nil
}

func (p *parser) claimProp(what string) (claimProp, Pos, error) {
	t := p.tok
	if t.kind != tokIdent {
		return 0, t.pos, p.expected(what)
	}
	var prop claimProp
	switch strings.ToLower(t.text) {
	case "type":
		prop = propType
	case "value":
		prop = propValue
	case "issuer":
		prop = propIssuer
	case "valuetype":
		prop = propValueType
	default:
		return 0, t.pos, p.errorf(t.pos, "unknown claim property %q: want type, value, issuer or valueType", t.text)
	}
	return prop, t.pos, p.advance()
}

// parsePropCond parses "prop op expr". A single '=' is read as '==': MAA's
// own samples write [type="secureBootEnabled", ...] in conditions.
func (p *parser) parsePropCond(idents map[string]bool) (*propCond, error) {
	prop, pos, err := p.claimProp("a claim property (type, value, issuer, valueType)")
	if err != nil {
		return nil, err
	}
	pc := &propCond{pos: pos, prop: prop}
	switch p.tok.kind {
	case tokEq, tokAssign:
		pc.op = tokEq
	case tokNe, tokLt, tokLe, tokGt, tokGe:
		pc.op = p.tok.kind
	default:
		return nil, p.expected(fmt.Sprintf("a comparison (==, !=, <, <=, >, >=) after %s", prop))
	}
	opPos := p.tok.pos
	if err := p.advance(); err != nil {
		return nil, err
	}
	if pc.op != tokEq && pc.op != tokNe && prop != propValue {
		return nil, p.errorf(opPos, "%s compares only with == or !=", prop)
	}
	e, err := p.parseExpr(idents, 0)
	if err != nil {
		return nil, err
	}
	if l, ok := e.(*litExpr); ok {
		if _, isInt := l.v.(int64); !isInt && pc.op != tokEq && pc.op != tokNe {
			return nil, p.errorf(l.pos, "%s compares integers only, found %s", pc.op, describeValue(l.v))
		}
		if _, isStr := l.v.(string); !isStr && prop != propValue {
			return nil, p.errorf(l.pos, "%s is a string, found %s", prop, describeValue(l.v))
		}
	}
	pc.expr = e
	return pc, nil
}

// parseExpr parses a literal, "ident.prop" or "Function(args)".
func (p *parser) parseExpr(idents map[string]bool, depth int) (expr, error) {
	if depth > MaxExprDepth {
		return nil, p.errorf(p.tok.pos, "function calls nested more than %d deep", MaxExprDepth)
	}
	t := p.tok
	switch t.kind {
	case tokString:
		return &litExpr{pos: t.pos, v: t.text}, p.advance()
	case tokInt:
		return &litExpr{pos: t.pos, v: t.ival}, p.advance()
	case tokIdent:
	default:
		return nil, p.expected("a value (string, integer, true, false, claim.property or function call)")
	}
	switch strings.ToLower(t.text) {
	case "true":
		return &litExpr{pos: t.pos, v: true}, p.advance()
	case "false":
		return &litExpr{pos: t.pos, v: false}, p.advance()
	}
	if err := p.advance(); err != nil {
		return nil, err
	}
	switch p.tok.kind {
	case tokDot:
		if !idents[t.text] {
			return nil, p.errorf(t.pos, "identifier %q is not bound by an earlier condition of this rule", t.text)
		}
		if err := p.advance(); err != nil {
			return nil, err
		}
		prop, _, err := p.claimProp(fmt.Sprintf("a claim property after %q.", t.text))
		if err != nil {
			return nil, err
		}
		return &refExpr{pos: t.pos, ident: t.text, prop: prop}, nil
	case tokLParen:
		return p.parseCall(t, idents, depth)
	}
	return nil, p.errorf(t.pos, "unexpected identifier %q: expected a value (quote strings; refer to a claim as %s.value)", t.text, t.text)
}

func (p *parser) parseCall(name token, idents map[string]bool, depth int) (expr, error) {
	arity, known := functions[strings.ToLower(name.text)]
	switch {
	case !known:
		return nil, p.errorf(name.pos, "unknown function %q", name.text)
	case arity < 0:
		return nil, p.errorf(name.pos, "function %s is not supported by this implementation (supported: AppendString, NegateBool)", name.text)
	case p.version < 12:
		return nil, p.errorf(name.pos, "function calls require version=1.2")
	}
	if err := p.advance(); err != nil { // '('
		return nil, err
	}
	c := &callExpr{pos: name.pos, name: strings.ToLower(name.text)}
	for p.tok.kind != tokRParen {
		if len(c.args) > 0 {
			if _, err := p.expect(tokComma, "',' or ')' in the argument list"); err != nil {
				return nil, err
			}
		}
		a, err := p.parseExpr(idents, depth+1)
		if err != nil {
			return nil, err
		}
		c.args = append(c.args, a)
	}
	if len(c.args) != arity {
		return nil, p.errorf(name.pos, "%s takes %d arguments, found %d", name.text, arity, len(c.args))
	}
	return c, p.advance()
}

// sectionVerbs lists the actions each section allows, from MAA's claim rule
// grammar table (issueproperty in configurationrules from its samples).
var sectionVerbs = map[section][]verb{
	secConfiguration: {verbIssueProperty},
	secAuthorization: {verbPermit, verbDeny, verbAdd},
	secIssuance:      {verbAdd, verbIssue, verbIssueProperty},
}

func (p *parser) parseAction(sec section, idents map[string]bool) (*action, error) {
	t := p.tok
	if t.kind != tokIdent {
		return nil, p.expected("an action (permit, deny, add, issue, issueproperty)")
	}
	a := &action{pos: t.pos}
	switch strings.ToLower(t.text) {
	case "permit":
		a.verb = verbPermit
	case "deny":
		a.verb = verbDeny
	case "add":
		a.verb = verbAdd
	case "issue":
		a.verb = verbIssue
	case "issueproperty":
		a.verb = verbIssueProperty
	default:
		return nil, p.errorf(t.pos, "unknown action %q: want permit, deny, add, issue or issueproperty", t.text)
	}
	allowed := false
	var names []string
	for _, v := range sectionVerbs[sec] {
		names = append(names, v.String()+"()")
		allowed = allowed || v == a.verb
	}
	if !allowed {
		return nil, p.errorf(t.pos, "%s() is not allowed in %s (allowed: %s)", a.verb, sec, strings.Join(names, ", "))
	}
	if err := p.advance(); err != nil {
		return nil, err
	}
	if _, err := p.expect(tokLParen, fmt.Sprintf("'(' after %s", a.verb)); err != nil {
		return nil, err
	}
	if a.verb == verbPermit || a.verb == verbDeny {
		if _, err := p.expect(tokRParen, fmt.Sprintf("')': %s() takes no arguments", a.verb)); err != nil {
			return nil, err
		}
		return a, nil
	}
	if err := p.parseClaimArgs(a, idents); err != nil {
		return nil, err
	}
	if sec == secConfiguration {
		if _, ok := a.typ.(*litExpr); !ok || a.claimRef != "" {
			return nil, p.errorf(a.pos, "configurationrules need literal arguments: issueproperty(type=\"NAME\", value=LITERAL)")
		}
		if _, ok := a.value.(*litExpr); !ok {
			return nil, p.errorf(a.value.exprPos(), "configurationrules need a literal value")
		}
	}
	return a, nil
}

// parseClaimArgs parses the claim of add/issue/issueproperty: "claim=c", or
// "type=EXPR, value=EXPR[, valueType=\"T\"]" in any order. A first
// positional string is read as the type because MAA's version 1.2 sample
// writes issue("PlatformAttested", value=true).
func (p *parser) parseClaimArgs(a *action, idents map[string]bool) error {
	first := true
	for p.tok.kind != tokRParen {
		if !first {
			if _, err := p.expect(tokComma, "',' or ')' in the claim arguments"); err != nil {
				return err
			}
		}
		if first && p.tok.kind == tokString {
			a.typ = &litExpr{pos: p.tok.pos, v: p.tok.text}
			if err := p.advance(); err != nil {
				return err
			}
			first = false
			continue
		}
		first = false
		nt := p.tok
		if nt.kind != tokIdent {
			return p.expected("a claim argument (type=, value=, valueType= or claim=)")
		}
		name := strings.ToLower(nt.text)
		if err := p.advance(); err != nil {
			return err
		}
		if _, err := p.expect(tokAssign, fmt.Sprintf("'=' after %s", nt.text)); err != nil {
			return err
		}
		switch name {
		case "claim":
			it := p.tok
			if it.kind != tokIdent {
				return p.expected("an identifier bound by a condition after claim=")
			}
			if !idents[it.text] {
				return p.errorf(it.pos, "identifier %q is not bound by a condition of this rule", it.text)
			}
			a.claimRef = it.text
			if err := p.advance(); err != nil {
				return err
			}
		case "type", "value":
			e, err := p.parseExpr(idents, 0)
			if err != nil {
				return err
			}
			if name == "type" {
				if a.typ != nil {
					return p.errorf(nt.pos, "type given twice")
				}
				a.typ = e
			} else {
				if a.value != nil {
					return p.errorf(nt.pos, "value given twice")
				}
				a.value = e
			}
		case "valuetype":
			vt := p.tok
			if vt.kind != tokString {
				return p.expected(`a quoted value type ("String", "Integer" or "Boolean")`)
			}
			switch vt.text {
			case "String", "Integer", "Boolean":
			default:
				return p.errorf(vt.pos, "unknown valueType %q: want \"String\", \"Integer\" or \"Boolean\"", vt.text)
			}
			a.valueType = vt.text
			if err := p.advance(); err != nil {
				return err
			}
		default:
			return p.errorf(nt.pos, "unknown claim argument %q: want type, value, valueType or claim", nt.text)
		}
	}
	closing := p.tok.pos
	if err := p.advance(); err != nil {
		return err
	}
	switch {
	case a.claimRef != "" && (a.typ != nil || a.value != nil):
		return p.errorf(a.pos, "%s(): claim= excludes type= and value=", a.verb)
	case a.claimRef == "" && a.typ == nil:
		return p.errorf(closing, "%s(): missing type= (or claim=)", a.verb)
	case a.claimRef == "" && a.value == nil:
		return p.errorf(closing, "%s(): missing value=", a.verb)
	}
	if l, ok := a.typ.(*litExpr); ok {
		if s, isStr := l.v.(string); !isStr || s == "" {
			return p.errorf(l.pos, "claim type must be a non-empty string, found %s", describeValue(l.v))
		}
	}
	if l, ok := a.value.(*litExpr); ok && a.valueType != "" && valueTypeOf(l.v) != a.valueType {
		return p.errorf(l.pos, "value %s is not of valueType %q", describeValue(l.v), a.valueType)
	}
	return nil
}

// configClaim turns a checked configuration rule into its property claim.
func configClaim(r *rule) (Claim, error) {
	a := r.action
	name := a.typ.(*litExpr).v.(string)
	v := a.value.(*litExpr)
	want, ok := configProps[name]
	if !ok {
		return Claim{}, &SyntaxError{Pos: a.pos, Msg: fmt.Sprintf("unknown configuration property %q (known: require_valid_aik_cert, required_pcr_mask, x-ms-sgx-tcbidentifier)", name)}
	}
	if valueTypeOf(v.v) != want {
		return Claim{}, &SyntaxError{Pos: v.pos, Msg: fmt.Sprintf("configuration property %s takes a %s, found %s", name, want, describeValue(v.v))}
	}
	return Claim{Type: name, Value: v.v, Issuer: IssuerPolicy}, nil
}

// describeValue names a value with its type, for messages.
func describeValue(v any) string {
	switch x := v.(type) {
	case string:
		return fmt.Sprintf("string %q", x)
	case int64:
		return fmt.Sprintf("integer %d", x)
	case bool:
		return fmt.Sprintf("boolean %t", x)
	case nil:
		return "no value"
	}
	return fmt.Sprintf("%T value", v)
}
