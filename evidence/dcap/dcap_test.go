package dcap

import (
	"encoding/asn1"
	"encoding/binary"
	"encoding/json"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/cloister-dev/cloister/evidence/internal/verr"
	"github.com/cloister-dev/cloister/evidence/pcs"
	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

func readBundle(tb testing.TB, path string) *pcs.Bundle {
	tb.Helper()
	data, err := os.ReadFile("../../testdata/" + path)
	if err != nil {
		tb.Fatal(err)
	}
	b, err := pcs.ParseBundle(data)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

func pckChainCerts(tb testing.TB) [][]byte {
	tb.Helper()
	var out [][]byte
	for _, p := range []string{"sgx/dcap-qvl_sgx_quote_v3.bin", "tdx/dcap-qvl_tdx_quote_v4.bin", "tdx/tdx_prod_quote_SPR_E4.dat"} {
		raw, err := os.ReadFile("../../testdata/" + p)
		if err != nil {
			tb.Fatal(err)
		}
		i := strings.Index(string(raw), "-----BEGIN CERTIFICATE-----")
		certs, err := ParsePEMChain(raw[i:], "chain")
		if err != nil {
			// The PEM chain runs to the end of the certification data;
			// the padding after it is ignored by trimming at the last END.
			j := strings.LastIndex(string(raw), "-----END CERTIFICATE-----") + len("-----END CERTIFICATE-----")
			if certs, err = ParsePEMChain(raw[i:j], "chain"); err != nil {
				tb.Fatal(err)
			}
		}
		for _, e := range certs[0].Extensions {
			if e.Id.Equal(oidSGXExtensions) {
				out = append(out, e.Value)
			}
		}
	}
	return out
}

// The converged status follows Intel's quote verification library.
func TestConverge(t *testing.T) {
	for _, tc := range []struct{ platform, other, want string }{
		{UpToDate, UpToDate, UpToDate},
		{SWHardeningNeeded, UpToDate, SWHardeningNeeded},
		{UpToDate, OutOfDate, OutOfDate},
		{SWHardeningNeeded, OutOfDate, OutOfDate},
		{ConfigurationNeeded, OutOfDate, OutOfDateConfigurationNeeded},
		{ConfigurationAndSWHardeningNeeded, OutOfDate, OutOfDateConfigurationNeeded},
		{OutOfDate, OutOfDate, OutOfDate},
		{UpToDate, Revoked, Revoked},
		{ConfigurationNeeded, Revoked, Revoked},
		{Revoked, UpToDate, Revoked},
		{ConfigurationNeeded, SWHardeningNeeded, ConfigurationNeeded},
	} {
		if got := converge(tc.platform, tc.other); got != tc.want {
			t.Errorf("converge(%s, %s) = %s; want %s", tc.platform, tc.other, got, tc.want)
		}
	}
}

func TestMatchPlatformLevel(t *testing.T) {
	tdx := [16]byte{5, 0, 2}
	ti := &TCBInfo{Levels: []TCBLevel{
		{SGXComponents: [16]byte{2, 2}, PCESVN: 11, TDXComponents: &tdx, Status: UpToDate},
		{SGXComponents: [16]byte{1, 1}, PCESVN: 5, TDXComponents: &[16]byte{}, Status: OutOfDate},
	}}
	pck := &PCKExtensions{CompSVN: [16]byte{3, 3}, PCESVN: 11}
	for _, tc := range []struct {
		name string
		tee  [16]byte
		pck  *PCKExtensions
		want string
	}{
		// Module version 1 > 0: indexes 0 and 1 are judged by the module identity.
		{"module version set skips 0 and 1", [16]byte{0, 1, 3}, pck, UpToDate},
		{"module version 0 compares all", [16]byte{4, 0, 3}, pck, OutOfDate},
		{"TDX component 2 too low", [16]byte{6, 1, 1}, pck, OutOfDate},
		{"PCESVN too low for level 0", [16]byte{6, 1, 3}, &PCKExtensions{CompSVN: [16]byte{3, 3}, PCESVN: 10}, OutOfDate},
	} {
		_, l, err := matchPlatformLevel(ti, tc.pck, &tc.tee)
		if err != nil || l.Status != tc.want {
			t.Errorf("%s: %v %v; want %s", tc.name, l, err, tc.want)
		}
	}
	_, _, err := matchPlatformLevel(ti, &PCKExtensions{CompSVN: [16]byte{0, 0}, PCESVN: 11}, nil)
	if r, _ := verr.ReasonOf(err); r != verr.TCBNotSupported || !strings.Contains(err.Error(), "TCB level not supported") {
		t.Errorf("no matching level: %v", err)
	}
}

func TestMatchQE(t *testing.T) {
	qi := &QEIdentity{ISVProdID: 1, AttributesMask: [16]byte{0xff}, Attributes: [16]byte{0x11},
		Levels: []SVNLevel{{ISVSVN: 8, Status: UpToDate}, {ISVSVN: 6, Status: OutOfDate, AdvisoryIDs: []string{"INTEL-SA-00615"}}}}
	qe := &EnclaveReport{ISVProdID: 1, Attributes: [16]byte{0x11}}
	for svn, want := range map[uint16]string{10: UpToDate, 8: UpToDate, 7: OutOfDate, 6: OutOfDate} {
		qe.ISVSVN = svn
		l, err := matchQE(qi, qe)
		if err != nil || l == nil || l.Status != want {
			t.Errorf("ISVSVN %d: %v %v; want %s", svn, l, err, want)
		}
	}
	// Below every level: Intel's "TCB not supported", not a level.
	qe.ISVSVN = 5
	if l, err := matchQE(qi, qe); l != nil || err != nil {
		t.Errorf("ISVSVN 5: %v %v; want no level", l, err)
	}
	qe.Attributes[0] = 0x13
	if _, err := matchQE(qi, qe); err == nil {
		t.Error("masked attributes mismatch accepted")
	}
	qe.Attributes[0], qe.ISVProdID = 0x11, 2
	if _, err := matchQE(qi, qe); err == nil {
		t.Error("ISVPRODID mismatch accepted")
	}
}

func TestPCKExtensions(t *testing.T) {
	exts := pckChainCerts(t)
	if len(exts) != 3 {
		t.Fatalf("%d SGX extensions found; want 3", len(exts))
	}
	p, err := parseSGXExtensionValue(exts[0])
	if err != nil {
		t.Fatal(err)
	}
	// testdata/README.md, sgx/: the PCK certificate's TCB.
	if p.FMSPC != [6]byte{0x00, 0xa0, 0x67, 0x11, 0, 0} || p.PCESVN != 13 || p.CompSVN != [16]byte{11, 11, 2, 2, 255, 1} || p.SGXType != 0 {
		t.Errorf("SGX PCK: %v", p)
	}
	q, err := parseSGXExtensionValue(exts[2])
	if err != nil {
		t.Fatal(err)
	}
	if q.FMSPC != [6]byte{0x50, 0x80, 0x6f, 0, 0, 0} || q.PCESVN != 11 || q.CompSVN != [16]byte{3, 3, 2, 2, 2, 1, 0, 2} {
		t.Errorf("SPR PCK: %v", q)
	}
	for n := range len(exts[0]) {
		if _, err := parseSGXExtensionValue(exts[0][:n]); err == nil {
			t.Fatalf("prefix of %d bytes parses", n)
		}
	}
}

func TestCollateralJSONIsStrict(t *testing.T) {
	b := readBundle(t, "sgx/dcap-qvl_sgx_quote_v3_collateral.json")
	if _, err := ParseTCBInfo([]byte(b.TCBInfo + " {}")); err == nil {
		t.Error("trailing JSON after tcbInfo accepted")
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(b.QEIdentity), &m); err != nil {
		t.Fatal(err)
	}
	m["version"] = 3
	text, _ := json.Marshal(m)
	if _, err := ParseQEIdentity(text); err == nil {
		t.Error("QE identity version 3 accepted")
	}
}

func FuzzParsePCKExtensions(f *testing.F) {
	for _, e := range pckChainCerts(f) {
		f.Add(e)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = parseSGXExtensionValue(b)
	})
}

// tcbInfoSeeds are the real TCB infos and edits of the TDX one that reach
// the ordering, duplicate and module rules: levels reversed, a duplicate
// level, module levels reversed, no tdxModule, SGX with a tdxModule.
func tcbInfoSeeds(tb testing.TB) [][]byte {
	var out [][]byte
	for _, p := range []string{"sgx/dcap-qvl_sgx_quote_v3_collateral.json", "tdx/dcap-qvl_tdx_quote_v4_collateral.json"} {
		out = append(out, []byte(readBundle(tb, p).TCBInfo))
	}
	edit := func(text []byte, f func(m map[string]any)) []byte {
		var m map[string]any
		if err := json.Unmarshal(text, &m); err != nil {
			tb.Fatal(err)
		}
		f(m)
		b, err := json.Marshal(m)
		if err != nil {
			tb.Fatal(err)
		}
		return b
	}
	reverse := func(l []any) { slices.Reverse(l) }
	tdxInfo := out[1]
	out = append(out,
		edit(tdxInfo, func(m map[string]any) { reverse(m["tcbLevels"].([]any)) }),
		edit(tdxInfo, func(m map[string]any) { m["tcbLevels"] = append(m["tcbLevels"].([]any), m["tcbLevels"].([]any)[0]) }),
		edit(tdxInfo, func(m map[string]any) {
			for _, id := range m["tdxModuleIdentities"].([]any) {
				reverse(id.(map[string]any)["tcbLevels"].([]any))
			}
		}),
		edit(tdxInfo, func(m map[string]any) { delete(m, "tdxModule") }),
		edit(out[0], func(m map[string]any) { m["tdxModule"] = map[string]any{} }),
	)
	return out
}

// TCB info edits that Intel's parser refuses, and one it accepts in
// another order, through the same seeds the fuzz target starts from.
func TestTCBInfoSeedVerdicts(t *testing.T) {
	seeds := tcbInfoSeeds(t)
	for i, want := range []bool{true, true, true, false, true, false, false} {
		_, err := ParseTCBInfo(seeds[i])
		if (err == nil) != want {
			t.Errorf("seed %d: %v; want parsed %v", i, err, want)
		}
	}
	a, _ := ParseTCBInfo(seeds[1])
	b, _ := ParseTCBInfo(seeds[2])
	if a == nil || b == nil || len(a.Levels) != len(b.Levels) {
		t.Fatal("reversed levels did not parse like the original")
	}
	for i := range a.Levels {
		if a.Levels[i].Status != b.Levels[i].Status || a.Levels[i].PCESVN != b.Levels[i].PCESVN {
			t.Errorf("level %d differs after reversing the JSON", i)
		}
	}
}

func FuzzParseTCBInfo(f *testing.F) {
	for _, s := range tcbInfoSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		ti, err := ParseTCBInfo(b)
		if err != nil {
			return
		}
		if len(ti.Levels) == 0 {
			t.Fatal("TCB info without levels parsed")
		}
		// Levels are in Intel's order, strictly: no duplicates.
		for i := 1; i < len(ti.Levels); i++ {
			if compareLevels(&ti.Levels[i-1], &ti.Levels[i]) <= 0 {
				t.Fatalf("levels %d and %d out of order or equal", i-1, i)
			}
		}
		if (ti.ID == "TDX") != (ti.TDXModule != nil) {
			t.Fatalf("%s TCB info with tdxModule %v", ti.ID, ti.TDXModule)
		}
		for _, m := range ti.TDXModuleIdentities {
			for i := 1; i < len(m.Levels); i++ {
				if m.Levels[i-1].ISVSVN <= m.Levels[i].ISVSVN {
					t.Fatalf("module %s levels out of order", m.ID)
				}
			}
		}
	})
}

