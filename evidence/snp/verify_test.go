package snp

import (
	"bytes"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/binary"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cloister-dev/cloister/evidence/internal/verr"
	"github.com/google/go-sev-guest/abi"
	"github.com/google/go-sev-guest/kds"
	sevtest "github.com/google/go-sev-guest/testing"
	"github.com/google/uuid"
)

// Facts about the vectors, from testdata/README.md.
const (
	vectorMeasurement = "b07af9620f3b839b47996422ddec6058338951d984e312115131ea82705eaf5b6bdf8a9ece31a5a608eb0cf2e4872b01"
	vectorChipID      = "3ac3fe21e13fb0990eb28a802e3fb6a29483a6b0753590c951bdd3b8e53786184ca39e359669a2b76a1936776b564ea464cdce40c05f63c9b610c5068b006b5d"
	vectorReportID    = "8edc638e1857c555d21f6b11bda3c8b1b5a09dba4852b4c8ee7aa2f16f22cc0a"
	vectorTCB         = 0x4405000000000002
	vectorPolicy      = 0x00000000000b0000
)

var (
	// timeVCEKIssued is the time go-sev-guest's TestVerifyVcekCert pins.
	timeVCEKIssued = time.Date(2022, 9, 24, 1, 0, 0, 0, time.UTC)
	time2026       = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	// vcekNotAfter is the end of vcek.testcer's validity.
	vcekNotAfter = time.Date(2029, 9, 24, 0, 55, 28, 0, time.UTC)
)

func readVector(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "testdata", "snp", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func vectors(t testing.TB) (report, vcek, askArk []byte) {
	return readVector(t, "attestation.bin"), readVector(t, "vcek.testcer"), readVector(t, "ask_ark_milan.pem")
}

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// wantReason fails unless err is a *verr.Error from this package with one
// of the given reasons.
func wantReason(t testing.TB, err error, reasons ...verr.Reason) {
	t.Helper()
	if err == nil {
		t.Fatalf("got nil error, want reason %v", reasons)
	}
	var ve *verr.Error
	if !errors.As(err, &ve) {
		t.Fatalf("error %v (%T) is not a *verr.Error", err, err)
	}
	if ve.Pkg != "snp" {
		t.Errorf("error %v has Pkg %q, want snp", err, ve.Pkg)
	}
	for _, r := range reasons {
		if ve.Reason == r {
			return
		}
	}
	t.Fatalf("error %v has reason %v, want one of %v", err, ve.Reason, reasons)
}

func checkVectorFields(t *testing.T, r *Report) {
	t.Helper()
	if got := hex.EncodeToString(r.Measurement[:]); got != vectorMeasurement {
		t.Errorf("Measurement = %s, want %s", got, vectorMeasurement)
	}
	var wantRD [64]byte
	copy(wantRD[:], []byte{1, 2, 3, 4, 5})
	if r.ReportData != wantRD {
		t.Errorf("ReportData = %x, want %x", r.ReportData, wantRD)
	}
	if got := hex.EncodeToString(r.ChipID[:]); got != vectorChipID {
		t.Errorf("ChipID = %s, want %s", got, vectorChipID)
	}
	if got := hex.EncodeToString(r.ReportID[:]); got != vectorReportID {
		t.Errorf("ReportID = %s, want %s", got, vectorReportID)
	}
	if !r.Debug {
		t.Error("Debug = false, want true (policy bit 19)")
	}
	if r.Policy != vectorPolicy {
		t.Errorf("Policy = %#x, want %#x", r.Policy, vectorPolicy)
	}
	if r.VMPL != 0 || r.GuestSVN != 0 {
		t.Errorf("VMPL, GuestSVN = %d, %d, want 0, 0", r.VMPL, r.GuestSVN)
	}
	if r.ReportedTCB != vectorTCB {
		t.Errorf("ReportedTCB = %#x, want %#x", r.ReportedTCB, uint64(vectorTCB))
	}
	if r.Product != "Milan" || r.SignerKind != "VCEK" {
		t.Errorf("Product, SignerKind = %q, %q, want Milan, VCEK", r.Product, r.SignerKind)
	}
	var zero48 [48]byte
	var zero32 [32]byte
	if r.HostData != zero32 || r.IDKeyDigest != zero48 || r.AuthorKeyDigest != zero48 {
		t.Error("HostData, IDKeyDigest or AuthorKeyDigest not zero")
	}
	found := false
	for _, w := range r.Warnings {
		found = found || w == WarnRevocationNotChecked
	}
	if !found {
		t.Errorf("Warnings %q lack %q", r.Warnings, WarnRevocationNotChecked)
	}
}

func TestVerifyRealVector(t *testing.T) {
	report, vcek, askArk := vectors(t)
	vcekPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: vcek})
	tests := []struct {
		name string
		opts Options
	}{
		{"VCEK issue time", Options{Time: timeVCEKIssued, VCEK: vcek}},
		{"2026", Options{Time: time2026, VCEK: vcek}},
		{"last second", Options{Time: vcekNotAfter, VCEK: vcek}},
		{"PEM VCEK", Options{Time: time2026, VCEK: vcekPEM}},
		{"with chain", Options{Time: time2026, VCEK: vcek, Chain: askArk}},
		{"product given", Options{Time: time2026, VCEK: vcek, Product: "Milan"}},
		{"certificate table", Options{Time: time2026, CertTable: makeTable(t, map[string][]byte{abi.VcekGUID: vcek})}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, err := Verify(report, tc.opts)
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			checkVectorFields(t, r)
		})
	}
}

