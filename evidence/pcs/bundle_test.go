package pcs

import (
	"bytes"
	"encoding/json"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestParseBundleRealVectors parses dcap-qvl's two collateral files, decodes
// them and checks the decoded material against testdata/README.md: chain
// subjects, signature sizes, CRL issuers and dates, and that every
// signature in them verifies over the bytes DecodeUnverified returns (so nothing was
// re-serialised on the way).
func TestParseBundleRealVectors(t *testing.T) {
	tests := []struct {
		file          string
		tcbID         string
		pckCRLIssuer  string
		pckCRLNext    time.Time
		pckCRLEntries int
	}{
		{
			file:          sgxBundleFile,
			tcbID:         `{"id":"SGX","version":3,`,
			pckCRLIssuer:  "Intel SGX PCK Processor CA",
			pckCRLNext:    time.Date(2025, 7, 19, 10, 23, 18, 0, time.UTC),
			pckCRLEntries: 0,
		},
		{
			file:          tdxBundleFile,
			tcbID:         `{"id":"TDX","version":3,`,
			pckCRLIssuer:  "Intel SGX PCK Platform CA",
			pckCRLNext:    time.Date(2025, 7, 19, 10, 0, 35, 0, time.UTC),
			pckCRLEntries: 44,
		},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			b, err := ParseBundle(readVector(t, tt.file))
			if err != nil {
				t.Fatal(err)
			}
			d, err := b.DecodeUnverified()
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(string(d.TCBInfo), tt.tcbID) {
				t.Errorf("TCBInfo starts %q, want %q", d.TCBInfo[:30], tt.tcbID)
			}
			if !bytes.Equal(d.TCBInfo, []byte(b.TCBInfo)) || !bytes.Equal(d.QEIdentity, []byte(b.QEIdentity)) {
				t.Error("DecodeUnverified changed the signed text")
			}
			wantSigning := []string{"Intel SGX TCB Signing", "Intel SGX Root CA"}
			if got := subjects(d.TCBInfoChain); !slices.Equal(got, wantSigning) {
				t.Errorf("TCBInfoChain = %q, want %q", got, wantSigning)
			}
			if got := subjects(d.QEIdentityChain); !slices.Equal(got, wantSigning) {
				t.Errorf("QEIdentityChain = %q, want %q", got, wantSigning)
			}
			wantPCK := []string{tt.pckCRLIssuer, "Intel SGX Root CA"}
			if got := subjects(d.PCKCRLChain); !slices.Equal(got, wantPCK) {
				t.Errorf("PCKCRLChain = %q, want %q", got, wantPCK)
			}
			verifyRS(t, "tcb_info", d.TCBInfoChain[0], d.TCBInfo, d.TCBInfoSignature)
			verifyRS(t, "qe_identity", d.QEIdentityChain[0], d.QEIdentity, d.QEIdentitySignature)

			pck := parseCRL(t, "pck_crl", d.PCKCRL)
			if pck.Issuer.CommonName != tt.pckCRLIssuer || !pck.NextUpdate.Equal(tt.pckCRLNext) || len(pck.RevokedCertificateEntries) != tt.pckCRLEntries {
				t.Errorf("PCK CRL: issuer %q nextUpdate %v entries %d, want %q %v %d",
					pck.Issuer.CommonName, pck.NextUpdate, len(pck.RevokedCertificateEntries), tt.pckCRLIssuer, tt.pckCRLNext, tt.pckCRLEntries)
			}
			if err := pck.CheckSignatureFrom(d.PCKCRLChain[0]); err != nil {
				t.Errorf("PCK CRL signature: %v", err)
			}
			root := parseCRL(t, "root_ca_crl", d.RootCACRL)
			wantRootNext := time.Date(2026, 4, 3, 11, 21, 57, 0, time.UTC)
			if root.Issuer.CommonName != "Intel SGX Root CA" || !root.NextUpdate.Equal(wantRootNext) {
				t.Errorf("root CRL: issuer %q nextUpdate %v", root.Issuer.CommonName, root.NextUpdate)
			}
			if err := root.CheckSignatureFrom(d.PCKCRLChain[1]); err != nil {
				t.Errorf("root CRL signature: %v", err)
			}
		})
	}
}