func FuzzParseQEIdentity(f *testing.F) {
	for _, p := range []string{"sgx/dcap-qvl_sgx_quote_v3_collateral.json", "tdx/dcap-qvl_tdx_quote_v4_collateral.json"} {
		qe := readBundle(f, p).QEIdentity
		f.Add([]byte(qe))
		// A status Intel allows at QE levels, and one it does not.
		f.Add([]byte(strings.Replace(qe, `"tcbStatus":"UpToDate"`, `"tcbStatus":"ConfigurationNeeded"`, 1)))
		f.Add([]byte(strings.Replace(qe, `"tcbStatus":"UpToDate"`, `"tcbStatus":"SWHardeningNeeded"`, 1)))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if qi, err := ParseQEIdentity(b); err == nil && len(qi.Levels) == 0 {
			t.Fatal("QE identity without levels parsed")
		}
	})
}

func FuzzParseSignatureData(f *testing.F) {
	for _, p := range []string{"sgx/dcap-qvl_sgx_quote_v3.bin", "tdx/dcap-qvl_tdx_quote_v4.bin"} {
		raw, err := os.ReadFile("../../testdata/" + p)
		if err != nil {
			f.Fatal(err)
		}
		off := HeaderSize + EnclaveReportSize
		if strings.HasPrefix(p, "tdx") {
			off = HeaderSize + 584
		}
		n := int(binary.LittleEndian.Uint32(raw[off:]))
		f.Add(raw[off+4:off+4+n], strings.HasPrefix(p, "tdx"))
	}
	f.Fuzz(func(t *testing.T, b []byte, wrapped bool) {
		s, err := ParseSignatureData(b, wrapped)
		if err == nil && len(s.QEReport) != EnclaveReportSize {
			t.Fatal("QE report of the wrong size parsed")
		}
	})
}