// TestVerifyTrustRootsFromChain replaces the built-in roots with the ARK
// of the vector's chain file: the same key, so it verifies.
func TestVerifyTrustRootsFromChain(t *testing.T) {
	report, vcek, askArk := vectors(t)
	certs, err := parsePEMChain(askArk)
	if err != nil || len(certs) != 2 {
		t.Fatalf("parsePEMChain: %d certs, %v", len(certs), err)
	}
	r, err := Verify(report, Options{Time: time2026, VCEK: vcek, Chain: askArk, TrustRoots: certs[1:]})
	if err != nil {
		t.Fatalf("Verify with the Milan ARK as trust root: %v", err)
	}
	if !r.BuiltinRoot {
		t.Error("BuiltinRoot = false under AMD's own ARK named as trust root")
	}
	// The Genoa ARK cannot anchor a Milan VCEK.
	roots, err := builtinRoots()
	if err != nil {
		t.Fatal(err)
	}
	_, err = Verify(report, Options{Time: time2026, VCEK: vcek, TrustRoots: []*x509.Certificate{roots["Genoa"].ark}})
	wantReason(t, err, verr.UntrustedRoot)
}

func TestVerifyTime(t *testing.T) {
	report, vcek, _ := vectors(t)
	for _, at := range []time.Time{
		vcekNotAfter.Add(time.Second),
		time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(2022, 9, 24, 0, 55, 27, 0, time.UTC), // before NotBefore
	} {
		_, err := Verify(report, Options{Time: at, VCEK: vcek})
		wantReason(t, err, verr.Expired)
	}
	_, err := Verify(report, Options{VCEK: vcek})
	wantReason(t, err, verr.MissingCollateral)
}

func TestVerifyMissingVCEK(t *testing.T) {
	report, _, askArk := vectors(t)
	for _, opts := range []Options{
		{Time: time2026},
		{Time: time2026, Chain: askArk},
		{Time: time2026, CertTable: makeTable(t, map[string][]byte{abi.ArkGUID: []byte("x")})},
	} {
		_, err := Verify(report, opts)
		wantReason(t, err, verr.MissingCollateral)
		if want := "snp: no VCEK: pass --vcek or a certificate table"; err.Error() != want {
			t.Errorf("error %q, want %q", err, want)
		}
	}
}

func TestVerifyProduct(t *testing.T) {
	report, vcek, _ := vectors(t)
	_, err := Verify(report, Options{Time: time2026, VCEK: vcek, Product: "Genoa"})
	wantReason(t, err, verr.CollateralMismatch)
	_, err = Verify(report, Options{Time: time2026, VCEK: vcek, Product: "Rome"})
	wantReason(t, err, verr.Unsupported)
}