// TestBundleMarshalRoundTrip checks ParseBundle(Marshal(b)) == b for both
// real bundles, that Marshal writes the keys in field order, and that a
// second Marshal is byte-identical (the output is deterministic).
func TestBundleMarshalRoundTrip(t *testing.T) {
	for _, file := range []string{sgxBundleFile, tdxBundleFile} {
		t.Run(file, func(t *testing.T) {
			b, err := ParseBundle(readVector(t, file))
			if err != nil {
				t.Fatal(err)
			}
			out, err := b.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			b2, err := ParseBundle(out)
			if err != nil {
				t.Fatalf("ParseBundle(Marshal()): %v", err)
			}
			if *b2 != *b {
				t.Error("round trip changed the bundle")
			}
			out2, err := b2.Marshal()
			if err != nil || !bytes.Equal(out, out2) {
				t.Errorf("second Marshal differs (err %v)", err)
			}
			last := -1
			for _, f := range b.fields() {
				i := bytes.Index(out, []byte("\n  \""+f.key+"\": "))
				if i < 0 {
					t.Fatalf("key %q not found at indentation 2 in %s", f.key, out[:200])
				}
				if i < last {
					t.Errorf("key %q out of order", f.key)
				}
				last = i
			}
			if !bytes.HasSuffix(out, []byte("}\n")) {
				t.Error("Marshal output does not end in a newline")
			}
		})
	}
}

// TestBundleFieldsMatchTags keeps fields() and the struct tags in step:
// same keys, same order, optional exactly where the tag says omitempty.
func TestBundleFieldsMatchTags(t *testing.T) {
	var b Bundle
	typ := reflect.TypeOf(b)
	fields := b.fields()
	if typ.NumField() != len(fields) {
		t.Fatalf("Bundle has %d fields, fields() lists %d", typ.NumField(), len(fields))
	}
	for i, f := range fields {
		tag := typ.Field(i).Tag.Get("json")
		name, opts, _ := strings.Cut(tag, ",")
		if name != f.key {
			t.Errorf("field %d: tag %q, fields() says %q", i, name, f.key)
		}
		if (opts == "omitempty") == f.required {
			t.Errorf("field %q: tag options %q but required=%v", f.key, opts, f.required)
		}
	}
}

// TestParseBundleMalformed feeds broken bundles and checks each gives a
// typed Malformed error that names the problem.
func TestParseBundleMalformed(t *testing.T) {
	valid := readVector(t, sgxBundleFile)
	var m map[string]string
	if err := json.Unmarshal(valid, &m); err != nil {
		t.Fatal(err)
	}
	// with returns the valid bundle with key set to v (a JSON value), or
	// removed when v is "".
	with := func(key, v string) []byte {
		obj := map[string]json.RawMessage{}
		for k, s := range m {
			raw, _ := json.Marshal(s)
			obj[k] = raw
		}
		if v == "" {
			delete(obj, key)
		} else {
			obj[key] = json.RawMessage(v)
		}
		out, err := json.Marshal(obj)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	tests := []struct {
		name string
		in   []byte
		want string
	}{
		{"empty", nil, "pcs: bundle: truncated JSON"},
		{"whitespace", []byte(" \n"), "pcs: bundle: truncated JSON"},
		{"truncated", valid[:len(valid)/2], "pcs: bundle: truncated JSON"},
		{"truncated before close", bytes.TrimRight(valid, "}\n"), "pcs: bundle: truncated JSON"},
		{"array", []byte(`[]`), "pcs: bundle: want a JSON object"},
		{"string", []byte(`"x"`), "pcs: bundle: want a JSON object"},
		{"trailing junk", append(bytes.Clone(valid), 'x'), "pcs: bundle: trailing data"},
		{"trailing object", append(bytes.Clone(valid), "{}"...), "pcs: bundle: trailing data"},
		{"invalid JSON", []byte(`{"tcb_info" "x"}`), "pcs: bundle: invalid JSON"},
		{"invalid UTF-8", append([]byte(`{"tcb_info":"`), 0xff, '"', '}'), "pcs: bundle: not valid UTF-8"},
		{"unknown key", with("tcb_info_x", `"x"`), `pcs: bundle: unknown key "tcb_info_x"`},
		{"duplicate key", append([]byte(`{"root_ca_crl":"","root_ca_crl":""`), valid[1:]...), `pcs: bundle: duplicate key "root_ca_crl"`},
		{"missing tcb_info", with("tcb_info", ""), "pcs: tcb_info: missing"},
		{"missing qe_identity_issuer_chain", with("qe_identity_issuer_chain", ""), "pcs: qe_identity_issuer_chain: missing"},
		{"empty tcb_info_signature", with("tcb_info_signature", `""`), "pcs: tcb_info_signature: empty"},
		{"number", with("tcb_info_signature", `12`), "pcs: tcb_info_signature: want a JSON string"},
		{"null", with("pck_crl", `null`), "pcs: pck_crl: want a JSON string"},
		{"object", with("tcb_info", `{"id":"SGX"}`), "pcs: tcb_info: want a JSON string"},
		{"pck_certificate_chain not a string", with(pckCertificateChainKey, `1`), "pcs: pck_certificate_chain: want a JSON string"},
		{"oversized", append(bytes.Clone(valid), bytes.Repeat([]byte(" "), maxBundleSize)...), "larger than the 1048576-byte limit"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := ParseBundle(tt.in)
			if b != nil {
				t.Error("got a bundle with an error")
			}
			wantMalformed(t, err, tt.want)
		})
	}
}