// Encoders mirror the parsers: a real quote's parts re-encode byte-exact.
func TestMarshalRoundTrip(t *testing.T) {
	raw, err := os.ReadFile("../../testdata/sgx/dcap-qvl_sgx_quote_v3.bin")
	if err != nil {
		t.Fatal(err)
	}
	h, err := ParseHeader(raw)
	if err != nil || string(h.Marshal()) != string(raw[:HeaderSize]) {
		t.Fatalf("header round trip: %v", err)
	}
	body := raw[HeaderSize : HeaderSize+EnclaveReportSize]
	e, err := ParseEnclaveReport(body, "report")
	if err != nil || string(e.Marshal()) != string(body) {
		t.Fatalf("enclave report round trip: %v", err)
	}
	n := int(binary.LittleEndian.Uint32(raw[HeaderSize+EnclaveReportSize:]))
	sd := raw[HeaderSize+EnclaveReportSize+4 : HeaderSize+EnclaveReportSize+4+n]
	s, err := ParseSignatureData(sd, false)
	if err != nil || string(s.Marshal(false)) != string(sd) {
		t.Fatalf("signature data round trip: %v", err)
	}
	w, err := ParseSignatureData(s.Marshal(true), true)
	if err != nil || string(w.Marshal(true)) != string(s.Marshal(true)) {
		t.Fatalf("wrapped signature data round trip: %v", err)
	}
}

