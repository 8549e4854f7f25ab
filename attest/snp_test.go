package attest

import (
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/go-sev-guest/abi"
	"github.com/google/uuid"

	"github.com/cloister-dev/cloister/evidence"
	"github.com/cloister-dev/cloister/evidence/tsmreport"
	"github.com/cloister-dev/cloister/policy/maa"
)

// snpVector is go-sev-guest's real Milan report with its VCEK and the
// Milan ASK/ARK (testdata/README.md, "snp/").
type snpVector struct {
	report []byte // raw 1184-byte report
	vcek   []byte // DER
	askARK []byte // PEM: ASK then ARK
}

func loadSNPVector(t testing.TB) snpVector {
	t.Helper()
	read := func(name string) []byte {
		b, err := os.ReadFile(filepath.Join("..", "testdata", "snp", name))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	return snpVector{report: read("attestation.bin"), vcek: read("vcek.testcer"), askARK: read("ask_ark_milan.pem")}
}

// chainPEM is VcekCertChain as Azure's THIM service hands it out and MAA's
// clients forward it: the VCEK, then ASK and ARK, all PEM.
func (v snpVector) chainPEM() []byte {
	return append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: v.vcek}), v.askARK...)
}

// maaSNPDoc builds MAA's SevSnpVm evidence document; members with an
// empty value are left out.
func maaSNPDoc(report, chain []byte, endorsements string) []byte {
	m := map[string]string{}
	if report != nil {
		m["SnpReport"] = base64.RawURLEncoding.EncodeToString(report)
	}
	if chain != nil {
		m["VcekCertChain"] = base64.RawURLEncoding.EncodeToString(chain)
	}
	if endorsements != "" {
		m["Endorsements"] = endorsements
	}
	b, _ := json.Marshal(m)
	return b
}

// snpBody is a /attest/SevSnpVm request body whose report member carries
// doc (base64url, as MAA's clients send it).
func snpBody(doc, runtime []byte) string {
	b := fmt.Sprintf(`{"report":%q`, base64.RawURLEncoding.EncodeToString(doc))
	if runtime != nil {
		b += fmt.Sprintf(`,"runtimeData":{"data":%q,"dataType":"Binary"}`, base64.RawURLEncoding.EncodeToString(runtime))
	}
	return b + "}"
}

func snpErrCode(out map[string]any) string {
	e, _ := out["error"].(map[string]any)
	c, _ := e["code"].(string)
	return c
}

