package tsm

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cloister-dev/cloister/evidence"
	"github.com/cloister-dev/cloister/evidence/pcs"
	"github.com/cloister-dev/cloister/evidence/snp"
	"github.com/cloister-dev/cloister/evidence/tsmreport"
	"github.com/cloister-dev/cloister/tee"
	"github.com/google/go-configfs-tsm/configfs/configfsi"
	"github.com/google/go-configfs-tsm/configfs/faketsm"
	"github.com/google/go-configfs-tsm/report"
)

// Facts about testdata/snp/attestation.bin (testdata/README.md).
const snpVectorMeasurement = "b07af9620f3b839b47996422ddec6058338951d984e312115131ea82705eaf5b6bdf8a9ece31a5a608eb0cf2e4872b01"

// dcapQVLTime is inside the validity window of the dcap-qvl collateral.
var dcapQVLTime = time.Date(2025, 7, 1, 0, 0, 0, 0, time.UTC)

func tdxBundle(t *testing.T) *pcs.Bundle {
	t.Helper()
	b, err := pcs.ParseBundle(readVector(t, "tdx", "dcap-qvl_tdx_quote_v4_collateral.json"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// snpVerifyTime is inside vcek.testcer's validity (go-sev-guest pins it).
var snpVerifyTime = time.Date(2022, 9, 24, 1, 0, 0, 0, time.UTC)

func openFake(t *testing.T, f *fakeProvider, cfg Config) *Platform {
	t.Helper()
	if cfg.Client == nil {
		cfg.Client = f.client()
	}
	p, err := Open(context.Background(), cfg)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return p.(*Platform)
}

func parseEvidence(t *testing.T, ev []byte) *tsmreport.Report {
	t.Helper()
	r, err := tsmreport.Parse(ev)
	if err != nil {
		t.Fatalf("tsmreport.Parse(Evidence()): %v\n%s", err, ev)
	}
	return r
}

func TestSNPOpenIdentity(t *testing.T) {
	v := loadSNP(t)
	p := openFake(t, &fakeProvider{name: "sev_guest", outBlob: snpOutBlob(t, v, 0), aux: v.certTable}, Config{})
	if p.Kind() != tee.KindSNP {
		t.Errorf("Kind = %q, want %q", p.Kind(), tee.KindSNP)
	}
	id := p.Identity()
	if got := hex.EncodeToString(id.Measurement); got != snpVectorMeasurement {
		t.Errorf("Measurement = %s, want %s", got, snpVectorMeasurement)
	}
	// Policy 0xb0000 has bit 19 (DEBUG) set; AUTHOR_KEY_DIGEST is zero.
	if !id.Debug {
		t.Error("Debug = false, want true (policy bit 19 is set in the vector)")
	}
	if id.Signer != nil || id.SVN != 0 || id.ProductID != 0 {
		t.Errorf("Signer, SVN, ProductID = %x, %d, %d; want nil, 0, 0", id.Signer, id.SVN, id.ProductID)
	}
	// Identity hands out copies.
	id.Measurement[0] ^= 0xff
	if bytes.Equal(p.Identity().Measurement, id.Measurement) {
		t.Error("Identity shares its Measurement slice with the caller")
	}
}

func TestSNPAuthorKeyIsSigner(t *testing.T) {
	v := loadSNP(t)
	author := bytes.Repeat([]byte{0xa5}, 48)
	base := snpOutBlob(t, v, 0)
	mk := func(in []byte) ([]byte, error) {
		out, err := base(in)
		copy(out[0x110:0x140], author) // AUTHOR_KEY_DIGEST
		out[0x48] |= 1                 // AUTHOR_KEY_EN
		return out, err
	}
	p := openFake(t, &fakeProvider{name: "sev_guest", outBlob: mk, aux: v.certTable}, Config{})
	if got := p.Identity().Signer; !bytes.Equal(got, author) {
		t.Errorf("Signer = %x, want the author key digest %x", got, author)
	}
}

// TestSNPEvidenceVerifies runs the real Milan report through the fake
// sev_guest provider with the report data it was made for: the evidence
// must carry the report and the certificate table unchanged, and verify.
func TestSNPEvidenceVerifies(t *testing.T) {
	v := loadSNP(t)
	p := openFake(t, &fakeProvider{name: "sev_guest", outBlob: snpOutBlob(t, v, 0), aux: v.certTable}, Config{})
	ev, err := p.Evidence(context.Background(), v.reportData)
	if err != nil {
		t.Fatalf("Evidence: %v", err)
	}
	r := parseEvidence(t, ev)
	if r.Provider != "sev_guest" || !bytes.Equal(r.OutBlob, v.report) || !bytes.Equal(r.AuxBlob, v.certTable) {
		t.Fatalf("round trip: provider %q, outblob equal %v, auxblob equal %v", r.Provider, bytes.Equal(r.OutBlob, v.report), bytes.Equal(r.AuxBlob, v.certTable))
	}
	again, err := r.EncodeJSON()
	if err != nil || !bytes.Equal(again, ev) {
		t.Errorf("re-encoding the parsed evidence gives different bytes (err %v)", err)
	}

	// The SNP verifier, with only what the evidence carries.
	rep, err := snp.Verify(r.OutBlob, snp.Options{Time: snpVerifyTime, CertTable: r.AuxBlob})
	if err != nil {
		t.Fatalf("snp.Verify(outblob, auxblob): %v", err)
	}
	if rep.ReportData != v.reportData || hex.EncodeToString(rep.Measurement[:]) != snpVectorMeasurement {
		t.Errorf("verified report data %x, measurement %x", rep.ReportData, rep.Measurement)
	}

}

func TestTDXOpenAndEvidence(t *testing.T) {
	v := loadTDX(t)
	// aux nil: tdx_guest has no auxblob attribute, so this also checks
	// that none is asked for on TDX.
	p := openFake(t, &fakeProvider{name: "tdx_guest", outBlob: tdxOutBlob(t, v)}, Config{})
	if p.Kind() != tee.KindTDX {
		t.Errorf("Kind = %q, want %q", p.Kind(), tee.KindTDX)
	}
	id := p.Identity()
	if !bytes.Equal(id.Measurement, v.mrtd) || id.Signer != nil {
		t.Errorf("Identity = MRTD %x signer %x, want MRTD %x and no signer", id.Measurement, id.Signer, v.mrtd)
	}
	ev, err := p.Evidence(context.Background(), v.reportData)
	if err != nil {
		t.Fatalf("Evidence: %v", err)
	}
	r := parseEvidence(t, ev)
	if r.Provider != "tdx_guest" || !bytes.Equal(r.OutBlob, v.quote) || r.AuxBlob != nil {
		t.Fatalf("round trip: provider %q, outblob equal %v, auxblob %d bytes", r.Provider, bytes.Equal(r.OutBlob, v.quote), len(r.AuxBlob))
	}
	if evidence.Detect(ev) != evidence.KindTSMReport {
		t.Errorf("evidence.Detect = %v, want KindTSMReport", evidence.Detect(ev))
	}
	// The outblob is the real quote, and verifies as one.
	claims, err := evidence.Verify(context.Background(), r.OutBlob, evidence.Options{Time: dcapQVLTime, Collateral: tdxBundle(t)})
	if err != nil {
		t.Fatalf("evidence.Verify(outblob): %v", err)
	}
	if !bytes.Equal(claims.ReportData, v.reportData[:]) {
		t.Errorf("verified report data %x, want %x", claims.ReportData, v.reportData)
	}
}

// TestEvidenceVerifyTSMReport sends the JSON evidence itself through
// evidence.Verify, the way a relying party receives it.
func TestEvidenceVerifyTSMReport(t *testing.T) {
	snpV, tdxV := loadSNP(t), loadTDX(t)
	cases := []struct {
		name string
		f    *fakeProvider
		rd   [64]byte
		opts evidence.Options
	}{
		{"sev_guest", &fakeProvider{name: "sev_guest", outBlob: snpOutBlob(t, snpV, 0), aux: snpV.certTable}, snpV.reportData,
			evidence.Options{Time: snpVerifyTime}},
		{"tdx_guest", &fakeProvider{name: "tdx_guest", outBlob: tdxOutBlob(t, tdxV)}, tdxV.reportData,
			evidence.Options{Time: dcapQVLTime, Collateral: tdxBundle(t)}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := openFake(t, tc.f, Config{})
			ev, err := p.Evidence(context.Background(), tc.rd)
			if err != nil {
				t.Fatal(err)
			}
			claims, err := evidence.Verify(context.Background(), ev, tc.opts)
			if err != nil {
				t.Fatalf("evidence.Verify(tsm-report JSON): %v", err)
			}
			if !bytes.Equal(claims.ReportData, tc.rd[:]) {
				t.Errorf("verified report data %x, want %x", claims.ReportData, tc.rd)
			}
			// tee.Kind values are the claims' tee.
			if string(claims.TEE) != string(p.Kind()) {
				t.Errorf("claims tee %q, platform kind %q", claims.TEE, p.Kind())
			}
		})
	}
}

func TestTDXDebugAttribute(t *testing.T) {
	v := loadTDX(t)
	base := tdxOutBlob(t, v)
	mk := func(in []byte) ([]byte, error) {
		out, err := base(in)
		out[48+16+48+48+8] |= 1 // TDATTRIBUTES bit 0: DEBUG
		return out, err
	}
	p := openFake(t, &fakeProvider{name: "tdx_guest", outBlob: mk}, Config{})
	if !p.Identity().Debug {
		t.Error("Debug = false with the TD DEBUG attribute set")
	}
}

func TestUnsupportedProvider(t *testing.T) {
	for _, name := range []string{"arm_cca_guest", "fake"} {
		t.Run(name, func(t *testing.T) {
			var c configfsi.Client = (&fakeProvider{name: name, outBlob: func([]byte) ([]byte, error) { return []byte("x"), nil }}).client()
			if name == "fake" {
				// go-configfs-tsm's own fake provider, as shipped.
				c = &faketsm.Client{Subsystems: map[string]configfsi.Client{"report": faketsm.Report611(0)}}
			}
			_, err := Open(context.Background(), Config{Client: c})
			if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("provider %q is not supported", name)) || !strings.HasPrefix(err.Error(), "tsm: ") {
				t.Fatalf("Open = %v, want a tsm error naming provider %q", err, name)
			}
		})
	}
}

// TestReportDataMismatch: a provider that hands back a report made for
// other report data (here: the vector's, whatever we wrote) is refused.
func TestReportDataMismatch(t *testing.T) {
	v := loadSNP(t)
	honest := snpOutBlob(t, v, 0)
	var zero [64]byte
	mk := func(in []byte) ([]byte, error) {
		if bytes.Equal(in, zero[:]) {
			return honest(in) // let Open succeed
		}
		return bytes.Clone(v.report), nil
	}
	p := openFake(t, &fakeProvider{name: "sev_guest", outBlob: mk, aux: v.certTable}, Config{})
	var rd [64]byte
	copy(rd[:], "someone else")
	ev, err := p.Evidence(context.Background(), rd)
	if err == nil || !strings.Contains(err.Error(), "report data mismatch") {
		t.Fatalf("Evidence = %d bytes, %v; want a report data mismatch", len(ev), err)
	}
}

// TestGenerationInterference writes a foreign inblob into our entry
// between our write and our outblob read. go-configfs-tsm's report.Get
// must notice through the generation counter; Evidence must fail with the
// *report.GenerationErr in its chain, and return no evidence.
func TestGenerationInterference(t *testing.T) {
	v := loadTDX(t)
	f := &fakeProvider{name: "tdx_guest", outBlob: tdxOutBlob(t, v)}
	c := &interferer{Client: f.client()}
	p := openFake(t, f, Config{Client: c})
	c.arm()
	ev, err := p.Evidence(context.Background(), v.reportData)
	if err == nil {
		t.Fatalf("Evidence succeeded (%d bytes) although another writer changed the entry", len(ev))
	}
	var gen *report.GenerationErr
	if !errors.As(err, &gen) {
		t.Fatalf("Evidence error %v has no *report.GenerationErr in its chain", err)
	}
	if gen.Got != gen.Want+1 || ev != nil {
		t.Errorf("generation got %d want %d, evidence %d bytes", gen.Got, gen.Want, len(ev))
	}
	if c.hits == 0 {
		t.Error("the interferer never ran")
	}
}

func TestPrivlevel(t *testing.T) {
	v := loadSNP(t)
	two := uint(2)
	f := &fakeProvider{name: "sev_guest", outBlob: snpOutBlob(t, v, 2), aux: v.certTable}
	p := openFake(t, f, Config{Privlevel: &two})
	if _, err := p.Evidence(context.Background(), v.reportData); err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	got := f.privlevels
	f.mu.Unlock()
	if len(got) != 2 || got[0] != "2" || got[1] != "2" {
		t.Errorf("privlevels written = %q, want [2 2] (identity report, evidence)", got)
	}
	if p.vmpl != 2 {
		t.Errorf("vmpl from the identity report = %d, want 2", p.vmpl)
	}

	four := uint(4)
	if _, err := Open(context.Background(), Config{Client: f.client(), Privlevel: &four}); err == nil || !strings.Contains(err.Error(), "privlevel 4") {
		t.Errorf("Open(privlevel 4) = %v, want a range error", err)
	}
	zero := uint(0)
	floor := &fakeProvider{name: "sev_guest", outBlob: snpOutBlob(t, v, 0), floor: 1}
	if _, err := Open(context.Background(), Config{Client: floor.client(), Privlevel: &zero}); err == nil {
		t.Error("Open with privlevel below the provider's floor succeeded")
	}
}

func TestContextCancelled(t *testing.T) {
	v := loadTDX(t)
	f := &fakeProvider{name: "tdx_guest", outBlob: tdxOutBlob(t, v)}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Open(ctx, Config{Client: f.client()}); !errors.Is(err, context.Canceled) {
		t.Errorf("Open(cancelled) = %v", err)
	}
	p := openFake(t, f, Config{})
	if _, err := p.Evidence(ctx, v.reportData); !errors.Is(err, context.Canceled) {
		t.Errorf("Evidence(cancelled) = %v", err)
	}
}

// TestConcurrentEvidence: goroutines sharing one Platform each get
// evidence for their own report data, never another's.
func TestConcurrentEvidence(t *testing.T) {
	v := loadTDX(t)
	p := openFake(t, &fakeProvider{name: "tdx_guest", outBlob: tdxOutBlob(t, v)}, Config{})
	const workers, rounds = 4, 8
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range rounds {
				var rd [64]byte
				copy(rd[:], fmt.Sprintf("worker %d round %d", w, i))
				ev, err := p.Evidence(context.Background(), rd)
				if err != nil {
					t.Error(err)
					return
				}
				r, err := tsmreport.Parse(ev)
				if err != nil {
					t.Error(err)
					return
				}
				if got := r.OutBlob[tdxReportDataOffset : tdxReportDataOffset+64]; !bytes.Equal(got, rd[:]) {
					t.Errorf("worker %d got report data %q", w, got)
				}
			}
		}()
	}
	wg.Wait()
}

// TestRealConfigfsAbsent runs Open against the real configfs-tsm, which
// this (non-confidential) machine does not have: the error must say so.
func TestRealConfigfsAbsent(t *testing.T) {
	if _, err := os.Stat(configfsi.TsmPrefix + "/report"); err == nil {
		t.Skipf("%s/report exists: this is a confidential guest", configfsi.TsmPrefix)
	}
	_, err := Open(context.Background(), Config{})
	if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), "configfs-tsm is not available") {
		t.Fatalf("Open(real configfs) here = %v, want fs.ErrNotExist and a clear message", err)
	}
}
