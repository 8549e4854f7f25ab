package maa

// The syntax tree Parse builds. It is unexported: callers get a *Policy and
// its behaviour, so the tree can change without breaking anyone.

// section identifies a policy section.
type section int

const (
	secConfiguration section = iota + 1
	secAuthorization
	secIssuance
)

func (s section) String() string {
	switch s {
	case secConfiguration:
		return "configurationrules"
	case secAuthorization:
		return "authorizationrules"
	case secIssuance:
		return "issuancerules"
	}
	return "unknown section"
}

// claimProp is a claim property a condition or reference can name.
type claimProp int

const (
	propType claimProp = iota + 1
	propValue
	propIssuer
	propValueType
)

func (p claimProp) String() string {
	switch p {
	case propType:
		return "type"
	case propValue:
		return "value"
	case propIssuer:
		return "issuer"
	case propValueType:
		return "valueType"
	}
	return "unknown property"
}

// verb is a rule's action.
type verb int

const (
	verbPermit verb = iota + 1
	verbDeny
	verbAdd
	verbIssue
	verbIssueProperty
)

func (v verb) String() string {
	switch v {
	case verbPermit:
		return "permit"
	case verbDeny:
		return "deny"
	case verbAdd:
		return "add"
	case verbIssue:
		return "issue"
	case verbIssueProperty:
		return "issueproperty"
	}
	return "unknown action"
}

// rule is "conditions => action;".
type rule struct {
	pos    Pos
	conds  []*condition
	action *action
}

// condition is "[!] [ident:] [ prop op expr, ... ]": it holds when some
// claim in the set satisfies every property condition (or, negated, when
// none does).
type condition struct {
	pos    Pos
	negate bool
	ident  string
	props  []*propCond
}

// propCond is one "prop op expr" inside a condition.
type propCond struct {
	pos  Pos
	prop claimProp
	op   tokenKind // tokEq, tokNe, tokLt, tokLe, tokGt, tokGe
	expr expr
}

// action is what a rule does when its conditions hold.
type action struct {
	pos  Pos
	verb verb
	// claimRef is set for the "claim=c" form: the bound claim is copied.
	claimRef string
	// typ and value are set for the "type=..., value=..." form.
	typ, value expr
	// valueType, when given, must match the value's type.
	valueType string
}

// expr is a literal, a claim property reference or a function call.
type expr interface{ exprPos() Pos }

type litExpr struct {
	pos Pos
	v   any // string, int64 or bool
}

type refExpr struct {
	pos   Pos
	ident string
	prop  claimProp
}

type callExpr struct {
	pos  Pos
	name string
	args []expr
}

func (e *litExpr) exprPos() Pos  { return e.pos }
func (e *refExpr) exprPos() Pos  { return e.pos }
func (e *callExpr) exprPos() Pos { return e.pos }