// The real SNP vector in MAA's document form through /attest/SevSnpVm: the
// token validates against /certs and carries what evidence.Verify reports
// for the same report, under the names policy/maa emits.
func TestAttestSevSnpVm(t *testing.T) {
	f := getFixture(t)
	v := loadSNPVector(t)
	vcek, err := x509.ParseCertificate(v.vcek)
	if err != nil {
		t.Fatal(err)
	}
	// testNow must lie inside the VCEK's validity (2022-09-24..2029-09-24)
	// for the report to verify; the service clock is Config.Now = testNow.
	if testNow.Before(vcek.NotBefore) || testNow.After(vcek.NotAfter) {
		t.Fatalf("testNow %v is outside the VCEK's validity %v..%v", testNow, vcek.NotBefore, vcek.NotAfter)
	}
	want, err := evidence.Verify(context.Background(), v.report, evidence.Options{Time: testNow, VCEK: v.vcek})
	if err != nil {
		t.Fatal(err)
	}
	// The facts testdata/README.md records for this report.
	if hex.EncodeToString(want.Measurement) != "b07af9620f3b839b47996422ddec6058338951d984e312115131ea82705eaf5b6bdf8a9ece31a5a608eb0cf2e4872b01" ||
		!want.Debug || want.Policy != 0xb0000 || want.TEE != evidence.TEESNP {
		t.Fatalf("evidence.Verify: measurement %x debug %v policy %#x tee %s", []byte(want.Measurement), want.Debug, want.Policy, want.TEE)
	}

	s := newService(t, f, "")
	srv := httptest.NewServer(s)
	defer srv.Close()
	resp, err := http.Post(srv.URL+"/attest/SevSnpVm"+av, "application/json",
		strings.NewReader(snpBody(maaSNPDoc(v.report, v.chainPEM(), ""), nil)))
	if err != nil {
		t.Fatal(err)
	}
	var out struct{ Token string }
	err = json.NewDecoder(resp.Body).Decode(&out)
	resp.Body.Close()
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("status %d, %v", resp.StatusCode, err)
	}
	kid, certs := fetchCerts(t, srv.URL)
	tok, err := jwt.Parse(out.Token, func(tk *jwt.Token) (any, error) {
		if tk.Header["kid"] != kid {
			return nil, fmt.Errorf("kid %v, /certs has %s", tk.Header["kid"], kid)
		}
		return certs[0].PublicKey, nil
	}, jwt.WithValidMethods([]string{"ES256"}), jwt.WithTimeFunc(func() time.Time { return testNow }))
	if err != nil {
		t.Fatal(err)
	}
	c := tok.Claims.(jwt.MapClaims)

	// Every claim policy/maa derives from the verified report is in the
	// token with the same value (numbers come back from JSON as float64).
	n := 0
	for _, cl := range maa.ClaimsFromEvidence(want) {
		if strings.HasPrefix(cl.Type, "$") {
			continue
		}
		wantV := cl.Value
		if i, ok := wantV.(int64); ok {
			wantV = float64(i)
		}
		if c[cl.Type] != wantV {
			t.Errorf("claim %s = %v, evidence says %v", cl.Type, c[cl.Type], wantV)
		}
		if strings.HasPrefix(cl.Type, "x-ms-sevsnpvm-") {
			n++
		}
	}
	if n < 15 {
		t.Errorf("only %d x-ms-sevsnpvm-* claims", n)
	}
	for k, wantV := range map[string]any{
		"x-ms-attestation-type":           "sevsnpvm",
		"x-ms-sevsnpvm-launchmeasurement": hex.EncodeToString(want.Measurement),
		"x-ms-sevsnpvm-hostdata":          strings.Repeat("00", 32),
		"x-ms-sevsnpvm-is-debuggable":     true,
		"x-ms-sevsnpvm-smt-allowed":       true,
		"x-ms-sevsnpvm-migration-allowed": false,
		"x-ms-sevsnpvm-reportdata":        "0102030405" + strings.Repeat("00", 59),
		"x-ms-sevsnpvm-bootloader-svn":    float64(2),
		"x-ms-sevsnpvm-snpfw-svn":         float64(5),
		"x-ms-sevsnpvm-microcode-svn":     float64(68),
		"x-ms-sevsnpvm-vmpl":              float64(0),
		"tcb_status":                      evidence.StatusNotEvaluated,
		"x-ms-policy-hash":                policyHash(defaultVMPolicy),
	} {
		if c[k] != wantV {
			t.Errorf("claim %s = %v, want %v", k, c[k], wantV)
		}
	}
}

