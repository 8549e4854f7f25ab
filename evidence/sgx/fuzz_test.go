package sgx

import (
	"os"
	"testing"
)

// FuzzParse: no input may panic the parser, and whatever parses must
// re-derive the same signed region.
func FuzzParse(f *testing.F) {
	raw, err := os.ReadFile("../../testdata/sgx/dcap-qvl_sgx_quote_v3.bin")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(raw)
	f.Add(raw[:MinSize])
	f.Add(append(raw, 0, 0, 0))
	f.Fuzz(func(t *testing.T, b []byte) {
		q, err := Parse(b)
		if err != nil {
			return
		}
		if len(q.DCAP().Signed) != SignedSize || q.Report == nil || q.Sig == nil {
			t.Fatalf("parsed quote is incomplete")
		}
	})
}
