package attest

import (
	"bytes"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-sev-guest/abi"
	"github.com/google/uuid"

	"github.com/cloister-dev/cloister/evidence"
	"github.com/cloister-dev/cloister/evidence/tsmreport"
)

// The document is split into report, VCEK and the rest of the chain, and
// only MAA-shaped JSON is touched: everything else reaches the verifier as
// it came.
func TestDecodeEvidenceSNP(t *testing.T) {
	v := loadSNPVector(t)
	ev, err := decodeEvidence(TypeSevSnpVm, maaSNPDoc(v.report, v.chainPEM(), ""))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(ev.raw, v.report) || !bytes.Equal(ev.vcek, v.vcek) {
		t.Errorf("raw %d bytes, vcek %d bytes: not the vector's", len(ev.raw), len(ev.vcek))
	}
	if got := pemCount(ev.chain); got != 2 || !bytes.Contains(ev.chain, bytes.Split(v.askARK, []byte("\n"))[1]) {
		t.Errorf("chain has %d certificates, want ASK and ARK", got)
	}
	tsm, err := (&tsmreport.Report{Provider: tsmreport.ProviderSNP, OutBlob: v.report}).EncodeJSON()
	if err != nil {
		t.Fatal(err)
	}
	for name, in := range map[string][]byte{"raw report": v.report, "configfs-tsm JSON": tsm, "not JSON": []byte("{nope"), "other object": []byte(`{"a":1}`)} {
		ev, err := decodeEvidence(TypeSevSnpVm, in)
		if err != nil || !bytes.Equal(ev.raw, in) || ev.vcek != nil || ev.chain != nil {
			t.Errorf("%s: not passed through: %v", name, err)
		}
	}
	// The same document at the SGX/TDX endpoints is not unpacked: it is
	// those endpoints' verifier that rejects it.
	doc := maaSNPDoc(v.report, v.chainPEM(), "")
	for _, typ := range []string{TypeSgxEnclave, TypeTdxVm} {
		if ev, err := decodeEvidence(typ, doc); err != nil || !bytes.Equal(ev.raw, doc) {
			t.Errorf("%s: %v", typ, err)
		}
	}
}

func TestDecodeEvidenceSNPErrors(t *testing.T) {
	v := loadSNPVector(t)
	rep := base64.RawURLEncoding.EncodeToString(v.report)
	chain := base64.RawURLEncoding.EncodeToString(v.chainPEM())
	b64 := func(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }
	twoLeaves := append(v.chainPEM(), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: selfIssuedLeaf(t)})...)
	for _, tc := range []struct{ name, doc, msg string }{
		{"null report", `{"SnpReport":null}`, "SnpReport is null"},
		{"report not string", `{"SnpReport":[1]}`, "SnpReport: want a base64url string"},
		{"bad base64", `{"SnpReport":"!!"}`, "SnpReport: bad base64"},
		{"short report", fmt.Sprintf(`{"SnpReport":%q}`, b64("short")), "5 bytes that are not a raw SEV-SNP"},
		{"only the chain", fmt.Sprintf(`{"VcekCertChain":%q}`, chain), "missing SnpReport"},
		{"no chain", fmt.Sprintf(`{"SnpReport":%q}`, rep), "missing VcekCertChain"},
		{"empty chain", fmt.Sprintf(`{"SnpReport":%q,"VcekCertChain":""}`, rep), "VcekCertChain: empty"},
		{"chain of a key", fmt.Sprintf(`{"SnpReport":%q,"VcekCertChain":%q}`, rep, b64("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n")), `"PUBLIC KEY", want CERTIFICATE`},
		{"text after chain", fmt.Sprintf(`{"SnpReport":%q,"VcekCertChain":%q}`, rep, base64.StdEncoding.EncodeToString(append(v.chainPEM(), "junk"...))), "not a PEM certificate"},
		{"text before chain", fmt.Sprintf(`{"SnpReport":%q,"VcekCertChain":%q}`, rep, base64.StdEncoding.EncodeToString(append([]byte("JUNK\n"), v.chainPEM()...))), "not a PEM certificate"},
		{"text between certificates", fmt.Sprintf(`{"SnpReport":%q,"VcekCertChain":%q}`, rep, base64.StdEncoding.EncodeToString(append(append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: v.vcek}), "junk\n"...), v.askARK...))), "not a PEM certificate"},
		{"not DER", fmt.Sprintf(`{"SnpReport":%q,"VcekCertChain":%q}`, rep, b64("junk")), "neither PEM nor a DER certificate"},
		{"two leaves", fmt.Sprintf(`{"SnpReport":%q,"VcekCertChain":%q}`, rep, base64.StdEncoding.EncodeToString(twoLeaves)), "both look like the signing key"},
		{"too many certificates", fmt.Sprintf(`{"SnpReport":%q,"VcekCertChain":%q}`, rep, base64.StdEncoding.EncodeToString(bytes.Repeat(v.askARK, 5))), "more than 9 certificates"},
		{"duplicate, other case", fmt.Sprintf(`{"SnpReport":%q,"VcekCertChain":%q,"VCEKCERTCHAIN":%q}`, rep, chain, chain), `duplicate member "VCEKCERTCHAIN"`},
		{"trailing data", fmt.Sprintf(`{"SnpReport":%q,"VcekCertChain":%q}x`, rep, chain), "after the JSON object"},
		{"truncated", fmt.Sprintf(`{"SnpReport":%q,"VcekCertChain":%q`, rep, chain), "SEV-SNP evidence document"},
		{"endorsements not JSON", fmt.Sprintf(`{"SnpReport":%q,"VcekCertChain":%q,"Endorsements":%q}`, rep, chain, b64("x")), "Endorsements: want a JSON object"},
		{"endorsements Uvm not array", fmt.Sprintf(`{"SnpReport":%q,"VcekCertChain":%q,"Endorsements":%q}`, rep, chain, b64(`{"Uvm":"x"}`)), "Uvm: want an array"},
		{"endorsements Uvm bad base64", fmt.Sprintf(`{"SnpReport":%q,"VcekCertChain":%q,"Endorsements":%q}`, rep, chain, b64(`{"Uvm":["!"]}`)), "Uvm[0]: bad base64"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := decodeEvidence(TypeSevSnpVm, []byte(tc.doc))
			if err == nil || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("err %v, want one containing %q", err, tc.msg)
			}
		})
	}
	// Unknown members are ignored (nothing in them is verified or used);
	// a Unicode case variant of a member name is not MAA's member.
	doc := fmt.Sprintf(`{"SnpReport":%q,"VcekCertChain":%q,"Extra":{"x":[1]},"Vce\u212aCertChain":"!"}`, rep, chain)
	if ev, err := decodeEvidence(TypeSevSnpVm, []byte(doc)); err != nil || !bytes.Equal(ev.vcek, v.vcek) {
		t.Fatalf("%v", err)
	}
}

