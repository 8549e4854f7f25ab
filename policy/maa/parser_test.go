package maa

import (
	"errors"
	"strings"
	"testing"
)

// pre wraps authorization rules in a minimal 1.2 policy.
func authz(rules string) string {
	return "version=1.2;\nauthorizationrules {\n" + rules + "\n};"
}

// TestParseConstructs: each construct of the grammar parses.
func TestParseConstructs(t *testing.T) {
	for _, src := range []string{
		"version=1.0; authorizationrules { => permit(); };",
		"VERSION = 1.0 ; AuthorizationRules { => Permit() ; } ;",
		"version= 1.2;\nauthorizationrules { => permit(); };\nissuancerules { };",
		"version=1.1; configurationrules { => issueproperty(type=\"required_pcr_mask\", value=0xFFFFFF); }; authorizationrules { => deny(); };",
		authz(`c:[type=="a", value==1] && [type=="b", value!=c.value] => permit();`),
		authz(`[type=="n", value<1] && [type=="n", value<=1] && [type=="n", value>1] && [type=="n", value>=-1] => permit();`),
		authz(`[type=="a", issuer=="AttestationService", valueType=="Boolean"] => permit();`),
		authz(`![type=="a"] => add(type="a", value=false);`),
		authz(`c:[type=="a"] => add(type=AppendString(c.type, "-copy"), value=NegateBool(c.value));`),
		authz(`c:[type=="a"] => add(claim=c);`),
		authz(`=> add(type="x", value="y", valueType="String");`),
		authz("// comment\n/* block\ncomment */ => permit(); // trailing"),
		authz(`=> add(type="esc", value="q\"b\\s\/n\nt\tr\r");`),
		authz(`=> add(type="$is-debuggable", value=true)`),
	} {
		if _, err := Parse(src); err != nil {
			t.Errorf("Parse(%q): %v", src, err)
		}
	}
}