// TestParseBundleOptionalKeys checks what may be left out: the CRL fields
// (verification then decides whether that is allowed), and dcap-qvl's
// pck_certificate_chain, which is accepted and ignored.
func TestParseBundleOptionalKeys(t *testing.T) {
	valid := readVector(t, tdxBundleFile)
	var m map[string]string
	if err := json.Unmarshal(valid, &m); err != nil {
		t.Fatal(err)
	}
	delete(m, "pck_crl")
	delete(m, "pck_crl_issuer_chain")
	delete(m, "root_ca_crl")
	m[pckCertificateChainKey] = "ignored"
	in, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	b, err := ParseBundle(in)
	if err != nil {
		t.Fatal(err)
	}
	if b.PCKCRL != "" || b.RootCACRL != "" || b.PCKCRLIssuerChain != "" {
		t.Error("absent CRL fields are not empty")
	}
	d, err := b.DecodeUnverified()
	if err != nil {
		t.Fatal(err)
	}
	if d.PCKCRL != nil || d.RootCACRL != nil || d.PCKCRLChain != nil {
		t.Error("absent CRLs decode to non-nil")
	}
	out, err := b.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"pck_crl", "root_ca_crl", pckCertificateChainKey} {
		if bytes.Contains(out, []byte(`"`+k+`"`)) {
			t.Errorf("Marshal wrote absent key %q", k)
		}
	}
}

// TestParseBundleRejectsEveryTruncation checks that no strict prefix of a
// bundle, up to its closing brace, parses: every prefix of a small bundle,
// and every prefix near the ends plus a spread in the middle of a real one
// (all 14 000 prefixes of the real file would cost O(n²) time under -race).
func TestParseBundleRejectsEveryTruncation(t *testing.T) {
	small := Bundle{TCBInfo: "{}", TCBInfoSignature: "00", TCBInfoIssuerChain: "c",
		QEIdentity: "{}", QEIdentitySignature: "00", QEIdentityIssuerChain: "c",
		PCKCRL: "00", PCKCRLIssuerChain: "c", RootCACRL: "00"}
	smallJSON, err := small.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ParseBundle(smallJSON); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name string
		data []byte
		all  bool
	}{
		{"small", smallJSON, true},
		{"real", readVector(t, sgxBundleFile), false},
	} {
		end := bytes.LastIndexByte(tt.data, '}')
		for i := 0; i <= end; i++ {
			if !tt.all && i > 512 && end-i > 512 && i%31 != 0 {
				continue
			}
			if _, err := ParseBundle(tt.data[:i]); err == nil {
				t.Fatalf("%s: prefix of %d bytes parsed", tt.name, i)
			}
		}
	}
}

// TestMarshalRefuses checks that Marshal never writes a bundle that
// ParseBundle would refuse, nor one whose signed text it would change.
func TestMarshalRefuses(t *testing.T) {
	b, err := ParseBundle(readVector(t, sgxBundleFile))
	if err != nil {
		t.Fatal(err)
	}
	missing := *b
	missing.QEIdentity = ""
	_, err = missing.Marshal()
	wantMalformed(t, err, "pcs: qe_identity: missing")

	badUTF8 := *b
	badUTF8.TCBInfo = b.TCBInfo[:10] + "\xff" + b.TCBInfo[10:]
	_, err = badUTF8.Marshal()
	wantMalformed(t, err, "pcs: tcb_info: not valid UTF-8")
}

// TestMarshalGolden freezes the bundle file format Marshal writes: key
// order, two-space indentation, '<', '>' and '&' kept as they are, absent
// optional keys left out, a final newline. Bundles cross tool boundaries,
// so a change here is a format change.
func TestMarshalGolden(t *testing.T) {
	b := Bundle{
		TCBInfo:               `{"id":"<&>"}`,
		TCBInfoSignature:      "01",
		TCBInfoIssuerChain:    "-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n",
		QEIdentity:            `{"id":"QE"}`,
		QEIdentitySignature:   "02",
		QEIdentityIssuerChain: "c",
		RootCACRL:             "3000",
	}
	const want = `{
  "tcb_info": "{\"id\":\"<&>\"}",
  "tcb_info_signature": "01",
  "tcb_info_issuer_chain": "-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n",
  "qe_identity": "{\"id\":\"QE\"}",
  "qe_identity_signature": "02",
  "qe_identity_issuer_chain": "c",
  "root_ca_crl": "3000"
}
`
	got, err := b.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != want {
		t.Errorf("Marshal =\n%s\nwant\n%s", got, want)
	}
}
