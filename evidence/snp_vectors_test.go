package evidence

import (
	"bytes"
	"context"
	"reflect"
	"testing"
	"time"

	"github.com/cloister-dev/cloister/evidence/tsmreport"
	"github.com/google/go-sev-guest/abi"
	"github.com/google/uuid"
)

// snpTime is go-sev-guest's VCEK chain test time.
var snpTime = time.Date(2022, 9, 24, 1, 0, 0, 0, time.UTC)

func TestSNPVector(t *testing.T) {
	raw := readVector(t, "snp/attestation.bin")
	vcek := readVector(t, "snp/vcek.testcer")
	check := func(t *testing.T, c *Claims) {
		t.Helper()
		if c.TEE != TEESNP || c.TCBStatus != StatusNotEvaluated || !c.Debug || c.Product != "Milan" || c.VMPL != 0 {
			t.Errorf("tee %q status %q debug %v product %q vmpl %d", c.TEE, c.TCBStatus, c.Debug, c.Product, c.VMPL)
		}
		eq(t, "measurement", c.Measurement, unhex("b07af9620f3b839b47996422ddec6058338951d984e312115131ea82705eaf5b6bdf8a9ece31a5a608eb0cf2e4872b01"))
		eq(t, "report_data", c.ReportData, append(unhex("0102030405"), make([]byte, 59)...))
		eq(t, "report_id", c.ReportID, unhex("8edc638e1857c555d21f6b11bda3c8b1b5a09dba4852b4c8ee7aa2f16f22cc0a"))
		if c.Policy != 0xb0000 {
			t.Errorf("policy %#x", c.Policy)
		}
	}
	t.Run("raw report with VCEK", func(t *testing.T) {
		c, err := Verify(context.Background(), raw, Options{Time: snpTime, VCEK: vcek})
		if err != nil {
			t.Fatal(err)
		}
		check(t, c)
	})
	t.Run("raw report without VCEK", func(t *testing.T) {
		_, err := Verify(context.Background(), raw, Options{Time: snpTime})
		if r, _ := ReasonOf(err); r != MissingCollateral {
			t.Fatalf("%v; want MissingCollateral", err)
		}
	})
	t.Run("configfs-tsm report, VCEK from the auxblob", func(t *testing.T) {
		table := (&abi.CertTable{Entries: []abi.CertTableEntry{{GUID: uuidVCEK(), RawCert: vcek}}}).Marshal()
		r := &tsmreport.Report{Provider: tsmreport.ProviderSNP, OutBlob: raw, AuxBlob: table}
		for _, enc := range []func() ([]byte, error){r.EncodeJSON, r.EncodeCBOR} {
			b, err := enc()
			if err != nil {
				t.Fatal(err)
			}
			c, err := Verify(context.Background(), b, Options{Time: snpTime})
			if err != nil {
				t.Fatal(err)
			}
			check(t, c)
		}
	})
	t.Run("configfs-tsm report carrying a TDX quote", func(t *testing.T) {
		r := &tsmreport.Report{Provider: tsmreport.ProviderTDX, OutBlob: readVector(t, "tdx/dcap-qvl_tdx_quote_v4.bin")}
		b, err := r.EncodeJSON()
		if err != nil {
			t.Fatal(err)
		}
		c, err := Verify(context.Background(), b, Options{Time: dcapQVLTime, Collateral: bundleVector(t, "tdx/dcap-qvl_tdx_quote_v4_collateral.json")})
		if err != nil || c.TEE != TEETDX || c.TCBStatus != StatusUpToDate {
			t.Fatalf("%v %+v", err, c)
		}
	})
	t.Run("provider and outblob disagree", func(t *testing.T) {
		r := &tsmreport.Report{Provider: tsmreport.ProviderTDX, OutBlob: raw}
		b, _ := r.EncodeJSON()
		if _, err := Verify(context.Background(), b, Options{Time: snpTime, VCEK: vcek}); err == nil {
			t.Fatal("an SNP report under provider tdx_guest verified")
		}
	})
}

func uuidVCEK() uuid.UUID { return uuid.MustParse(abi.VcekGUID) }

