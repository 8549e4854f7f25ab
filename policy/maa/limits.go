package maa

// Caps on what Parse accepts and what Evaluate does. A policy is uploaded by
// a tenant and claims come from evidence, so neither may make the service
// spend unbounded memory or time. All caps live here so they can be read and
// tuned together.
const (
	// MaxPolicySize is the largest policy text Parse accepts, in bytes.
	// MAA's documented policies are a few KiB; the largest documented TPM
	// samples are about 20 KiB.
	MaxPolicySize = 256 << 10
	// MaxRules caps the rules of all sections together.
	MaxRules = 1024
	// MaxConditions caps the conditions of one rule.
	MaxConditions = 32
	// MaxExprDepth caps nested function calls in one expression, so a
	// hostile policy cannot exhaust the parser's stack.
	MaxExprDepth = 16
	// MaxStringLen caps one string literal, in bytes.
	MaxStringLen = 16 << 10
	// MaxMatches caps how many claim combinations one rule may match.
	// Conditions join like a nested loop, so N conditions over a large
	// claim set could otherwise blow up; a rule exceeding the cap is an
	// evaluation error, never a silent truncation.
	MaxMatches = 4096
	// MaxSteps caps the claim comparisons of one evaluation. MaxMatches
	// alone is not enough: conditions that each match many claims, followed
	// by one that matches none, walk every combination without producing a
	// match.
	MaxSteps = 1 << 20
	// MaxClaims caps the claim set during evaluation (incoming claims plus
	// every add/issue), so rules that feed each other stay bounded.
	MaxClaims = 16384
)
