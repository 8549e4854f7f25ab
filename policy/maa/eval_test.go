package maa

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

func svc(typ string, v any) Claim { return Claim{Type: typ, Value: v, Issuer: IssuerService} }
func pol(typ string, v any) Claim { return Claim{Type: typ, Value: v, Issuer: IssuerPolicy} }

func mustParse(t *testing.T, src string) *Policy {
	t.Helper()
	p, err := Parse(src)
	if err != nil {
		t.Fatalf("Parse: %v\n%s", err, src)
	}
	return p
}

// TestEvaluate: one row per semantic rule of the package doc.
func TestEvaluate(t *testing.T) {
	base := []Claim{svc("n", int64(5)), svc("s", "abc"), svc("b", true), svc("dbg", false)}
	tests := []struct {
		name   string
		authz  string
		issue  string
		claims []Claim
		permit bool
		issued []Claim
		reason string
	}{
		{name: "no rules deny", authz: "", permit: false, reason: "no authorization rule permitted"},
		{name: "unconditional permit", authz: "=> permit();", permit: true, reason: "line 3"},
		{name: "permit needs a match", authz: `[type=="missing"] => permit();`, permit: false},
		{name: "deny overrides an earlier permit", authz: "=> permit();\n=> deny();", permit: false, reason: "deny() rule at line 4"},
		{name: "deny overrides a later permit", authz: `[type=="b", value==true] => deny(); => permit();`, permit: false},
		{name: "deny that does not fire", authz: `[type=="b", value==false] => deny(); => permit();`, permit: true},
		{name: "int equality", authz: `[type=="n", value==5] => permit();`, permit: true},
		{name: "int inequality", authz: `[type=="n", value!=5] => permit();`, permit: false},
		{name: "lt", authz: `[type=="n", value<5] => permit();`, permit: false},
		{name: "le", authz: `[type=="n", value<=5] => permit();`, permit: true},
		{name: "gt", authz: `[type=="n", value>4] => permit();`, permit: true},
		{name: "ge", authz: `[type=="n", value>=6] => permit();`, permit: false},
		{name: "hex literal", authz: `[type=="n", value==0x5] => permit();`, permit: true},
		{name: "string equality is exact", authz: `[type=="s", value=="ABC"] => permit();`, permit: false},
		{name: "string vs int never equal", authz: `[type=="s", value==5] => permit();`, permit: false},
		{name: "!= across types holds", authz: `[type=="s", value!=5] => permit();`, permit: true},
		{name: "ordering on a string claim is false", authz: `[type=="s", value>=0] => permit();`, permit: false},
		{name: "bool", authz: `[type=="dbg", value==false] => permit();`, permit: true},
		{name: "TRUE keyword any case", authz: `[type=="b", value==TRUE] => permit();`, permit: true},
		{name: "issuer", authz: `[type=="n", issuer=="AttestationPolicy"] => permit();`, permit: false},
		{name: "valueType", authz: `[type=="n", valueType=="Integer"] => permit();`, permit: true},
		{name: "&& all must hold", authz: `[type=="n", value==5] && [type=="s", value=="x"] => permit();`, permit: false},
		{name: "value on any claim", authz: `[value=="abc"] => permit();`, permit: true},
		{name: "binding across conditions", authz: `c:[type=="s"] && [type=="copy", value==c.value] => permit();`,
			claims: append(append([]Claim(nil), base...), svc("copy", "abc")), permit: true},
		{name: "binding mismatch", authz: `c:[type=="s"] && [type=="copy", value==c.value] => permit();`,
			claims: append(append([]Claim(nil), base...), svc("copy", "xyz")), permit: false},
		{name: "add feeds later authorization rules", authz: `[type=="n", value==5] => add(type="ok", value=true);
[type=="ok", value==true, issuer=="AttestationPolicy"] => permit();`, permit: true},
		{name: "add in authorization is not issued", authz: `=> add(type="x", value=1); => permit();`, permit: true, issued: nil},
		{name: "negation holds when absent", authz: `![type=="missing"] => permit();`, permit: true},
		{name: "negation fails when present", authz: `![type=="n"] => permit();`, permit: false},
		{name: "negation with property", authz: `![type=="n", value==6] => permit();`, permit: true},
		{name: "issue literal", authz: "=> permit();", issue: `=> issue(type="lvl", value=100);`, permit: true, issued: []Claim{pol("lvl", int64(100))}},
		{name: "issue copies value", authz: "=> permit();", issue: `c:[type=="s"] => issue(type="s2", value=c.value);`, permit: true, issued: []Claim{pol("s2", "abc")}},
		{name: "issue claim=c keeps issuer", authz: "=> permit();", issue: `c:[type=="n"] => issue(claim=c);`, permit: true, issued: []Claim{svc("n", int64(5))}},
		{name: "issue feeds later issuance", authz: "=> permit();", issue: `=> issue(type="a", value=1);
c:[type=="a", issuer=="AttestationPolicy"] => issue(type="b", value=c.value);`, permit: true, issued: []Claim{pol("a", int64(1)), pol("b", int64(1))}},
		{name: "add in issuance is not issued", authz: "=> permit();", issue: `=> add(type="a", value=1);
c:[type=="a"] => issue(type="b", value=c.value);`, permit: true, issued: []Claim{pol("b", int64(1))}},
		{name: "action per match", authz: "=> permit();", issue: `c:[type=="m"] => issue(type="out", value=c.value);`,
			claims: []Claim{svc("m", "1"), svc("m", "2")}, permit: true, issued: []Claim{pol("out", "1"), pol("out", "2")}},
		{name: "rule does not see its own adds", authz: "=> permit();", issue: `c:[type=="m"] => add(type="m", value=c.value);
c:[type=="m"] => issue(type="out", value=c.value);`,
			claims: []Claim{svc("m", "1")}, permit: true, issued: []Claim{pol("out", "1"), pol("out", "1")}},
		{name: "denied runs no issuance", authz: "", issue: `=> issue(type="x", value=1);`, permit: false},
		{name: "functions", authz: "=> permit();", issue: `c:[type=="s"] => issue(type=AppendString(c.value, "-x"), value=NegateBool(false));`,
			permit: true, issued: []Claim{pol("abc-x", true)}},
		{name: "claim-rule-grammar F1 example", claims: []Claim{
			{Type: "OSName", Value: "Windows", Issuer: "CustomClaim"}, svc("OSName", "Windows")},
			authz: "=> permit();",
			issue: `F1:[type=="OSName", issuer=="CustomClaim"] &&
C2:[type=="OSName", issuer=="AttestationService", value==F1.value] => issue(claim=C2);`,
			permit: true, issued: []Claim{svc("OSName", "Windows")}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			src := "version=1.2;\nauthorizationrules {\n" + tc.authz + "\n};\nissuancerules {\n" + tc.issue + "\n};"
			claims := tc.claims
			if claims == nil {
				claims = base
			}
			before := append([]Claim(nil), claims...)
			res, err := mustParse(t, src).Evaluate(claims)
			if err != nil {
				t.Fatal(err)
			}
			if res.Permitted != tc.permit {
				t.Fatalf("permitted = %v, want %v (%s)", res.Permitted, tc.permit, res.Reason)
			}
			if !reflect.DeepEqual(res.Issued, tc.issued) {
				t.Errorf("issued %v, want %v", res.Issued, tc.issued)
			}
			if tc.reason != "" && !strings.Contains(res.Reason, tc.reason) {
				t.Errorf("reason %q, want ...%s...", res.Reason, tc.reason)
			}
			if !reflect.DeepEqual(claims, before) {
				t.Errorf("Evaluate modified its input")
			}
		})
	}
}

