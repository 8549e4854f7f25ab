package tdx

import (
	"encoding/binary"
	"os"
	"testing"
)

// v5Of rewrites a v4 quote as v5 with a body descriptor of the given type
// (signatures no longer match; for the parser only).
func v5Of(v4 []byte, typ uint16, extra int) []byte {
	out := append([]byte{}, v4[:48]...)
	binary.LittleEndian.PutUint16(out, 5)
	size := Body10Size + extra
	out = binary.LittleEndian.AppendUint16(out, typ)
	out = binary.LittleEndian.AppendUint32(out, uint32(size))
	out = append(out, v4[48:48+Body10Size]...)
	out = append(out, make([]byte, extra)...)
	return append(out, v4[48+Body10Size:]...)
}

func vectors(tb testing.TB) [][]byte {
	var out [][]byte
	for _, p := range []string{"../../testdata/tdx/dcap-qvl_tdx_quote_v4.bin", "../../testdata/tdx/tdx_prod_quote_SPR_E4.dat"} {
		b, err := os.ReadFile(p)
		if err != nil {
			tb.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}

func TestParseV5(t *testing.T) {
	v4 := vectors(t)[0]
	q10, err := Parse(v5Of(v4, BodyType10, 0))
	if err != nil {
		t.Fatal(err)
	}
	if q10.BodyType != BodyType10 || q10.Body.MRServiceTD != nil || len(q10.signed) != 48+6+Body10Size {
		t.Errorf("v5 type 2: body type %d, signed %d bytes", q10.BodyType, len(q10.signed))
	}
	q15, err := Parse(v5Of(v4, BodyType15, Body15Size-Body10Size))
	if err != nil {
		t.Fatal(err)
	}
	if q15.BodyType != BodyType15 || q15.Body.MRServiceTD == nil || q15.Body.TEETCBSVN2 == nil || len(q15.signed) != 48+6+Body15Size {
		t.Errorf("v5 type 3: body type %d, signed %d bytes", q15.BodyType, len(q15.signed))
	}
	if q15.Body.MRTD != q10.Body.MRTD {
		t.Error("MRTD differs between the two layouts of the same body")
	}
	// A descriptor whose size disagrees with its type is rejected.
	bad := v5Of(v4, BodyType15, 0)
	if _, err := Parse(bad); err == nil {
		t.Error("v5 type 3 with a 584-byte body parses")
	}
}

// FuzzParse: no input may panic the parser.
func FuzzParse(f *testing.F) {
	for _, v := range vectors(f) {
		f.Add(v)
		f.Add(v5Of(v, BodyType10, 0))
		f.Add(v5Of(v, BodyType15, Body15Size-Body10Size))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		q, err := Parse(b)
		if err != nil {
			return
		}
		if q.Body == nil || q.Sig == nil || len(SignedRegion(b)) != len(q.signed) {
			t.Fatal("parsed quote is incomplete or disagrees with SignedRegion")
		}
	})
}
