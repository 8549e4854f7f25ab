package snp

import (
	"encoding/hex"
	"testing"
	"time"

	"github.com/cloister-dev/cloister/evidence/internal/verr"
	"github.com/cloister-dev/cloister/evidence/tsmreport"
	"github.com/google/go-sev-guest/abi"
)

// Facts about the Veraison vector (testdata/README.md, snp/): a real Genoa
// report, version 3, with its KDS certificates in the configfs-tsm auxblob.
const (
	veraisonMeasurement = "7699e6ac12ccdfd1dfac70e649ce1f046cb2afbb003438f4cdddfe2ccbe182fa5ffbe8dcdb930454324e10c52c788980"
	veraisonChipID      = "7b1584c94c7a426164b2db1198903db0685b7f5fdabdf42d4da981b0de521d1d5d5d8a91932bbbc1b13f5d5cae45a7304657d9a9d01c50c435670f0562a5970b"
	veraisonTCB         = 0x541700000000000a // boot loader 10, TEE 0, SNP 23, microcode 84
)

var (
	veraisonVCEKNotBefore = time.Date(2025, 4, 20, 18, 31, 36, 0, time.UTC)
	veraisonVCEKNotAfter  = time.Date(2032, 4, 20, 18, 31, 36, 0, time.UTC)
)

// veraisonVector returns the outblob and auxblob of Veraison's evidence.
func veraisonVector(t testing.TB) (report, table []byte) {
	t.Helper()
	r, err := tsmreport.Parse(readVector(t, "veraison-sevsnp-tsm-report.json"))
	if err != nil {
		t.Fatal(err)
	}
	return r.OutBlob, r.AuxBlob
}

// TestVerifyVeraisonVector verifies real evidence from a Genoa machine
// against the built-in AMD roots, with only the certificate table it
// carries.
func TestVerifyVeraisonVector(t *testing.T) {
	report, table := veraisonVector(t)
	for _, at := range []time.Time{veraisonVCEKNotBefore, time2026, veraisonVCEKNotAfter} {
		r, err := Verify(report, Options{Time: at, CertTable: table})
		if err != nil {
			t.Fatalf("at %v: %v", at, err)
		}
		if got := hex.EncodeToString(r.Measurement[:]); got != veraisonMeasurement {
			t.Errorf("Measurement = %s", got)
		}
		if got := hex.EncodeToString(r.ChipID[:]); got != veraisonChipID {
			t.Errorf("ChipID = %s", got)
		}
		if r.Product != ProductGenoa || r.SignerKind != "VCEK" || r.ReportedTCB != veraisonTCB || r.LaunchTCB != veraisonTCB ||
			r.CurrentTCB != veraisonTCB || r.CommittedTCB != veraisonTCB ||
			r.Policy != 0x30000 || r.VMPL != 0 || r.GuestSVN != 0 || r.Debug || !r.BuiltinRoot {
			t.Errorf("Report = %+v", r)
		}
		if want := "MIDBNH28iioisjPyxxxxxxxxxxxxxxxxMIDBNH28iioisjPyxxxxxxxxxxxxxxxx"; string(r.ReportData[:]) != want {
			t.Errorf("ReportData = %q, want %q", r.ReportData, want)
		}
	}
	for _, at := range []time.Time{veraisonVCEKNotBefore.Add(-time.Second), veraisonVCEKNotAfter.Add(time.Second)} {
		_, err := Verify(report, Options{Time: at, CertTable: table})
		wantReason(t, err, verr.Expired)
	}
	// Milan is the wrong product line for this report.
	_, err := Verify(report, Options{Time: time2026, CertTable: table, Product: ProductMilan})
	wantReason(t, err, verr.CollateralMismatch)
}

// TestVeraisonTableIsAMDs: the ASK and ARK the evidence carries are
// byte for byte the built-in Genoa ones, so the verification above owes
// nothing to them (the table's ARK is never trusted in any case).
func TestVeraisonTableIsAMDs(t *testing.T) {
	_, table := veraisonVector(t)
	var tab abi.CertTable
	if err := tab.Unmarshal(table); err != nil {
		t.Fatal(err)
	}
	roots, err := builtinRoots()
	if err != nil {
		t.Fatal(err)
	}
	genoa := roots[ProductGenoa]
	seen := map[string]bool{}
	for _, e := range tab.Entries {
		c, err := parseCert(e.RawCert, stepCertTable, e.GUID.String())
		if err != nil {
			t.Fatal(err)
		}
		switch e.GUID.String() {
		case abi.ArkGUID:
			seen["ARK"] = c.Equal(genoa.ark)
		case abi.AskGUID:
			seen["ASK"] = c.Equal(genoa.ask)
		case abi.VcekGUID:
			seen["VCEK"] = c.CheckSignatureFrom(genoa.ask) == nil
		}
	}
	for _, k := range []string{"ARK", "ASK", "VCEK"} {
		if !seen[k] {
			t.Errorf("%s: missing or not AMD's Genoa certificate", k)
		}
	}
}

// TestSplitTCB: the Milan/Genoa layout, checked on both vectors' TCBs.
func TestSplitTCB(t *testing.T) {
	for v, want := range map[uint64]TCBParts{
		vectorTCB:          {BootLoader: 2, TEE: 0, SNP: 5, Microcode: 68},
		veraisonTCB:        {BootLoader: 10, TEE: 0, SNP: 23, Microcode: 84},
		0x0800000000000301: {BootLoader: 1, TEE: 3, SNP: 0, Microcode: 8},
	} {
		if got := SplitTCB(v); got != want {
			t.Errorf("SplitTCB(%#x) = %+v, want %+v", v, got, want)
		}
	}
}