// The PCK certificate's SGX type, platform instance ID and configuration
// (Intel SGX PCK Certificate and CRL Profile; QVL PlatformPckCertificate,
// Configuration). Values read with openssl asn1parse from the vectors.
func TestPCKPlatformFields(t *testing.T) {
	exts := pckChainCerts(t)
	sgx, err := parseSGXExtensionValue(exts[0]) // Processor CA: five entries
	if err != nil {
		t.Fatal(err)
	}
	if sgx.SGXType != 0 || sgx.PlatformInstanceID != nil || sgx.Configuration != nil {
		t.Errorf("Processor CA PCK: type %d, instance %v, configuration %v; want 0, none, none", sgx.SGXType, sgx.PlatformInstanceID, sgx.Configuration)
	}
	tdx, err := parseSGXExtensionValue(exts[1]) // Platform CA: seven entries
	if err != nil {
		t.Fatal(err)
	}
	wantID := [16]byte{0x07, 0x82, 0x84, 0x74, 0x60, 0x3e, 0x70, 0x19, 0xdc, 0x93, 0x07, 0x75, 0xff, 0xe8, 0xcd, 0xd2}
	if tdx.SGXType != 1 || tdx.PlatformInstanceID == nil || *tdx.PlatformInstanceID != wantID ||
		tdx.Configuration == nil || *tdx.Configuration != (PCKConfiguration{DynamicPlatform: true, CachedKeys: true, SMTEnabled: true}) {
		t.Errorf("Platform CA PCK: type %d, instance %x, configuration %+v", tdx.SGXType, tdx.PlatformInstanceID, tdx.Configuration)
	}
	if got := SGXTypeName(tdx.SGXType); got != "scalable" {
		t.Errorf("SGX type 1 is %q; want scalable", got)
	}
}