// Other shapes MAA clients produce, and what must fail, with the code and
// the part of the message that tells the client why.
func TestAttestSevSnpVmForms(t *testing.T) {
	f := getFixture(t)
	v := loadSNPVector(t)
	s := newService(t, f, "")
	ark, ask := splitPEM(t, v.askARK)

	// MAA's own REST example pretty-prints the document, with whitespace
	// before the object, and uses base64 for the chain.
	pretty := fmt.Sprintf("\n        {\n            \"SnpReport\" : %q,\n            \"VcekCertChain\" : %q\n        }\n        ",
		base64.RawURLEncoding.EncodeToString(v.report), base64.StdEncoding.EncodeToString(v.chainPEM()))
	// confidential-sidecar-containers adds UVM endorsements.
	endorse, _ := json.Marshal(map[string][]string{"Uvm": {base64.URLEncoding.EncodeToString([]byte("cose-sign1"))}})
	endorsements := base64.URLEncoding.EncodeToString(endorse)
	reversed := append(append(append([]byte{}, ark...), ask...), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: v.vcek})...)

	flipped := append([]byte{}, v.report...)
	flipped[0x90] ^= 1 // first byte of MEASUREMENT, inside the signed part
	badSig := append([]byte{}, v.vcek...)
	badSig[len(badSig)-1] ^= 1 // last byte of the VCEK's own signature
	rd := append([]byte{}, v.report...)

	tsm := func(cbor bool) []byte {
		table := (&abi.CertTable{Entries: []abi.CertTableEntry{{GUID: uuid.MustParse(abi.VcekGUID), RawCert: v.vcek}}}).Marshal()
		r := &tsmreport.Report{Provider: tsmreport.ProviderSNP, OutBlob: v.report, AuxBlob: table}
		enc := r.EncodeJSON
		if cbor {
			enc = r.EncodeCBOR
		}
		b, err := enc()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}

	for _, tc := range []struct {
		name string
		body string
		code int
		err  string // CloudError code
		msg  string
	}{
		{"pretty-printed, base64 chain", snpBody([]byte(pretty), nil), 200, "", ""},
		{"padded base64url, with endorsements", fmt.Sprintf(`{"report":%q}`, base64.URLEncoding.EncodeToString(
			[]byte(fmt.Sprintf(`{"SnpReport":%q,"VcekCertChain":%q,"Endorsements":%q}`,
				base64.URLEncoding.EncodeToString(v.report), base64.URLEncoding.EncodeToString(v.chainPEM()), endorsements)))), 200, "", ""},
		{"chain in reverse order", snpBody(maaSNPDoc(v.report, reversed, ""), nil), 200, "", ""},
		{"VCEK alone, DER", snpBody(maaSNPDoc(v.report, v.vcek, ""), nil), 200, "", ""},
		{"configfs-tsm JSON", snpBody(tsm(false), nil), 200, "", ""},
		{"configfs-tsm CBOR", snpBody(tsm(true), nil), 200, "", ""},

		{"runtime data mismatch", snpBody(maaSNPDoc(v.report, v.chainPEM(), ""), []byte{1, 2, 3, 4, 5}), 400, "RuntimeDataMismatch", "SHA-256(runtimeData.data)"},
		{"flipped report byte", snpBody(maaSNPDoc(flipped, v.chainPEM(), ""), nil), 400, "InvalidEvidence", "evidence rejected ("},
		{"VCEK with a broken signature", snpBody(maaSNPDoc(v.report, badSig, ""), nil), 400, "InvalidEvidence", "evidence rejected ("},
		{"VCEK truncated", snpBody(maaSNPDoc(v.report, v.vcek[:200], ""), nil), 400, "InvalidRequest", "VcekCertChain"},
		{"VCEK garbled PEM", snpBody(maaSNPDoc(v.report, []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"), ""), nil), 400, "InvalidRequest", "VcekCertChain: certificate 0"},
		{"only ASK and ARK", snpBody(maaSNPDoc(v.report, v.askARK, ""), nil), 400, "InvalidEvidence", "evidence rejected ("},
		{"missing VcekCertChain", snpBody(maaSNPDoc(v.report, nil, ""), nil), 400, "InvalidRequest", "missing VcekCertChain"},
		{"missing SnpReport", snpBody(maaSNPDoc(nil, v.chainPEM(), ""), nil), 400, "InvalidRequest", "missing SnpReport"},
		{"raw report without VCEK", snpBody(rd, nil), 400, "InvalidEvidence", "no VCEK"},
		{"SGX quote", fmt.Sprintf(`{"report":%q}`, base64.RawURLEncoding.EncodeToString(quote(t, f, nil, false))), 400, "InvalidEvidence", "does not take"},
		{"SGX quote as SnpReport", snpBody(maaSNPDoc(quote(t, f, nil, false), v.chainPEM(), ""), nil), 400, "InvalidRequest", "not a raw SEV-SNP"},
		{"duplicate SnpReport", snpBody([]byte(fmt.Sprintf(`{"SnpReport":%q,"snpreport":"AAAA"}`, base64.RawURLEncoding.EncodeToString(v.report))), nil), 400, "InvalidRequest", "duplicate"},
		{"SnpReport not a string", snpBody([]byte(`{"SnpReport":5}`), nil), 400, "InvalidRequest", "SnpReport"},
		{"trailing data", snpBody(append(maaSNPDoc(v.report, v.chainPEM(), ""), " {}"...), nil), 400, "InvalidRequest", "after the JSON object"},
		{"bad endorsements", snpBody(maaSNPDoc(v.report, v.chainPEM(), "bm90IGpzb24"), nil), 400, "InvalidRequest", "Endorsements"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out := do(t, s, "POST", "/attest/SevSnpVm"+av, tc.body)
			if code != tc.code || snpErrCode(out) != tc.err || !strings.Contains(errMsg(out), tc.msg) {
				t.Fatalf("got %d %s %q, want %d %s containing %q", code, snpErrCode(out), errMsg(out), tc.code, tc.err, tc.msg)
			}
			if code != 200 {
				return
			}
			tok, _, err := jwt.NewParser().ParseUnverified(out["token"].(string), jwt.MapClaims{})
			if err != nil {
				t.Fatal(err)
			}
			if m := tok.Claims.(jwt.MapClaims)["x-ms-sevsnpvm-launchmeasurement"]; m != "b07af9620f3b839b47996422ddec6058338951d984e312115131ea82705eaf5b6bdf8a9ece31a5a608eb0cf2e4872b01" {
				t.Errorf("launch measurement %v", m)
			}
		})
	}
}

// splitPEM returns the two PEM blocks of ask_ark_milan.pem, ARK first.
func splitPEM(t *testing.T, b []byte) (ark, ask []byte) {
	t.Helper()
	blk1, rest := pem.Decode(b)
	blk2, _ := pem.Decode(rest)
	if blk1 == nil || blk2 == nil {
		t.Fatal("ask_ark_milan.pem: want two PEM blocks")
	}
	return pem.EncodeToMemory(blk2), pem.EncodeToMemory(blk1)
}
