package manifest

import (
	"bytes"
	"testing"
)

// FuzzParse: no input crashes Parse, and whatever it accepts is a manifest
// that marshals and parses back to the same bytes (so a file the direct
// test mode would run is one Cloister could have written).
func FuzzParse(f *testing.F) {
	f.Add(buildEcho(f))
	o := echoOptions()
	o.Args, o.Passthrough = nil, nil
	m, err := Build(o)
	if err != nil {
		f.Fatal(err)
	}
	plain, err := m.Marshal()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(plain)
	f.Add([]byte("[sgx]\ndebug = true\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := Parse(data)
		if err != nil {
			return
		}
		out, err := m.Marshal()
		if err != nil {
			t.Fatalf("an accepted manifest does not marshal: %v", err)
		}
		m2, err := Parse(out)
		if err != nil {
			t.Fatalf("a re-marshalled manifest does not parse: %v\n%s", err, out)
		}
		out2, err := m2.Marshal()
		if err != nil || !bytes.Equal(out, out2) {
			t.Fatalf("marshal is not stable: %v", err)
		}
	})
}