// Intel's parser takes five entries (Processor CA) or seven (Platform CA),
// and a configuration needs all three flags, each a BOOLEAN.
func TestPCKPlatformFieldsStrict(t *testing.T) {
	// The Platform CA vector's seven entries, as DER elements.
	in := cryptobyte.String(pckChainCerts(t)[1])
	var seq cryptobyte.String
	if !in.ReadASN1(&seq, cbasn1.SEQUENCE) {
		t.Fatal("vector does not parse")
	}
	var entries [][]byte
	for !seq.Empty() {
		var e cryptobyte.String
		if !seq.ReadASN1Element(&e, cbasn1.SEQUENCE) {
			t.Fatal("vector entry does not parse")
		}
		entries = append(entries, e)
	}
	if len(entries) != 7 {
		t.Fatalf("%d entries in the vector", len(entries))
	}
	build := func(es ...[]byte) []byte {
		var b cryptobyte.Builder
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			for _, e := range es {
				b.AddBytes(e)
			}
		})
		return b.BytesOrPanic()
	}
	entry := func(oid asn1.ObjectIdentifier, value func(*cryptobyte.Builder)) []byte {
		var b cryptobyte.Builder
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			b.AddASN1ObjectIdentifier(oid)
			value(b)
		})
		return b.BytesOrPanic()
	}
	oid := func(n ...int) asn1.ObjectIdentifier {
		return append(append(asn1.ObjectIdentifier{}, oidSGXExtensions...), n...)
	}
	config := func(flags ...[]byte) []byte {
		return entry(oid(7), func(b *cryptobyte.Builder) {
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
				for _, f := range flags {
					b.AddBytes(f)
				}
			})
		})
	}
	flag := func(n int, v bool) []byte {
		return entry(oid(7, n), func(b *cryptobyte.Builder) { b.AddASN1Boolean(v) })
	}
	first5 := entries[:5]
	if p, err := parseSGXExtensionValue(build(append(first5, entries[5], config(flag(3, false), flag(1, false), flag(2, true)))...)); err != nil ||
		*p.Configuration != (PCKConfiguration{CachedKeys: true}) {
		t.Errorf("flags in another order: %+v %v", p, err)
	}
	for _, tc := range []struct {
		name string
		ext  []byte
	}{
		{"six entries", build(append(first5, entries[5])...)},
		{"configuration lacks SMT", build(append(first5, entries[5], config(flag(1, true), flag(2, true)))...)},
		{"flag not a BOOLEAN", build(append(first5, entries[5], config(flag(1, true), flag(2, true), entry(oid(7, 3), func(b *cryptobyte.Builder) { b.AddASN1Int64(1) })))...)},
		{"short instance ID", build(append(first5, entry(oid(6), func(b *cryptobyte.Builder) { b.AddASN1OctetString(make([]byte, 15)) }), entries[6])...)},
		{"configuration twice", build(append(first5, entries[6], entries[6])...)},
	} {
		if _, err := parseSGXExtensionValue(tc.ext); err == nil {
			t.Errorf("%s: accepted", tc.name)
		}
	}
}