// TestVerifySignedRegionFlips flips every byte of the signed region, and
// every byte of the signature, in several ways: nothing may pass, and a
// change must read as a bad signature or a malformed report.
func TestVerifySignedRegionFlips(t *testing.T) {
	report, vcek, _ := vectors(t)
	signed := len(abi.SignedComponent(report))
	if signed != 0x2A0 {
		t.Fatalf("signed region is %#x bytes, want 0x2A0", signed)
	}
	masks := []byte{0x01, 0xff}
	if testing.Short() {
		masks = masks[:1]
	}
	for i := 0; i < abi.ReportSize; i++ {
		for _, m := range masks {
			mod := bytes.Clone(report)
			mod[i] ^= m
			_, err := Verify(mod, Options{Time: time2026, VCEK: vcek})
			if err == nil {
				t.Fatalf("byte %#x ^ %#x: verified", i, m)
			}
			wantReason(t, err, verr.BadSignature, verr.Malformed)
		}
	}
}

func TestVerifySize(t *testing.T) {
	report, vcek, _ := vectors(t)
	for _, raw := range [][]byte{nil, report[:1], report[:len(report)-1], append(bytes.Clone(report), 0), append(bytes.Clone(report), make([]byte, 4096)...)} {
		_, err := Verify(raw, Options{Time: time2026, VCEK: vcek})
		wantReason(t, err, verr.Malformed)
		_, err = Parse(raw)
		wantReason(t, err, verr.Malformed)
	}
}

func TestParse(t *testing.T) {
	report, _, _ := vectors(t)
	r, err := Parse(report)
	if err != nil {
		t.Fatal(err)
	}
	if r.GetVersion() != 2 || hex.EncodeToString(r.GetMeasurement()) != vectorMeasurement {
		t.Errorf("Parse: version %d, measurement %x", r.GetVersion(), r.GetMeasurement())
	}
	// Every strict prefix is rejected.
	for n := 0; n < len(report); n++ {
		if _, err := Parse(report[:n]); err == nil {
			t.Fatalf("Parse accepted a %d-byte prefix", n)
		}
	}
}

func TestVerifyBadInputs(t *testing.T) {
	report, vcek, askArk := vectors(t)
	tests := []struct {
		name string
		opts Options
		want verr.Reason
	}{
		{"junk VCEK", Options{Time: time2026, VCEK: []byte("not a certificate")}, verr.Malformed},
		{"huge VCEK", Options{Time: time2026, VCEK: make([]byte, maxCertSize+1)}, verr.Malformed},
		{"ASK as VCEK", Options{Time: time2026, VCEK: firstPEM(t, askArk)}, verr.Malformed},
		{"junk chain", Options{Time: time2026, VCEK: vcek, Chain: []byte("junk")}, verr.Malformed},
		{"chain with trailing junk", Options{Time: time2026, VCEK: vcek, Chain: append(bytes.Clone(askArk), "junk"...)}, verr.Malformed},
		{"chain with a key", Options{Time: time2026, VCEK: vcek, Chain: pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte{1}})}, verr.Malformed},
		{"nil trust root", Options{Time: time2026, VCEK: vcek, TrustRoots: []*x509.Certificate{nil}}, verr.Malformed},
		{"short table", Options{Time: time2026, CertTable: make([]byte, 10)}, verr.Malformed},
		{"table without terminator", Options{Time: time2026, CertTable: noTerminator(vcek)}, verr.Malformed},
		{"table offset wraps", Options{Time: time2026, CertTable: rawTable(uuid.MustParse(abi.VcekGUID), 0xfffffff0, 0x20, 64)}, verr.Malformed},
		{"table range beyond end", Options{Time: time2026, CertTable: rawTable(uuid.MustParse(abi.VcekGUID), 48, 0x1000, 64)}, verr.Malformed},
		{"table junk VCEK", Options{Time: time2026, CertTable: makeTable(t, map[string][]byte{abi.VcekGUID: []byte("junk")})}, verr.Malformed},
		{"table duplicate GUID", Options{Time: time2026, CertTable: dupTable(t, vcek)}, verr.Malformed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Verify(report, tc.opts)
			wantReason(t, err, tc.want)
		})
	}
}

func firstPEM(t testing.TB, b []byte) []byte {
	blk, _ := pem.Decode(b)
	if blk == nil {
		t.Fatal("no PEM block")
	}
	return blk.Bytes
}