// TestEvaluateIssueProperty: issueproperty in issuance produces a property,
// not an outgoing claim.
func TestEvaluateIssueProperty(t *testing.T) {
	p := mustParse(t, `version=1.0; authorizationrules { => permit(); };
issuancerules { => issueproperty(type="report_validity_in_minutes", value=1440); };`)
	res, err := p.Evaluate(nil)
	if err != nil || len(res.Issued) != 0 || !reflect.DeepEqual(res.Properties, []Claim{pol("report_validity_in_minutes", int64(1440))}) {
		t.Errorf("%v %+v", err, res)
	}
}

// TestEvaluateValues: incoming values of other Go types are normalised;
// non-integers and typeless claims are errors.
func TestEvaluateValues(t *testing.T) {
	p := mustParse(t, `version=1.0; authorizationrules { [type=="n", value==7] => permit(); };`)
	for _, v := range []any{7, int8(7), int16(7), int32(7), int64(7), uint8(7), uint16(7), uint32(7), uint(7), uint64(7), float64(7), json.Number("7")} {
		res, err := p.Evaluate([]Claim{svc("n", v)})
		if err != nil || !res.Permitted {
			t.Errorf("value %T(%v): %v %+v", v, v, err, res)
		}
	}
	for _, c := range []Claim{svc("n", 7.5), svc("n", uint64(1<<63)), svc("n", json.Number("1e400")), svc("", 1)} {
		if _, err := p.Evaluate([]Claim{c}); err == nil || !strings.HasPrefix(err.Error(), "maa: evaluate: ") {
			t.Errorf("claim %#v: got %v, want an error", c, err)
		}
	}
	// An object value (x-ms-runtime) can be issued but equals nothing.
	q := mustParse(t, `version=1.0; authorizationrules { [type=="rt", value=="x"] => deny(); => permit(); };
issuancerules { c:[type=="rt"] => issue(claim=c); };`)
	obj := map[string]any{"k": "v"}
	res, err := q.Evaluate([]Claim{svc("rt", obj)})
	if err != nil || !res.Permitted || !reflect.DeepEqual(res.Issued[0].Value, obj) {
		t.Errorf("object value: %v %+v", err, res)
	}
}