// TestParseErrors: each error names the position and says what was
// expected. Positions are line:column, columns counted in characters.
func TestParseErrors(t *testing.T) {
	tests := []struct {
		src  string
		pos  Pos
		want string
	}{
		{"", Pos{1, 1}, `expected "version=1.0;"`},
		{"authorizationrules {};", Pos{1, 1}, `expected "version=1.0;"`},
		{"version 1.0;", Pos{1, 9}, "expected '=' after version, found number 1.0"},
		{"version=2.0;", Pos{1, 9}, "unsupported policy version 2.0"},
		{"version=1.0", Pos{1, 12}, "expected ';' after the version, found end of policy"},
		{"version=1.0;", Pos{1, 13}, "missing authorizationrules section"},
		{"version=1.0; issuancerules {};", Pos{1, 31}, "missing authorizationrules"},
		{"version=1.0;\nfoo {};", Pos{2, 1}, `expected a section (configurationrules, authorizationrules or issuancerules), found identifier "foo"`},
		{"version=1.0; authorizationrules { => permit(); }", Pos{1, 49}, "expected ';' after the closing '}' of authorizationrules"},
		{"version=1.0; authorizationrules { => permit();", Pos{1, 47}, "expected '}' to close authorizationrules"},
		{"version=1.0; authorizationrules {}; authorizationrules {};", Pos{1, 37}, "duplicate authorizationrules"},
		{"version=1.0; issuancerules {}; authorizationrules {};", Pos{1, 32}, "authorizationrules section must come before issuancerules"},
		{"version=1.0; configurationrules {}; authorizationrules {};", Pos{1, 14}, "configurationrules requires version=1.1"},
		{authz("=> frob();"), Pos{3, 4}, `unknown action "frob"`},
		{authz("=> issue(type=\"a\", value=1);"), Pos{3, 4}, "issue() is not allowed in authorizationrules (allowed: permit(), deny(), add())"},
		{"version=1.0; authorizationrules {}; issuancerules { => permit(); };", Pos{1, 56}, "permit() is not allowed in issuancerules"},
		{authz("=> permit(1);"), Pos{3, 11}, "expected ')': permit() takes no arguments, found number 1"},
		{authz(`[type=="a"] permit();`), Pos{3, 13}, "expected '=>' or '&&' after the conditions, found identifier \"permit\""},
		{authz(`[type=="a" value==1] => permit();`), Pos{3, 12}, `expected ',' or ']' in the condition, found identifier "value"`},
		{authz(`[] => permit();`), Pos{3, 2}, "empty condition []"},
		{authz(`[kind=="a"] => permit();`), Pos{3, 2}, `unknown claim property "kind"`},
		{authz(`[type<"a"] => permit();`), Pos{3, 6}, "type compares only with == or !="},
		{authz(`[type=="n", value<"a"] => permit();`), Pos{3, 19}, "'<' compares integers only, found string \"a\""},
		{authz(`[type==1] => permit();`), Pos{3, 8}, "type is a string, found integer 1"},
		{authz(`[type=="a", value==x] => permit();`), Pos{3, 20}, `unexpected identifier "x"`},
		{authz(`[type=="a", value==c.value] => permit();`), Pos{3, 20}, `identifier "c" is not bound`},
		{authz(`c:[type=="a"] && c:[type=="b"] => permit();`), Pos{3, 18}, `identifier "c" declared twice`},
		{authz(`!c:[type=="a"] => permit();`), Pos{3, 2}, "cannot bind identifier"},
		{"version=1.1; authorizationrules { ![type==\"a\"] => permit(); };", Pos{1, 35}, "the '!' condition requires version=1.2"},
		{"version=1.0; authorizationrules { c:[type==\"a\"] => add(type=\"b\", value=NegateBool(c.value)); };", Pos{1, 72}, "function calls require version=1.2"},
		{authz(`c:[type=="a"] => add(type="b", value=Frob(c.value));`), Pos{3, 38}, `unknown function "Frob"`},
		{authz(`c:[type=="a"] => add(type="b", value=NegateBool(c.value, 1));`), Pos{3, 38}, "NegateBool takes 1 arguments, found 2"},
		{authz(`=> add(value=1);`), Pos{3, 15}, "add(): missing type="},
		{authz(`=> add(type="a");`), Pos{3, 16}, "add(): missing value="},
		{authz(`=> add(type="", value=1);`), Pos{3, 13}, "claim type must be a non-empty string"},
		{authz(`=> add(type="a", value=1, valueType="String");`), Pos{3, 24}, `value integer 1 is not of valueType "String"`},
		{authz(`=> add(type="a", value=1, valueType="Float");`), Pos{3, 37}, `unknown valueType "Float"`},
		{authz(`=> add(type="a", colour=1);`), Pos{3, 18}, `unknown claim argument "colour"`},
		{authz(`=> add(claim=c);`), Pos{3, 14}, `identifier "c" is not bound`},
		{authz(`c:[type=="a"] => add(claim=c, value=1);`), Pos{3, 18}, "claim= excludes type= and value="},
		{authz(`=> add(type="a", value="unterminated);`), Pos{3, 24}, "unterminated string"},
		{authz(`=> add(type="a", value="bad \q");`), Pos{3, 29}, `unknown escape \q`},
		{authz(`=> add(type="a", value=99999999999999999999);`), Pos{3, 24}, "invalid integer 99999999999999999999"},
		{authz(`=> add(type="a", value=12ab);`), Pos{3, 24}, `malformed number "12a"`},
		{authz(`[type=="a"] & [type=="b"] => permit();`), Pos{3, 13}, `unexpected '&'`},
		{authz(`=> permit(); @`), Pos{3, 14}, `unexpected character '@'`},
		{authz("/* open"), Pos{3, 1}, "unterminated /* comment"},
		{"version=1.1; configurationrules { => issueproperty(type=\"colour\", value=1); }; authorizationrules {};", Pos{1, 38}, `unknown configuration property "colour"`},
		{"version=1.1; configurationrules { => issueproperty(type=\"required_pcr_mask\", value=true); }; authorizationrules {};", Pos{1, 84}, "required_pcr_mask takes a Integer, found boolean true"},
		{"version=1.1; configurationrules { [type==\"a\"] => issueproperty(type=\"required_pcr_mask\", value=1); }; authorizationrules {};", Pos{1, 35}, "configurationrules take no conditions"},
		{"version=1.2; configurationrules { => issueproperty(type=AppendString(\"a\",\"b\"), value=1); }; authorizationrules {};", Pos{1, 38}, "configurationrules need literal arguments"},
		{"version=1.0; authorizationrules { => permit(); };\n  \"é\" ", Pos{2, 3}, `expected a section`},
		{"version=1.0;\tauthorizationrules { é => permit(); };", Pos{1, 35}, "unexpected character 'é'"},
		{"version=1.0; authorizationrules { => add(type=\"a\", value=\"\xff\"); };", Pos{1, 59}, "invalid UTF-8"},
	}
	for _, tc := range tests {
		_, err := Parse(tc.src)
		var se *SyntaxError
		if !errors.As(err, &se) {
			t.Errorf("Parse(%q) = %v, want a SyntaxError", tc.src, err)
			continue
		}
		if se.Pos != tc.pos || !strings.Contains(se.Msg, tc.want) {
			t.Errorf("Parse(%q):\n got %s\nwant %s: ...%s...", tc.src, se.Error(), tc.pos, tc.want)
		}
		if !strings.HasPrefix(err.Error(), "maa: "+tc.pos.String()+": ") {
			t.Errorf("error %q lacks the \"maa: LINE:COL: \" prefix", err)
		}
	}
}

// TestParseLimits: the caps of limits.go are enforced at parse time.
func TestParseLimits(t *testing.T) {
	if _, err := Parse(strings.Repeat(" ", MaxPolicySize+1)); err == nil || !strings.Contains(err.Error(), "more than the") {
		t.Errorf("oversized policy: %v", err)
	}
	many := authz(strings.Repeat("=> permit();\n", MaxRules+1))
	if _, err := Parse(many); err == nil || !strings.Contains(err.Error(), "rules") {
		t.Errorf("too many rules: %v", err)
	}
	conds := strings.TrimSuffix(strings.Repeat(`[type=="a"] && `, MaxConditions+1), " && ")
	if _, err := Parse(authz(conds + " => permit();")); err == nil || !strings.Contains(err.Error(), "conditions in one rule") {
		t.Errorf("too many conditions: %v", err)
	}
	deep := strings.Repeat("NegateBool(", MaxExprDepth+2) + "true" + strings.Repeat(")", MaxExprDepth+2)
	if _, err := Parse(authz("=> add(type=\"a\", value=" + deep + ");")); err == nil || !strings.Contains(err.Error(), "nested") {
		t.Errorf("deep nesting: %v", err)
	}
	long := `"` + strings.Repeat("a", MaxStringLen+1) + `"`
	if _, err := Parse(authz("=> add(type=\"a\", value=" + long + ");")); err == nil || !strings.Contains(err.Error(), "string longer") {
		t.Errorf("long string: %v", err)
	}
}
