package maa

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzParse: no input makes Parse panic or hang; every failure is a
// SyntaxError or the size error; and what parses also evaluates without
// panicking over a small claim set. Seeded with MAA's documented samples.
func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.policy")
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(string(b))
	}
	f.Add(authz(`c:[type=="s"] && ![type=="x"] => add(type=AppendString(c.value, "-x"), value=NegateBool(true)); => permit();`))
	f.Add("version=1.1; configurationrules { => issueproperty(type=\"required_pcr_mask\", value=0xFF); }; authorizationrules { => deny(); };")
	claims := []Claim{
		svc("x-ms-sgx-is-debuggable", false), svc("x-ms-sgx-mrsigner", "mrsigner1"), svc("x-ms-sgx-svn", int64(3)),
		svc("$is-debuggable", true), svc("s", "abc"), svc("n", int64(5)), svc("secureBootEnabled", true),
	}
	f.Fuzz(func(t *testing.T, text string) {
		p, err := Parse(text)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "maa: ") {
				t.Fatalf("error without prefix: %v", err)
			}
			return
		}
		res, err := p.Evaluate(claims)
		if err == nil && !res.Permitted && len(res.Issued) > 0 {
			t.Fatalf("denied but issued %v", res.Issued)
		}
	})
}
