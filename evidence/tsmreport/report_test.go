package tsmreport

import (
	"bytes"
	"encoding/hex"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func readVector(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "testdata", "snp", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// snpReport is a sev_guest report built from the shared SNP vectors: the
// real attestation report as outblob, the VCEK bytes standing in for the
// certificate table.
func snpReport(t testing.TB) *Report {
	return &Report{
		Provider: ProviderSNP,
		OutBlob:  readVector(t, "attestation.bin"),
		AuxBlob:  readVector(t, "vcek.testcer"),
	}
}

func TestRoundTrip(t *testing.T) {
	reports := map[string]*Report{
		"snp":         snpReport(t),
		"no auxblob":  {Provider: ProviderTDX, OutBlob: []byte{1, 2, 3}},
		"unknown":     {Provider: "arm_cca_guest", OutBlob: []byte{0}},
		"svsm":        {Provider: ProviderSNP, OutBlob: []byte{1}, AuxBlob: []byte{2}, ServiceProvider: "svsm", ManifestBlob: []byte{3, 4}},
		"svsm no mfs": {Provider: ProviderSNP, OutBlob: []byte{1}, ServiceProvider: "svsm"},
	}
	for name, want := range reports {
		t.Run(name, func(t *testing.T) {
			for enc, f := range map[string]func() ([]byte, error){"JSON": want.EncodeJSON, "CBOR": want.EncodeCBOR} {
				b, err := f()
				if err != nil {
					t.Fatalf("%s: %v", enc, err)
				}
				got, err := Parse(b)
				if err != nil {
					t.Fatalf("%s: Parse: %v", enc, err)
				}
				if !reflect.DeepEqual(got, want) {
					t.Errorf("%s: round trip = %+v, want %+v", enc, got, want)
				}
			}
		})
	}
}

// TestGolden freezes both encodings. The bytes are what Veraison's
// ratsd tokens.TSMReport writes for the same report (json.Marshal and
// fxamacker cbor.Marshal of a struct ordered auxblob, outblob, provider).
func TestGolden(t *testing.T) {
	r := &Report{Provider: "sev_guest", OutBlob: []byte{1, 2, 3}, AuxBlob: []byte{0xfb, 0xff}}
	j, err := r.EncodeJSON()
	if err != nil {
		t.Fatal(err)
	}
	// base64url, no padding: 0xfbff is "-_8", 0x010203 is "AQID".
	if want := `{"auxblob":"-_8","outblob":"AQID","provider":"sev_guest"}`; string(j) != want {
		t.Errorf("JSON = %s, want %s", j, want)
	}
	c, err := r.EncodeCBOR()
	if err != nil {
		t.Fatal(err)
	}
	want := strings.Join([]string{
		"a3",                   // map, 3 pairs
		"67", "617578626c6f62", // text(7) "auxblob"
		"42", "fbff", // bytes(2)
		"67", "6f7574626c6f62", // text(7) "outblob"
		"43", "010203", // bytes(3)
		"68", "70726f7669646572", // text(8) "provider"
		"69", "7365765f6775657374", // text(9) "sev_guest"
	}, "")
	if got := hex.EncodeToString(c); got != want {
		t.Errorf("CBOR = %s, want %s", got, want)
	}
}

func TestParseAccepts(t *testing.T) {
	tests := map[string]struct {
		in   string
		want Report
	}{
		"leading whitespace": {" \r\n\t{\"provider\":\"tdx_guest\",\"outblob\":\"AQ\"}\n", Report{Provider: "tdx_guest", OutBlob: []byte{1}}},
		"any key order":      {`{"outblob":"AQ","provider":"x"}`, Report{Provider: "x", OutBlob: []byte{1}}},
		"empty auxblob":      {`{"outblob":"AQ","provider":"x","auxblob":""}`, Report{Provider: "x", OutBlob: []byte{1}}},
		// docs/tsm-report.cddl declares the provider a bstr.
		"CBOR bstr provider": {hexCBOR("a2", "67", "6f7574626c6f62", "41", "01", "68", "70726f7669646572", "41", "78"), Report{Provider: "x", OutBlob: []byte{1}}},
		// The kernel emits the provider as a sysfs line (sysfs_emit "%s\n"),
		// go-configfs-tsm keeps the newline and Veraison's ratsd copies it
		// into its evidence: exactly one trailing newline is the line's end,
		// not part of the name.
		"JSON provider newline":  {`{"outblob":"AQ","provider":"sev_guest\n"}`, Report{Provider: "sev_guest", OutBlob: []byte{1}}},
		"JSON service newline":   {`{"outblob":"AQ","provider":"sev_guest\n","service_provider":"svsm\n"}`, Report{Provider: "sev_guest", OutBlob: []byte{1}, ServiceProvider: "svsm"}},
		"CBOR provider newline":  {hexCBOR("a2", "67", "6f7574626c6f62", "41", "01", "68", "70726f7669646572", "6a", "7464785f67756573740a"), Report{Provider: "tdx_guest", OutBlob: []byte{1}}},
		"CBOR bstr with newline": {hexCBOR("a2", "67", "6f7574626c6f62", "41", "01", "68", "70726f7669646572", "42", "780a"), Report{Provider: "x", OutBlob: []byte{1}}},
		// Keys need not be in canonical order.
		"CBOR key order": {hexCBOR("a2", "68", "70726f7669646572", "61", "78", "67", "6f7574626c6f62", "41", "01"), Report{Provider: "x", OutBlob: []byte{1}}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got, err := Parse([]byte(tc.in))
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if !reflect.DeepEqual(*got, tc.want) {
				t.Errorf("Parse = %+v, want %+v", *got, tc.want)
			}
		})
	}
}

func hexCBOR(parts ...string) string {
	b, err := hex.DecodeString(strings.Join(parts, ""))
	if err != nil {
		panic(err)
	}
	return string(b)
}

func TestParseRejects(t *testing.T) {
	tests := map[string]string{
		"empty":                  "",
		"whitespace":             "  \n",
		"JSON array":             `[]`,
		"JSON null":              `null`,
		"junk":                   `hello`,
		"JSON empty object":      `{}`,
		"JSON no provider":       `{"outblob":"AQ"}`,
		"JSON empty provider":    `{"outblob":"AQ","provider":""}`,
		"JSON no outblob":        `{"provider":"x"}`,
		"JSON empty outblob":     `{"outblob":"","provider":"x"}`,
		"JSON null outblob":      `{"outblob":null,"provider":"x"}`,
		"JSON null provider":     `{"outblob":"AQ","provider":null}`,
		"JSON number provider":   `{"outblob":"AQ","provider":1}`,
		"JSON duplicate key":     `{"outblob":"AQ","provider":"x","outblob":"Ag"}`,
		"JSON unknown key":       `{"outblob":"AQ","provider":"x","extra":"AQ"}`,
		"JSON key case":          `{"outblob":"AQ","Provider":"x"}`,
		"JSON padded base64":     `{"outblob":"AQ==","provider":"x"}`,
		"JSON std base64":        `{"outblob":"+/8","provider":"x"}`,
		"JSON trailing bits":     `{"outblob":"AR","provider":"x"}`,
		"JSON newline in base64": `{"outblob":"AQ\nID","provider":"x"}`,
		"JSON trailing data":     `{"outblob":"AQ","provider":"x"} {}`,
		"JSON trailing junk":     `{"outblob":"AQ","provider":"x"}x`,
		"JSON unterminated":      `{"outblob":"AQ","provider":"x"`,
		"JSON space in provider": `{"outblob":"AQ","provider":"sev guest"}`,
		"JSON two newlines":      `{"outblob":"AQ","provider":"sev_guest\n\n"}`,
		"JSON CRLF":              `{"outblob":"AQ","provider":"sev_guest\r\n"}`,
		"JSON only newline":      `{"outblob":"AQ","provider":"\n"}`,
		"JSON inner newline":     `{"outblob":"AQ","provider":"sev\nguest"}`,
		"JSON leading newline":   `{"outblob":"AQ","provider":"\nsev_guest"}`,
		"JSON newline then NUL":  `{"outblob":"AQ","provider":"sev_guest\n\u0000"}`,
		"JSON tab terminator":    `{"outblob":"AQ","provider":"sev_guest\t"}`,
		"JSON service two nl":    `{"outblob":"AQ","provider":"x","service_provider":"svsm\n\n"}`,
		"JSON long + newline":    `{"outblob":"AQ","provider":"` + strings.Repeat("a", MaxNameLen+1) + `\n"}`,
		"JSON stray manifest":    `{"outblob":"AQ","provider":"x","manifestblob":"AQ"}`,
		"JSON long provider":     `{"outblob":"AQ","provider":"` + strings.Repeat("a", MaxNameLen+1) + `"}`,
		"CBOR empty map":         hexCBOR("a0"),
		"CBOR array":             hexCBOR("82", "41", "01", "61", "78"),
		"CBOR indefinite map":    hexCBOR("bf", "67", "6f7574626c6f62", "41", "01", "68", "70726f7669646572", "61", "78", "ff"),
		"CBOR duplicate key":     hexCBOR("a3", "67", "6f7574626c6f62", "41", "01", "68", "70726f7669646572", "61", "78", "67", "6f7574626c6f62", "41", "02"),
		"CBOR unknown key":       hexCBOR("a3", "67", "6f7574626c6f62", "41", "01", "68", "70726f7669646572", "61", "78", "61", "7a", "41", "02"),
		"CBOR integer key":       hexCBOR("a3", "67", "6f7574626c6f62", "41", "01", "68", "70726f7669646572", "61", "78", "01", "41", "02"),
		"CBOR key case":          hexCBOR("a2", "67", "4f7574626c6f62", "41", "01", "68", "70726f7669646572", "61", "78"),
		"CBOR tagged":            hexCBOR("d9d9f7", "a2", "67", "6f7574626c6f62", "41", "01", "68", "70726f7669646572", "61", "78"),
		"CBOR tagged blob":       hexCBOR("a2", "67", "6f7574626c6f62", "c2", "41", "01", "68", "70726f7669646572", "61", "78"),
		"CBOR text outblob":      hexCBOR("a2", "67", "6f7574626c6f62", "61", "01", "68", "70726f7669646572", "61", "78"),
		"CBOR null outblob":      hexCBOR("a2", "67", "6f7574626c6f62", "f6", "68", "70726f7669646572", "61", "78"),
		"CBOR trailing byte":     hexCBOR("a2", "67", "6f7574626c6f62", "41", "01", "68", "70726f7669646572", "61", "78", "00"),
		"CBOR bad UTF-8":         hexCBOR("a2", "67", "6f7574626c6f62", "41", "01", "68", "70726f7669646572", "61", "ff"),
		"CBOR truncated":         hexCBOR("a2", "67", "6f7574626c6f62", "45", "01"),
		"CBOR huge length":       hexCBOR("a2", "67", "6f7574626c6f62", "5b", "ffffffffffffffff"),
	}
	for name, in := range tests {
		t.Run(name, func(t *testing.T) {
			r, err := Parse([]byte(in))
			if err == nil {
				t.Fatalf("Parse accepted %q as %+v", in, r)
			}
			if !strings.HasPrefix(err.Error(), "tsmreport: ") {
				t.Errorf("error %q lacks the tsmreport: prefix", err)
			}
		})
	}
	if _, err := Parse(make([]byte, MaxEncodedSize+1)); err == nil {
		t.Error("Parse accepted an oversized input")
	}
	_, err := Parse([]byte("hello"))
	if err == nil || !strings.Contains(err.Error(), "neither JSON") || !strings.Contains(err.Error(), "nor CBOR") {
		t.Errorf("junk error %v does not say both were tried", err)
	}
}

func TestEncodeRejects(t *testing.T) {
	for name, r := range map[string]*Report{
		"empty outblob":   {Provider: "x"},
		"empty provider":  {OutBlob: []byte{1}},
		"stray manifest":  {Provider: "x", OutBlob: []byte{1}, ManifestBlob: []byte{1}},
		"huge outblob":    {Provider: "x", OutBlob: make([]byte, MaxBlobSize+1)},
		"control in name": {Provider: "x\n", OutBlob: []byte{1}},
	} {
		if _, err := r.EncodeJSON(); err == nil {
			t.Errorf("%s: EncodeJSON accepted %+v", name, r)
		}
		if _, err := r.EncodeCBOR(); err == nil {
			t.Errorf("%s: EncodeCBOR accepted %+v", name, r)
		}
	}
}

// TestTruncations: no strict prefix of a valid encoding parses.
func TestTruncations(t *testing.T) {
	r := snpReport(t)
	for _, f := range []func() ([]byte, error){r.EncodeJSON, r.EncodeCBOR} {
		b, err := f()
		if err != nil {
			t.Fatal(err)
		}
		for n := 0; n < len(b); n++ {
			if _, err := Parse(b[:n]); err == nil {
				t.Fatalf("Parse accepted a %d-byte prefix of %d bytes", n, len(b))
			}
		}
	}
}

func FuzzParse(f *testing.F) {
	r := snpReport(f)
	for _, enc := range []func() ([]byte, error){r.EncodeJSON, r.EncodeCBOR} {
		b, err := enc()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`{"outblob":"AQ","provider":"x","service_provider":"svsm","manifestblob":"Ag"}`))
	// Real evidence as Veraison's ratsd writes it ("sev_guest\n"), and its
	// CBOR twin with the newline kept in the provider.
	f.Add(readVector(f, veraisonVector))
	f.Add([]byte(hexCBOR("a2", "67", "6f7574626c6f62", "41", "01", "68", "70726f7669646572", "6a", "7365765f67756573740a")))
	f.Fuzz(func(t *testing.T, data []byte) {
		got, err := Parse(data)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "tsmreport: ") {
				t.Fatalf("error %q lacks the tsmreport: prefix", err)
			}
			return
		}
		// Whatever parses encodes, and reads back the same, both ways.
		for _, enc := range []func() ([]byte, error){got.EncodeJSON, got.EncodeCBOR} {
			b, err := enc()
			if err != nil {
				t.Fatalf("re-encoding %+v: %v", got, err)
			}
			back, err := Parse(b)
			if err != nil {
				t.Fatalf("re-parsing %q: %v", b, err)
			}
			if !reflect.DeepEqual(back, got) {
				t.Fatalf("round trip changed %+v into %+v", got, back)
			}
		}
		// A JSON document that parses is the canonical one up to key
		// order and whitespace; the bytes of the blobs must survive.
		if bytes.HasPrefix(bytes.TrimLeft(data, " \t\r\n"), []byte("{")) && len(got.OutBlob) == 0 {
			t.Fatal("parsed JSON with an empty outblob")
		}
	})
}

// veraisonVector is real SEV-SNP tsm-report evidence from Veraison's
// services repository (testdata/README.md, snp/).
const veraisonVector = "veraison-sevsnp-tsm-report.json"

// TestVeraisonEvidence parses the real evidence: its provider is the
// kernel's "sev_guest\n", its outblob an SNP report, its auxblob the
// certificate table (VCEK, ASK and ARK entries).
func TestVeraisonEvidence(t *testing.T) {
	data := readVector(t, veraisonVector)
	if !bytes.Contains(data, []byte(`"provider":"sev_guest\n"`)) {
		t.Fatal("the vector no longer carries the kernel's newline")
	}
	r, err := Parse(data)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if r.Provider != ProviderSNP || len(r.OutBlob) != 1184 || len(r.AuxBlob) != 6577 || r.ServiceProvider != "" || r.ManifestBlob != nil {
		t.Errorf("Parse = provider %q, outblob %d bytes, auxblob %d bytes, service %q, manifest %d bytes",
			r.Provider, len(r.OutBlob), len(r.AuxBlob), r.ServiceProvider, len(r.ManifestBlob))
	}
}