// Fields Intel's parsers require (QVL TcbInfo::parsePartV2,
// TcbLevel::parseTcbLevelCommon, EnclaveIdentityV2): a missing one is an
// error, not a zero.
func TestCollateralRequiredFields(t *testing.T) {
	tdxCol := readBundle(t, "tdx/dcap-qvl_tdx_quote_v4_collateral.json")
	without := func(text, key string) []byte {
		var m map[string]any
		if err := json.Unmarshal([]byte(text), &m); err != nil {
			t.Fatal(err)
		}
		delete(m, key)
		b, _ := json.Marshal(m)
		return b
	}
	for _, key := range []string{"tcbType", "tcbEvaluationDataNumber"} {
		if _, err := ParseTCBInfo(without(tdxCol.TCBInfo, key)); err == nil {
			t.Errorf("TCB info without %s parsed", key)
		}
	}
	if _, err := ParseQEIdentity(without(tdxCol.QEIdentity, "tcbEvaluationDataNumber")); err == nil {
		t.Error("QE identity without tcbEvaluationDataNumber parsed")
	}
	// TCB info v2: levels need a tcbDate too.
	v2 := func(date string) []byte {
		tcb := map[string]int{"pcesvn": 5}
		for i := range 16 {
			tcb[componentKey(i)] = 1
		}
		level := map[string]any{"tcb": tcb, "tcbStatus": "UpToDate"}
		if date != "" {
			level["tcbDate"] = date
		}
		b, _ := json.Marshal(map[string]any{"version": 2, "issueDate": "2025-01-01T00:00:00Z", "nextUpdate": "2025-02-01T00:00:00Z",
			"fmspc": "00906ED50000", "pceId": "0000", "tcbType": 0, "tcbEvaluationDataNumber": 5, "tcbLevels": []any{level}})
		return b
	}
	if _, err := ParseTCBInfo(v2("2024-01-01T00:00:00Z")); err != nil {
		t.Errorf("TCB info v2: %v", err)
	}
	if _, err := ParseTCBInfo(v2("")); err == nil {
		t.Error("TCB info v2 level without tcbDate parsed")
	}
}

// TCB info v2 is SGX's whatever its id says: Intel's parser reads no id in
// v2 (TcbInfo::getId throws for v2; the constructor sets SGX).
func TestTCBInfoV2IgnoresID(t *testing.T) {
	tcb := map[string]int{"pcesvn": 5}
	for i := range 16 {
		tcb[componentKey(i)] = 1
	}
	b, _ := json.Marshal(map[string]any{"id": "TDX", "version": 2, "issueDate": "2025-01-01T00:00:00Z", "nextUpdate": "2025-02-01T00:00:00Z",
		"fmspc": "00906ED50000", "pceId": "0000", "tcbType": 0, "tcbEvaluationDataNumber": 5,
		"tcbLevels": []any{map[string]any{"tcb": tcb, "tcbStatus": "UpToDate", "tcbDate": "2024-01-01T00:00:00Z"}}})
	ti, err := ParseTCBInfo(b)
	if err != nil || ti.ID != "SGX" {
		t.Errorf("v2 with id TDX: %v, %v; want SGX TCB info", ti, err)
	}
}

// A TCB component's optional category and type must be strings when
// present (QVL TcbComponent).
func TestTCBComponentOptionalStrings(t *testing.T) {
	text := readBundle(t, "tdx/dcap-qvl_tdx_quote_v4_collateral.json").TCBInfo
	if !strings.Contains(text, `"category":"`) {
		t.Fatal("vector has no component category")
	}
	if _, err := ParseTCBInfo([]byte(text)); err != nil {
		t.Fatal(err)
	}
	bad := strings.Replace(text, `"category":"`, `"category":5,"x":"`, 1)
	if _, err := ParseTCBInfo([]byte(bad)); err == nil {
		t.Error("numeric component category accepted")
	}
}

// Collateral dates are exactly YYYY-MM-DDTHH:MM:SSZ, as Intel's parser
// takes them (AttestationCommons isValidTimeString): no fraction, no offset.
func TestCollateralDateFormat(t *testing.T) {
	if _, err := parseTime("2025-06-19T10:16:03Z", "d"); err != nil {
		t.Error(err)
	}
	for _, s := range []string{"2025-06-19T10:16:03.5Z", "2025-06-19T10:16:03+00:00", "2025-06-19T10:16:03z", "2025-02-30T10:16:03Z", "2025-06-19 10:16:03Z"} {
		if _, err := parseTime(s, "d"); err == nil {
			t.Errorf("%q accepted", s)
		}
	}
}

