// Package maa parses and evaluates attestation policies written in the
// Microsoft Azure Attestation (MAA) policy grammar, so that policies written
// for MAA run unchanged on Cloister's attestation service. The parser and
// evaluator are our own; docs/maa-contract.md cites the MAA documentation
// they follow.
//
// Evaluation is the appraisal step of parse → verify → appraise: it reads
// claims (ClaimsFromEvidence maps verified evidence.Claims to MAA's claim
// names) and never checks signatures. Parse and Evaluate are pure: no I/O,
// no clock, bounded work (limits.go).
//
// # Grammar
//
//	policy     = "version" "=" VERSION ";" [config] authz [issuance]
//	config     = "configurationrules" "{" {rule} "}" ";"      (version ≥ 1.1)
//	authz      = "authorizationrules" "{" {rule} "}" ";"
//	issuance   = "issuancerules" "{" {rule} "}" ";"
//	rule       = [cond {"&&" cond}] "=>" action [";"]
//	cond       = ["!"] [IDENT ":"] "[" prop op expr {"," prop op expr} "]"
//	prop       = "type" | "value" | "issuer" | "valueType"
//	op         = "==" | "!=" | "<" | "<=" | ">" | ">="      ("=" reads as "==")
//	action     = ("permit" | "deny") "(" ")"
//	           | ("add" | "issue" | "issueproperty") "(" claimargs ")"
//	claimargs  = "claim" "=" IDENT
//	           | ["type" "="] expr "," "value" "=" expr ["," "valueType" "=" STRING]
//	expr       = STRING | INT | "true" | "false" | IDENT "." prop
//	           | FUNC "(" [expr {"," expr}] ")"              (version ≥ 1.2)
//
// VERSION is 1.0, 1.1 or 1.2. Keywords, property names and function names
// match case-insensitively; claim types and string values are compared
// exactly. INT is decimal or 0x hex, 64-bit signed. Comments are "//" to
// end of line and "/* */". Sections appear in the order above, at most
// once each; authorizationrules is required because without it nothing
// can be permitted.
//
// Sections allow these actions (MAA's claim rule grammar table):
// configurationrules issueproperty() only, without conditions and with
// literal arguments; authorizationrules permit(), deny(), add();
// issuancerules add(), issue(), issueproperty().
//
// # Semantics
//
// A condition holds when at least one claim in the current set satisfies
// all its property conditions; "!" (version 1.2) makes it hold when none
// does, and a negated condition cannot bind an identifier. "c:[...]" binds
// the matching claim so later conditions and the action can use c.value,
// c.type, c.issuer, c.valueType. Conditions join like a nested loop, and the
// action runs once per satisfying combination (bounded by MaxMatches).
// "==" needs equal types; "!=" is its negation; "<", "<=", ">", ">=" compare
// integers and are false for anything else.
//
// Authorization rules run in order; add() extends the claim set for later
// rules. Any deny() that fires denies; otherwise a permit() that fired
// permits; when no permit() fires the result is denied. Issuance rules run
// only when permitted, in order: add() extends the incoming set, issue()
// the incoming and outgoing sets (Result.Issued), issueproperty() the
// incoming and property sets (Result.Properties). Claims made by a policy
// carry issuer "AttestationPolicy"; issue(claim=c) copies c unchanged.
//
// # Configuration rules
//
// The documented properties are parsed and type-checked:
// require_valid_aik_cert (Boolean), required_pcr_mask (Integer) and
// x-ms-sgx-tcbidentifier (String). The first two apply to TPM/VBS
// attestation, which Cloister does not offer; the third names an Azure TCB
// baseline, whereas Cloister evaluates the TCB from Intel's collateral
// (tcb_status). All three are therefore accepted and ignored, and returned
// by Policy.Configuration. Any other property is a SyntaxError, so a
// misspelt setting is never silently dropped.
//
// # Not supported
//
// The version 1.2 functions JmesPath, JsonToClaimValue, IsSubsetOf,
// ContainsOnlyValue and NotContainsValue need MAA's JSON event-log claims
// and claim sets (TPM measured boot), which Cloister's evidence does not
// produce; Parse rejects them by name. AppendString and NegateBool are
// supported. The "CustomClaim" issuer has no source here.
package maa