// TestEvaluateErrors: run-time type errors and the match cap are EvalErrors
// with positions, never panics or silent denials.
func TestEvaluateErrors(t *testing.T) {
	tests := []struct {
		src    string
		claims []Claim
		want   string
	}{
		{authz(`c:[type=="n"] => add(type="x", value=NegateBool(c.value));`), []Claim{svc("n", int64(1))}, "3:38: NegateBool needs a boolean, got integer 1"},
		{authz(`c:[type=="n"] => add(type="x", value=AppendString(c.value, "a"));`), []Claim{svc("n", int64(1))}, "AppendString needs two strings"},
		{authz(`c:[type=="n"] => add(type=c.value, value=1);`), []Claim{svc("n", int64(1))}, "claim type must be a non-empty string, got integer 1"},
		{authz(`c:[type=="n"] => add(type="x", value=c.value, valueType="String");`), []Claim{svc("n", int64(1))}, `not of valueType "String"`},
		{authz(`[type=="m"] && [type=="m"] && [type=="m"] => permit();`), repeatClaim(svc("m", "v"), 17), "more than 4096 claim combinations"},
		// Many matches then none: no match is ever produced, so only the
		// step budget stops the walk (17^8 combinations otherwise).
		{authz(strings.Repeat(`[type=="m"] && `, 8) + `[type=="none"] => permit();`), repeatClaim(svc("m", "v"), 17), "more than 1048576 claim comparisons"},
	}
	for _, tc := range tests {
		_, err := mustParse(t, tc.src).Evaluate(tc.claims)
		var ee *EvalError
		if !errors.As(err, &ee) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want an EvalError ...%s...", tc.src, err, tc.want)
		}
	}
	if _, err := (*Policy)(nil).Evaluate(nil); err == nil {
		t.Error("nil policy evaluated")
	}
	if _, err := mustParse(t, authz("=> permit();")).Evaluate(repeatClaim(svc("m", "v"), MaxClaims+1)); err == nil {
		t.Error("oversized claim set accepted")
	}
}

func repeatClaim(c Claim, n int) []Claim {
	out := make([]Claim, n)
	for i := range out {
		out[i] = c
	}
	return out
}

// TestEvaluateConcurrent: a Policy is immutable, so concurrent evaluations
// (the service's normal case) agree and race-free under -race.
func TestEvaluateConcurrent(t *testing.T) {
	p := mustParse(t, authz(`c:[type=="n"] => add(type="x", value=c.value); [type=="x", value==5] => permit();`))
	done := make(chan error, 8)
	for range 8 {
		go func() {
			for range 200 {
				res, err := p.Evaluate([]Claim{svc("n", int64(5))})
				if err != nil || !res.Permitted {
					done <- errors.New("unexpected result")
					return
				}
			}
			done <- nil
		}()
	}
	for range 8 {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
}

// TestEvaluateRoundedFloat: a float64 claim above 2^53 may already be
// rounded, so Evaluate refuses it instead of judging another number. The
// real Milan report's reported_tcb 0x4405000000000002 as a float64 is
// 0x4405000000000000 (bootloader SVN 0, not 2), which a policy pinning the
// exact TCB denied and a bound between the two judged wrongly. As int64,
// uint64 or json.Number the same value is exact and decides.
func TestEvaluateRoundedFloat(t *testing.T) {
	const tcb = 0x4405000000000002
	p := mustParse(t, fmt.Sprintf(`version=1.0; authorizationrules { [type=="reported_tcb", value==%d] => permit(); };`, tcb))
	_, err := p.Evaluate([]Claim{svc("reported_tcb", float64(tcb))})
	if err == nil || !strings.Contains(err.Error(), `"reported_tcb"`) || !strings.Contains(err.Error(), "2^53") {
		t.Errorf("float64(%#x): got %v, want an error naming the claim and 2^53", uint64(tcb), err)
	}
	for _, v := range []any{int64(tcb), uint64(tcb), json.Number(strconv.FormatUint(tcb, 10)), float64(1 << 53), float64(-(1 << 53))} {
		want := v != float64(1<<53) && v != float64(-(1<<53))
		res, err := p.Evaluate([]Claim{svc("reported_tcb", v)})
		if err != nil || res.Permitted != want {
			t.Errorf("%T(%v): %v, permitted %v, want %v", v, v, err, res.Permitted, want)
		}
	}
}
