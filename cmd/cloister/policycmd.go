package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"sort"

	"github.com/cloister-dev/cloister/evidence"
	"github.com/cloister-dev/cloister/policy/maa"
	"github.com/cloister-dev/cloister/policy/rego"
)

const policyTestHelp = `Evaluate an attestation policy against claims, offline.

FILE is a policy in the MAA grammar (it starts with "version=1.x;") or a
Rego v1 module (it starts with "package cloister"); comments before either
are allowed. "-" reads FILE from standard input.

CLAIMS is a JSON object, either
  - MAA claim names to values, e.g. {"x-ms-sgx-mrsigner": "815f…",
    "x-ms-sgx-is-debuggable": false, "x-ms-sgx-svn": 3}; an array value is
    a set of claims of that name; or
  - the output of 'cloister verify evidence' (recognised by its "tee" and
    "report_data" fields), mapped to MAA's names by maa.ClaimsFromEvidence
    exactly as the attestation service maps it.
Every claim has issuer "AttestationService". A Rego policy sees the same
claims as its input object (name → value; an array for repeated names).

Output: the verdict as JSON, {"language", "permitted", "reason", "issued"}
for MAA and {"language", "permitted", "claims"} for Rego, on stdout when
permitted (exit 0). When denied the verdict goes to stderr with the reason
and the exit code is 1. A policy that does not parse or evaluate exits 1
with the error (line:column for MAA); a usage error exits 2.
`

// maxClaimsFile caps the claims JSON: real claim sets are a few KiB.
const maxClaimsFile = 1 << 20

// maxPolicyFile caps the policy file; both engines apply their own,
// equal caps too.
const maxPolicyFile = maa.MaxPolicySize

// policyVerdict is what "policy test" prints. Its fields are a contract
// (scripts read them), so they only ever gain optional members.
type policyVerdict struct {
	Language   string         `json:"language"`
	Permitted  bool           `json:"permitted"`
	Reason     string         `json:"reason,omitempty"`
	Issued     []maa.Claim    `json:"issued,omitempty"`
	Properties []maa.Claim    `json:"properties,omitempty"`
	Claims     map[string]any `json:"claims,omitempty"`
}

// runPolicyTest implements "cloister policy test".
func runPolicyTest(e *env, args []string) error {
	const path = "policy test"
	fs := newFlagSet(path, "FILE --claims CLAIMS.json", policyTestHelp)
	claimsFile := fs.String("claims", "", "claims `JSON` file (object of claim name → value, or 'verify evidence' output); \"-\" for stdin")
	file, err := parseOneArg(e, fs, args, "policy FILE")
	if err != nil {
		return err
	}
	switch {
	case *claimsFile == "":
		return usagef("missing --claims CLAIMS.json")
	case file == "-" && *claimsFile == "-":
		return usagef("FILE and --claims cannot both be standard input")
	}
	text, err := readBounded(e, file, maxPolicyFile)
	if err != nil {
		return fmt.Errorf("reading policy: %w", err)
	}
	rawClaims, err := readBounded(e, *claimsFile, maxClaimsFile)
	if err != nil {
		return fmt.Errorf("reading claims: %w", err)
	}
	claims, err := parseClaimsJSON(rawClaims)
	if err != nil {
		return fmt.Errorf("claims %s: %w", *claimsFile, err)
	}

	var v policyVerdict
	switch detectPolicyLanguage(string(text)) {
	case "maa":
		p, err := maa.Parse(string(text))
		if err != nil {
			return err
		}
		res, err := p.Evaluate(claims)
		if err != nil {
			return err
		}
		v = policyVerdict{Language: "maa", Permitted: res.Permitted, Reason: res.Reason, Issued: res.Issued, Properties: res.Properties}
	case "rego":
		p, err := rego.Compile(e.ctx, string(text))
		if err != nil {
			return err
		}
		res, err := p.Evaluate(e.ctx, maa.ClaimsObject(claims))
		if err != nil {
			return err
		}
		v = policyVerdict{Language: "rego", Permitted: res.Allow, Claims: res.Claims}
		if !res.Allow {
			v.Reason = "denied: data.cloister.allow is not true"
		}
	default:
		return errors.New(`cannot tell the policy language: want an MAA policy starting with "version=1.0;" or a Rego module starting with "package cloister"`)
	}

	out, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding the verdict: %w", err)
	}
	if !v.Permitted {
		// Standard output carries a result only on exit 0 (package doc),
		// so a denial's verdict goes to stderr next to the reason.
		fmt.Fprintf(e.stderr, "%s\n", out)
		return errors.New(v.Reason)
	}
	fmt.Fprintf(e.stdout, "%s\n", out)
	return nil
}

// readBounded reads name ("-" is stdin) up to limit bytes; more is an error
// rather than a truncated policy.
func readBounded(e *env, name string, limit int64) ([]byte, error) {
	var r io.Reader
	if name == "-" {
		r = e.stdin
	} else {
		f, err := os.Open(name)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		r = f
	}
	b, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%s: more than %d bytes", name, limit)
	}
	return b, nil
}

var (
	// leadingComments matches what may precede the first keyword: white
	// space, "#" comments (Rego) and "//" or "/* */" comments (MAA).
	leadingComments = regexp.MustCompile(`^(?:\s+|#[^\n]*|//[^\n]*|/\*(?s:.*?)\*/)*`)
	maaStart        = regexp.MustCompile(`(?i)^version\s*=`)
	regoStart       = regexp.MustCompile(`^package\s`)
)

// detectPolicyLanguage returns "maa", "rego" or "" from the first keyword.
func detectPolicyLanguage(text string) string {
	rest := text[len(leadingComments.FindString(text)):]
	switch {
	case maaStart.MatchString(rest):
		return "maa"
	case regoStart.MatchString(rest):
		return "rego"
	}
	return ""
}

// parseClaimsJSON reads a claims file: an object of MAA claim names, or
// 'cloister verify evidence' output, which is mapped with
// maa.ClaimsFromEvidence so the result matches the attestation service.
func parseClaimsJSON(data []byte) ([]maa.Claim, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber() // keep integers exact; maa normalises json.Number
	var obj map[string]any
	if err := dec.Decode(&obj); err != nil {
		return nil, fmt.Errorf("want a JSON object: %w", err)
	}
	if dec.More() {
		return nil, errors.New("trailing data after the JSON object")
	}
	if obj == nil {
		return nil, errors.New("want a JSON object, got null")
	}
	_, hasTEE := obj["tee"]
	_, hasRD := obj["report_data"]
	if hasTEE && hasRD {
		var c evidence.Claims
		if err := json.Unmarshal(data, &c); err != nil {
			return nil, fmt.Errorf("reading 'verify evidence' claims: %w", err)
		}
		return maa.ClaimsFromEvidence(&c), nil
	}
	names := make([]string, 0, len(obj))
	for k := range obj {
		names = append(names, k)
	}
	sort.Strings(names) // a deterministic order gives deterministic output
	var claims []maa.Claim
	for _, k := range names {
		vals := []any{obj[k]}
		if arr, ok := obj[k].([]any); ok {
			vals = arr
		}
		for _, v := range vals {
			claims = append(claims, maa.Claim{Type: k, Value: v, Issuer: maa.IssuerService})
		}
	}
	return claims, nil
}