// TestVeraisonTSMEvidence verifies real tsm-report evidence as Veraison's
// ratsd writes it (provider "sev_guest\n", testdata/README.md): through
// the configfs-tsm path, its claims are exactly those of the report inside
// it verified on its own with the auxblob's VCEK, and the CBOR form of the
// same report gives the same claims.
func TestVeraisonTSMEvidence(t *testing.T) {
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	data := readVector(t, "snp/veraison-sevsnp-tsm-report.json")
	c, err := Verify(context.Background(), data, Options{Time: at})
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if c.TEE != TEESNP || c.Product != "Genoa" || c.TCBStatus != StatusNotEvaluated || c.Debug || c.VMPL != 0 || c.Policy != 0x30000 {
		t.Errorf("tee %q product %q status %q debug %v vmpl %d policy %#x", c.TEE, c.Product, c.TCBStatus, c.Debug, c.VMPL, c.Policy)
	}
	eq(t, "measurement", c.Measurement, unhex("7699e6ac12ccdfd1dfac70e649ce1f046cb2afbb003438f4cdddfe2ccbe182fa5ffbe8dcdb930454324e10c52c788980"))
	spl := SNPTCB{BootLoader: 10, TEE: 0, SNP: 23, Microcode: 84}
	if c.Signer != SNPSignerVCEK || c.ReportedTCB != 0x541700000000000a || c.LaunchTCB != 0x541700000000000a || c.ReportedSPL != spl || c.LaunchSPL != spl {
		t.Errorf("signer %q reported %#x %+v launch %#x %+v", c.Signer, c.ReportedTCB, c.ReportedSPL, c.LaunchTCB, c.LaunchSPL)
	}

	r, err := tsmreport.Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	var tab abi.CertTable
	if err := tab.Unmarshal(r.AuxBlob); err != nil {
		t.Fatal(err)
	}
	var vcek []byte
	for _, e := range tab.Entries {
		if e.GUID == uuidVCEK() {
			vcek = e.RawCert
		}
	}
	inner, err := Verify(context.Background(), r.OutBlob, Options{Time: at, VCEK: vcek})
	if err != nil {
		t.Fatalf("the inner report with its VCEK: %v", err)
	}
	if !reflect.DeepEqual(c, inner) {
		t.Errorf("tsm-report claims differ from the inner report's:\n%+v\n%+v", c, inner)
	}
	cb, err := r.EncodeCBOR()
	if err != nil {
		t.Fatal(err)
	}
	viaCBOR, err := Verify(context.Background(), cb, Options{Time: at})
	if err != nil {
		t.Fatalf("CBOR form: %v", err)
	}
	if !reflect.DeepEqual(c, viaCBOR) {
		t.Errorf("CBOR claims differ:\n%+v\n%+v", c, viaCBOR)
	}
	// A second newline is not the kernel's line end: refused.
	bad := bytes.Replace(data, []byte(`"sev_guest\n"`), []byte(`"sev_guest\n\n"`), 1)
	if _, err := Verify(context.Background(), bad, Options{Time: at}); err == nil {
		t.Error("provider with two newlines verified")
	}
}

// TestDCAPQuote: the quote inside a tdx_guest configfs-tsm report is found
// (with or without the kernel's newline) and queried for collateral like
// the bare quote; SNP evidence carries none.
func TestDCAPQuote(t *testing.T) {
	q := readVector(t, "tdx/dcap-qvl_tdx_quote_v4.bin")
	js, err := (&tsmreport.Report{Provider: tsmreport.ProviderTDX, OutBlob: q}).EncodeJSON()
	if err != nil {
		t.Fatal(err)
	}
	kernel := bytes.Replace(js, []byte(`"tdx_guest"`), []byte(`"tdx_guest\n"`), 1)
	want, err := CollateralQuery(q)
	if err != nil {
		t.Fatal(err)
	}
	for _, raw := range [][]byte{q, js, kernel} {
		got, ok := DCAPQuote(raw)
		if !ok || !bytes.Equal(got, q) {
			t.Errorf("DCAPQuote(%.20q) = %d bytes, %v", raw, len(got), ok)
		}
		qq, err := CollateralQuery(raw)
		if err != nil || !reflect.DeepEqual(qq, want) {
			t.Errorf("CollateralQuery(%.20q) = %+v, %v; want %+v", raw, qq, err, want)
		}
	}
	snpTSM := readVector(t, "snp/veraison-sevsnp-tsm-report.json")
	mislabelled, _ := (&tsmreport.Report{Provider: tsmreport.ProviderSNP, OutBlob: q}).EncodeJSON()
	for _, raw := range [][]byte{snpTSM, readVector(t, "snp/attestation.bin"), mislabelled, []byte("{}")} {
		if _, ok := DCAPQuote(raw); ok {
			t.Errorf("DCAPQuote(%.20q) found a DCAP quote", raw)
		}
		if _, err := CollateralQuery(raw); err == nil {
			t.Errorf("CollateralQuery(%.20q) succeeded", raw)
		}
	}
}