// makeTable builds a certificate table with go-sev-guest's encoder.
func makeTable(t testing.TB, entries map[string][]byte) []byte {
	t.Helper()
	var tab abi.CertTable
	for _, g := range []string{abi.ArkGUID, abi.AskGUID, abi.VcekGUID, abi.VlekGUID, abi.AsvkGUID} {
		if b, ok := entries[g]; ok {
			tab.Entries = append(tab.Entries, abi.CertTableEntry{GUID: uuid.MustParse(g), RawCert: b})
		}
	}
	return tab.Marshal()
}

// rawTable builds a one-entry table by hand with any offset and length.
func rawTable(g uuid.UUID, off, length uint32, size int) []byte {
	b := make([]byte, size)
	h := abi.CertTableHeaderEntry{GUID: g, Offset: off, Length: length}
	_ = h.Write(b)
	return b
}

// noTerminator builds a table whose only entry is not followed by the
// all-zero entry, so the parser reads the certificate as more entries.
func noTerminator(cert []byte) []byte {
	b := rawTable(uuid.MustParse(abi.VcekGUID), abi.CertTableEntrySize, uint32(len(cert)), abi.CertTableEntrySize)
	return append(b, cert...)
}

func dupTable(t testing.TB, vcek []byte) []byte {
	t.Helper()
	var tab abi.CertTable
	for i := 0; i < 2; i++ {
		tab.Entries = append(tab.Entries, abi.CertTableEntry{GUID: uuid.MustParse(abi.VcekGUID), RawCert: vcek})
	}
	return tab.Marshal()
}

func TestBuiltinRoots(t *testing.T) {
	roots, err := builtinRoots()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"Milan", "Genoa", "Turin"} {
		r, ok := roots[p]
		if !ok {
			t.Fatalf("no built-in roots for %s", p)
		}
		if r.ark.Subject.CommonName != "ARK-"+p || r.ask.Subject.CommonName != "SEV-"+p || r.asvk.Subject.CommonName != "SEV-VLEK-"+p {
			t.Errorf("%s: names %q %q %q", p, r.ark.Subject.CommonName, r.ask.Subject.CommonName, r.asvk.Subject.CommonName)
		}
		if err := r.ark.CheckSignatureFrom(r.ark); err != nil {
			t.Errorf("%s ARK self-signature: %v", p, err)
		}
		for _, ica := range []*x509.Certificate{r.ask, r.asvk} {
			if err := ica.CheckSignatureFrom(r.ark); err != nil {
				t.Errorf("%s %s not signed by ARK: %v", p, ica.Subject.CommonName, err)
			}
		}
	}
	// The vector's chain file is byte-identical to the built-in Milan pair.
	_, _, askArk := vectors(t)
	certs, err := parsePEMChain(askArk)
	if err != nil {
		t.Fatal(err)
	}
	if !certs[0].Equal(roots["Milan"].ask) || !certs[1].Equal(roots["Milan"].ark) {
		t.Error("ask_ark_milan.pem differs from the built-in Milan ASK/ARK")
	}
}

// fakeSigner builds a complete self-made ARK→ASK→VCEK (and ASVK→VLEK) chain
// with go-sev-guest's builder, with the extensions the real vector's
// report needs (its chip ID and TCB), and re-signs reports with it.
type fakeSigner struct {
	*sevtest.AmdSigner
}

func newFakeSigner(t testing.TB) fakeSigner {
	t.Helper()
	created := time.Date(2022, 1, 1, 0, 0, 0, 0, time.UTC)
	tcb := kds.DecomposeTCBVersion(kds.TCBVersion(vectorTCB))
	b := &sevtest.AmdSignerBuilder{
		ProductName:      "Milan-B0",
		CSPID:            "cloister-test",
		ArkCreationTime:  created,
		AskCreationTime:  created,
		AsvkCreationTime: created,
		VcekCreationTime: created,
		VlekCreationTime: created,
		VcekCustom:       sevtest.CertOverride{Extensions: sevtest.CustomExtensions(tcb, unhex(t, vectorChipID), "", "Milan-B0")},
		VlekCustom:       sevtest.CertOverride{Extensions: sevtest.CustomExtensions(tcb, nil, "cloister-test", "Milan-B0")},
	}
	s, err := b.TestOnlyCertChain()
	if err != nil {
		t.Fatal(err)
	}
	return fakeSigner{s}
}