// Collateral JSON is read as Intel's parser (rapidjson) reads it: member
// names match exactly, and a field Intel reads must have its type when
// present (null is not absent). Two members of one name are refused
// (Intel would read the first; see DESIGN.md's list of differences).
func TestCollateralJSONNames(t *testing.T) {
	col := readBundle(t, "tdx/dcap-qvl_tdx_quote_v4_collateral.json")
	if _, err := ParseTCBInfo([]byte(col.TCBInfo)); err != nil {
		t.Fatal(err)
	}
	if _, err := ParseQEIdentity([]byte(col.QEIdentity)); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ name, old, new string }{
		{"tcbStatus spelt TcbStatus", `"tcbStatus":`, `"TcbStatus":`},
		{"fmspc spelt FMSPC", `"fmspc":`, `"FMSPC":`},
		{"null category", `"category":"`, `"category":null,"x":"`},
		{"null advisoryIDs", `"tcbStatus":`, `"advisoryIDs":null,"tcbStatus":`},
		{"duplicate fmspc", `"fmspc":`, `"fmspc":"000000000000","fmspc":`},
	} {
		text := strings.Replace(col.TCBInfo, c.old, c.new, 1)
		if text == col.TCBInfo {
			t.Fatalf("%s: edit did not apply", c.name)
		}
		if _, err := ParseTCBInfo([]byte(text)); err == nil {
			t.Errorf("TCB info with %s parsed", c.name)
		}
	}
	for _, c := range []struct{ name, old, new string }{
		{"mrsigner spelt MRSIGNER", `"mrsigner":`, `"MRSIGNER":`},
		{"duplicate isvprodid", `"isvprodid":`, `"isvprodid":7,"isvprodid":`},
	} {
		text := strings.Replace(col.QEIdentity, c.old, c.new, 1)
		if text == col.QEIdentity {
			t.Fatalf("%s: edit did not apply", c.name)
		}
		if _, err := ParseQEIdentity([]byte(text)); err == nil {
			t.Errorf("QE identity with %s parsed", c.name)
		}
	}
}

// Fields Intel's TDX module identity parsers require in every identity,
// used by the quote or not (QVL TdxModuleIdentity: id; TdxModuleTcbLevel:
// tcbStatus): a missing one makes the TCB info invalid. Found by the Intel
// QVL differential (evidence/qvldiff).
func TestTDXModuleIdentityRequiredFields(t *testing.T) {
	tdxCol := readBundle(t, "tdx/dcap-qvl_tdx_quote_v4_collateral.json")
	if _, err := ParseTCBInfo([]byte(tdxCol.TCBInfo)); err != nil {
		t.Fatal(err)
	}
	edit := func(f func(ids []any)) []byte {
		var m map[string]any
		if err := json.Unmarshal([]byte(tdxCol.TCBInfo), &m); err != nil {
			t.Fatal(err)
		}
		ids, _ := m["tdxModuleIdentities"].([]any)
		if len(ids) == 0 {
			t.Fatal("the vector's TCB info has no tdxModuleIdentities")
		}
		f(ids)
		b, _ := json.Marshal(m)
		return b
	}
	var n int
	edit(func(ids []any) { n = len(ids) })
	for i := range n {
		b := edit(func(ids []any) { delete(ids[i].(map[string]any), "id") })
		if _, err := ParseTCBInfo(b); err == nil {
			t.Errorf("TDX module identity %d without id parsed", i)
		}
		b = edit(func(ids []any) {
			levels := ids[i].(map[string]any)["tcbLevels"].([]any)
			delete(levels[len(levels)-1].(map[string]any), "tcbStatus")
		})
		if _, err := ParseTCBInfo(b); err == nil {
			t.Errorf("TDX module identity %d: a TCB level without tcbStatus parsed", i)
		}
		// Present but empty is a string, which Intel's parser takes.
		b = edit(func(ids []any) { ids[i].(map[string]any)["id"] = "" })
		if _, err := ParseTCBInfo(b); err != nil {
			t.Errorf("TDX module identity %d with an empty id: %v", i, err)
		}
	}
}