// selfIssuedLeaf is a certificate unrelated to the AMD chain (Intel's SGX
// root): added to VcekCertChain it issues none of the others, so the chain
// has two candidate signing keys and must be refused.
func selfIssuedLeaf(t *testing.T) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "testdata", "sgx", "intel_sgx_root_ca.der"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func pemCount(b []byte) int {
	n := 0
	for {
		var blk *pem.Block
		if blk, b = pem.Decode(b); blk == nil {
			return n
		}
		n++
	}
}

// FuzzDecodeEvidence: decoding never panics, and what it returns for a
// SevSnpVm document holds up: a raw SNP report, a parseable leaf that is
// not among the other certificates, and nothing but certificates in the
// chain. Inputs that are not MAA's document pass through untouched.
func FuzzDecodeEvidence(f *testing.F) {
	v := loadSNPVector(f)
	f.Add(maaSNPDoc(v.report, v.chainPEM(), ""))
	f.Add(maaSNPDoc(v.report, v.vcek, ""))
	f.Add(maaSNPDoc(v.report, v.askARK, base64.RawURLEncoding.EncodeToString([]byte(`{"Uvm":["AAAA"]}`))))
	f.Add([]byte(fmt.Sprintf("\n {\"SnpReport\" : %q, \"VcekCertChain\" : %q}\n",
		base64.RawURLEncoding.EncodeToString(v.report), base64.StdEncoding.EncodeToString(v.chainPEM()))))
	f.Add(v.report)
	table := (&abi.CertTable{Entries: []abi.CertTableEntry{{GUID: uuid.MustParse(abi.VcekGUID), RawCert: v.vcek}}}).Marshal()
	r := &tsmreport.Report{Provider: tsmreport.ProviderSNP, OutBlob: v.report, AuxBlob: table}
	for _, enc := range []func() ([]byte, error){r.EncodeJSON, r.EncodeCBOR} {
		b, err := enc()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	if q, err := os.ReadFile(filepath.Join("..", "testdata", "sgx", "dcap-qvl_sgx_quote_v3.bin")); err == nil {
		f.Add(q)
		oe := make([]byte, 16, 16+len(q))
		oe[0], oe[8], oe[9] = 1, byte(len(q)), byte(len(q)>>8)
		f.Add(append(oe, q...))
	}
	f.Add([]byte(`{"snpreport":null,"SNPREPORT":""}`))
	f.Fuzz(func(t *testing.T, in []byte) {
		for _, typ := range types {
			ev, err := decodeEvidence(typ, in)
			if err != nil {
				if typ != TypeSevSnpVm {
					t.Fatalf("%s: %v", typ, err) // only SevSnpVm documents can be refused
				}
				continue
			}
			if typ != TypeSevSnpVm || !isMAASNPDocument(in) {
				if ev.vcek != nil || ev.chain != nil || (typ != TypeOpenEnclave && !bytes.Equal(ev.raw, in)) {
					t.Fatalf("%s: input not passed through", typ)
				}
				continue
			}
			if evidence.Detect(ev.raw) != evidence.KindSNPReport {
				t.Fatalf("accepted a %d-byte SnpReport that is not an SNP report", len(ev.raw))
			}
			leaf, err := x509.ParseCertificate(ev.vcek)
			if err != nil {
				t.Fatalf("VCEK does not parse: %v", err)
			}
			rest := ev.chain
			for {
				var blk *pem.Block
				if blk, rest = pem.Decode(rest); blk == nil {
					break
				}
				c, err := x509.ParseCertificate(blk.Bytes)
				if err != nil {
					t.Fatalf("chain certificate does not parse: %v", err)
				}
				if bytes.Equal(c.RawIssuer, leaf.RawSubject) && !bytes.Equal(c.Raw, leaf.Raw) {
					t.Fatal("the chosen VCEK issues a chain certificate: it is not the leaf")
				}
			}
			if len(bytes.TrimSpace(rest)) != 0 {
				t.Fatal("chain has trailing bytes")
			}
		}
	})
}