// sign returns a copy of report re-signed by the fake VCEK or VLEK.
func (s fakeSigner) sign(t testing.TB, report []byte, vlek bool) []byte {
	t.Helper()
	out := bytes.Clone(report)
	if vlek {
		out[0x48] |= byte(abi.VlekReportSigner) << 2
	}
	r, sig, err := s.Sign(abi.SignedComponent(out))
	if err != nil {
		t.Fatal(err)
	}
	if err := abi.SetSignature(r, sig, out); err != nil {
		t.Fatal(err)
	}
	return out
}

func pemOf(certs ...*x509.Certificate) []byte {
	var b []byte
	for _, c := range certs {
		b = append(b, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	return b
}

func TestVerifySelfMadeChain(t *testing.T) {
	report, _, _ := vectors(t)
	fake := newFakeSigner(t)
	signed := fake.sign(t, report, false)

	// Built-in roots: a chain to a self-made ARK is untrusted, whether its
	// ASK comes from the caller or the certificate table.
	_, err := Verify(signed, Options{Time: time2026, VCEK: fake.Vcek.Raw})
	wantReason(t, err, verr.UntrustedRoot)
	_, err = Verify(signed, Options{Time: time2026, VCEK: fake.Vcek.Raw, Chain: pemOf(fake.Ask, fake.Ark)})
	wantReason(t, err, verr.UntrustedRoot)
	table := makeTable(t, map[string][]byte{abi.VcekGUID: fake.Vcek.Raw, abi.AskGUID: fake.Ask.Raw, abi.ArkGUID: fake.Ark.Raw})
	_, err = Verify(signed, Options{Time: time2026, CertTable: table})
	wantReason(t, err, verr.UntrustedRoot)

	// Naming the self-made ARK as trust root makes the same inputs verify:
	// the chain, the signature and the binding are all sound.
	roots := []*x509.Certificate{fake.Ark}
	for name, opts := range map[string]Options{
		"chain":             {Time: time2026, VCEK: fake.Vcek.Raw, Chain: pemOf(fake.Ask, fake.Ark), TrustRoots: roots},
		"certificate table": {Time: time2026, CertTable: table, TrustRoots: roots},
	} {
		t.Run(name, func(t *testing.T) {
			r, err := Verify(signed, opts)
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			checkVectorFields(t, r)
			if r.BuiltinRoot {
				t.Error("BuiltinRoot = true under a self-made ARK")
			}
		})
	}
	// The ASK is needed: the trust root alone does not reach the VCEK.
	_, err = Verify(signed, Options{Time: time2026, VCEK: fake.Vcek.Raw, TrustRoots: roots})
	wantReason(t, err, verr.UntrustedRoot)
	// A report signed by another key fails on the signature, not the chain.
	_, vcek, _ := vectors(t)
	_, err = Verify(signed, Options{Time: time2026, VCEK: vcek})
	wantReason(t, err, verr.BadSignature)
	// The fake VCEK expires seven years after creation.
	_, err = Verify(signed, Options{Time: time.Date(2040, 1, 1, 0, 0, 0, 0, time.UTC), VCEK: fake.Vcek.Raw, Chain: pemOf(fake.Ask), TrustRoots: roots})
	wantReason(t, err, verr.Expired)
}

func TestVerifyVLEK(t *testing.T) {
	report, _, _ := vectors(t)
	fake := newFakeSigner(t)
	signed := fake.sign(t, report, true)
	roots := []*x509.Certificate{fake.Ark}
	table := makeTable(t, map[string][]byte{abi.VlekGUID: fake.Vlek.Raw, abi.AsvkGUID: fake.Asvk.Raw})
	r, err := Verify(signed, Options{Time: time2026, CertTable: table, TrustRoots: roots})
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if r.SignerKind != "VLEK" || r.Product != "Milan" {
		t.Errorf("SignerKind, Product = %q, %q", r.SignerKind, r.Product)
	}
	// A VCEK in the table does not stand in for the VLEK.
	table = makeTable(t, map[string][]byte{abi.VcekGUID: fake.Vcek.Raw, abi.AskGUID: fake.Ask.Raw})
	_, err = Verify(signed, Options{Time: time2026, CertTable: table, TrustRoots: roots})
	wantReason(t, err, verr.MissingCollateral)
	if !strings.Contains(err.Error(), "no VLEK") {
		t.Errorf("error %q does not name the VLEK", err)
	}
	// Built-in roots: untrusted.
	_, err = Verify(signed, Options{Time: time2026, VCEK: fake.Vlek.Raw, Chain: pemOf(fake.Asvk)})
	wantReason(t, err, verr.UntrustedRoot)
}

func TestVerifyBinding(t *testing.T) {
	report, _, _ := vectors(t)
	fake := newFakeSigner(t)
	roots := []*x509.Certificate{fake.Ark}
	chain := pemOf(fake.Ask)

	// Another chip ID, correctly signed: the VCEK does not vouch for it.
	other := bytes.Clone(report)
	other[0x1A0] ^= 1
	_, err := Verify(fake.sign(t, other, false), Options{Time: time2026, VCEK: fake.Vcek.Raw, Chain: chain, TrustRoots: roots})
	wantReason(t, err, verr.BadBinding)

	// Another reported TCB, correctly signed.
	other = bytes.Clone(report)
	other[0x180] = 3
	_, err = Verify(fake.sign(t, other, false), Options{Time: time2026, VCEK: fake.Vcek.Raw, Chain: chain, TrustRoots: roots})
	wantReason(t, err, verr.BadBinding)

	// A masked chip ID is accepted with a warning.
	other = bytes.Clone(report)
	other[0x48] |= 2
	clear(other[0x1A0:0x1E0])
	r, err := Verify(fake.sign(t, other, false), Options{Time: time2026, VCEK: fake.Vcek.Raw, Chain: chain, TrustRoots: roots})
	if err != nil {
		t.Fatalf("masked chip ID: %v", err)
	}
	if len(r.Warnings) != 2 {
		t.Errorf("Warnings = %q, want the masked-chip warning and the revocation warning", r.Warnings)
	}
}

func TestOfflineGetterRefuses(t *testing.T) {
	if _, err := (offlineGetter{}).Get("https://kdsintf.amd.com/vcek/v1/Milan/cert_chain"); err == nil {
		t.Fatal("offlineGetter fetched")
	}
}

// TestVerifyTurinUnsupported: a version 3 report from a Turin CPU with a
// Turin-style VCEK (fmcSPL extension) is reported as Unsupported, since
// go-sev-guest v0.15.0 cannot read that certificate.
func TestVerifyTurinUnsupported(t *testing.T) {
	report, _, _ := vectors(t)
	created := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	fmc, err := asn1.Marshal(1)
	if err != nil {
		t.Fatal(err)
	}
	exts := append(sevtest.CustomExtensions(kds.DecomposeTCBVersion(kds.TCBVersion(vectorTCB)), unhex(t, vectorChipID), "", "Turin-B0"),
		pkix.Extension{Id: asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 3704, 1, 3, 9}, Value: fmc})
	b := &sevtest.AmdSignerBuilder{
		ProductName:      "Turin-B0",
		ArkCreationTime:  created,
		AskCreationTime:  created,
		AsvkCreationTime: created,
		VcekCreationTime: created,
		VlekCreationTime: created,
		VcekCustom:       sevtest.CertOverride{Extensions: exts},
	}
	s, err := b.TestOnlyCertChain()
	if err != nil {
		t.Fatal(err)
	}
	v3 := bytes.Clone(report)
	binary.LittleEndian.PutUint32(v3[0:4], 3)
	v3[0x188], v3[0x189], v3[0x18A] = 0x1A, 0x02, 0x00 // family 1Ah model 02h: Turin
	signed := fakeSigner{s}.sign(t, v3, false)
	_, err = Verify(signed, Options{Time: time2026, VCEK: s.Vcek.Raw, Chain: pemOf(s.Ask), TrustRoots: []*x509.Certificate{s.Ark}})
	wantReason(t, err, verr.Unsupported)
	if !strings.Contains(err.Error(), "Turin") {
		t.Errorf("error %q does not name Turin", err)
	}
}

// TestVerifyChipIDMask follows go-sev-guest's validate: the VCEK's hwID
// comparison is skipped only when CHIP_ID is all zero (the MASK_CHIP_ID
// case), whatever SIGNER_INFO's MASK_CHIP_KEY bit says; the bit is about
// the chip key, not CHIP_ID, and a report that names another chip is not
// vouched for by this VCEK.
func TestVerifyChipIDMask(t *testing.T) {
	report, _, _ := vectors(t)
	fake := newFakeSigner(t)
	opts := Options{Time: time2026, VCEK: fake.Vcek.Raw, Chain: pemOf(fake.Ask), TrustRoots: []*x509.Certificate{fake.Ark}}

	// All-zero CHIP_ID, MASK_CHIP_KEY clear: verifies, with the warning.
	zero := bytes.Clone(report)
	zero[0x48] &^= 2
	clear(zero[0x1A0:0x1E0])
	r, err := Verify(fake.sign(t, zero, false), opts)
	if err != nil {
		t.Fatalf("all-zero CHIP_ID with MASK_CHIP_KEY clear: %v", err)
	}
	if !slices.Contains(r.Warnings, WarnChipIDMasked) {
		t.Errorf("Warnings = %q, want %q", r.Warnings, WarnChipIDMasked)
	}

	// Another chip's ID with MASK_CHIP_KEY set: the bit excuses nothing.
	wrong := bytes.Clone(report)
	wrong[0x48] |= 2
	wrong[0x1A0] ^= 0x55
	_, err = Verify(fake.sign(t, wrong, false), opts)
	wantReason(t, err, verr.BadBinding)

	// The VCEK's own CHIP_ID with MASK_CHIP_KEY set verifies, no warning.
	own := bytes.Clone(report)
	own[0x48] |= 2
	r, err = Verify(fake.sign(t, own, false), opts)
	if err != nil {
		t.Fatalf("own CHIP_ID with MASK_CHIP_KEY set: %v", err)
	}
	if slices.Contains(r.Warnings, WarnChipIDMasked) {
		t.Errorf("Warnings = %q: a real CHIP_ID is not masked", r.Warnings)
	}
}

// TestVerifyCertTCBAboveCurrent follows go-sev-guest's validate: the
// signing key's TCB (which REPORTED_TCB equals) must not exceed CURRENT_TCB
// in any component, since firmware can only derive keys at or below the TCB
// it runs; a report saying otherwise is inconsistent and refused, for a
// VCEK and a VLEK alike. Equal and lower certificate TCBs verify.
func TestVerifyCertTCBAboveCurrent(t *testing.T) {
	report, _, _ := vectors(t)
	fake := newFakeSigner(t)
	for _, vlek := range []bool{false, true} {
		opts := Options{Time: time2026, VCEK: fake.Vcek.Raw, Chain: pemOf(fake.Ask), TrustRoots: []*x509.Certificate{fake.Ark}}
		if vlek {
			opts.VCEK, opts.Chain = fake.Vlek.Raw, pemOf(fake.Asvk)
		}
		// CURRENT_TCB's SNP level (byte 6) one below the certificate's,
		// every other level higher: no trading between components.
		low := bytes.Clone(report)
		cur := binary.LittleEndian.Uint64(low[0x38:])
		cur = cur + 0x01 + 0x0100 + 0x0100000000000000 - 0x0001000000000000
		binary.LittleEndian.PutUint64(low[0x38:], cur)
		binary.LittleEndian.PutUint64(low[0x1E0:], cur) // committed = current
		_, err := Verify(fake.sign(t, low, vlek), opts)
		wantReason(t, err, verr.BadBinding)
		if err != nil && !strings.Contains(err.Error(), "CURRENT_TCB") {
			t.Errorf("vlek %v: error %q does not name CURRENT_TCB", vlek, err)
		}

		// A CURRENT_TCB above the certificate's in every component verifies.
		high := bytes.Clone(report)
		binary.LittleEndian.PutUint64(high[0x38:], binary.LittleEndian.Uint64(high[0x38:])+0x0101000000000101)
		if _, err := Verify(fake.sign(t, high, vlek), opts); err != nil {
			t.Errorf("vlek %v: CURRENT_TCB above the certificate's: %v", vlek, err)
		}
	}
}
