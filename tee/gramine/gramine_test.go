package gramine

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cloister-dev/cloister/evidence"
	"github.com/cloister-dev/cloister/evidence/pcs"
	"github.com/cloister-dev/cloister/evidence/sgx"
	"github.com/cloister-dev/cloister/seal"
	"github.com/cloister-dev/cloister/tee"
)

// dcapQVLTime is inside the validity window of the dcap-qvl collateral.
var dcapQVLTime = time.Date(2025, 7, 1, 0, 0, 0, 0, time.UTC)

// Raw seal keys of the fake tree.
var (
	keyMRENCLAVE = bytes.Repeat([]byte{0xe1}, sealKeySize)
	keyMRSIGNER  = bytes.Repeat([]byte{0x51}, sealKeySize)
)

func readVector(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "testdata", "sgx", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// vector is the real SGX quote v3 from dcap-qvl, whose REPORTDATA is
// "Hello, world!" and zeros.
type vector struct {
	quote      []byte
	parsed     *sgx.Quote
	reportData [64]byte
}

func loadVector(t testing.TB) vector {
	t.Helper()
	raw := readVector(t, "dcap-qvl_sgx_quote_v3.bin")
	q, err := sgx.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	v := vector{quote: raw, parsed: q}
	copy(v.reportData[:], "Hello, world!")
	if q.Report.ReportData != v.reportData {
		t.Fatalf("vector report data is %q, testdata/README.md says \"Hello, world!\"", q.Report.ReportData)
	}
	return v
}

// fakeTree builds a Gramine /dev/attestation look-alike in a temporary
// directory. The quote is a static file, so it cannot react to
// user_report_data: tests that want success write the vector's report
// data. files overrides or, with a nil value, removes entries.
func fakeTree(t *testing.T, v vector, files map[string][]byte) string {
	t.Helper()
	root := t.TempDir()
	tree := map[string][]byte{
		fileAttestationType: []byte("dcap"),
		fileUserReportData:  {},
		fileQuote:           v.quote,
		fileKeyMRENCLAVE:    keyMRENCLAVE,
		fileKeyMRSIGNER:     keyMRSIGNER,
	}
	for name, b := range files {
		tree[name] = b
	}
	for name, b := range tree {
		if b == nil {
			continue
		}
		path := filepath.Join(root, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func openTree(t *testing.T, root string) *Platform {
	t.Helper()
	p, err := Open(context.Background(), Config{Root: root})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return p.(*Platform)
}

func TestOpenIdentity(t *testing.T) {
	v := loadVector(t)
	root := fakeTree(t, v, nil)
	p := openTree(t, root)
	if p.Kind() != tee.KindSGX {
		t.Errorf("Kind = %q", p.Kind())
	}
	r := v.parsed.Report
	id := p.Identity()
	if !bytes.Equal(id.Measurement, r.MRENCLAVE[:]) || !bytes.Equal(id.Signer, r.MRSIGNER[:]) ||
		id.ProductID != r.ISVProdID || id.SVN != r.ISVSVN || id.Debug != r.Debug() {
		t.Errorf("Identity = %+v, want the vector's report body (MRENCLAVE %x MRSIGNER %x prod %d svn %d debug %v)",
			id, r.MRENCLAVE, r.MRSIGNER, r.ISVProdID, r.ISVSVN, r.Debug())
	}
	// Open wrote 64 zero bytes for its identity quote.
	if got, _ := os.ReadFile(filepath.Join(root, fileUserReportData)); !bytes.Equal(got, make([]byte, 64)) {
		t.Errorf("user_report_data after Open = %x, want 64 zero bytes", got)
	}
	id.Measurement[0] ^= 0xff
	if bytes.Equal(p.Identity().Measurement, id.Measurement) {
		t.Error("Identity shares its Measurement slice with the caller")
	}
}

func TestDebugAttribute(t *testing.T) {
	v := loadVector(t)
	q := bytes.Clone(v.quote)
	q[48+48] ^= 0x02 // ATTRIBUTES.FLAGS bit 1: DEBUG (header, then CPUSVN..ISVEXTPRODID)
	p := openTree(t, fakeTree(t, v, map[string][]byte{fileQuote: q}))
	if p.Identity().Debug == v.parsed.Report.Debug() {
		t.Errorf("Debug = %v after flipping the DEBUG attribute", p.Identity().Debug)
	}
}

// TestEvidence: the happy path returns the quote unchanged after writing
// exactly our report data, and the quote verifies.
func TestEvidence(t *testing.T) {
	v := loadVector(t)
	root := fakeTree(t, v, nil)
	p := openTree(t, root)
	ev, err := p.Evidence(context.Background(), v.reportData)
	if err != nil {
		t.Fatalf("Evidence: %v", err)
	}
	if !bytes.Equal(ev, v.quote) {
		t.Error("Evidence is not the quote Gramine returned")
	}
	if got, _ := os.ReadFile(filepath.Join(root, fileUserReportData)); !bytes.Equal(got, v.reportData[:]) {
		t.Errorf("user_report_data = %x, want %x", got, v.reportData)
	}
	b, err := pcs.ParseBundle(readVector(t, "dcap-qvl_sgx_quote_v3_collateral.json"))
	if err != nil {
		t.Fatal(err)
	}
	claims, err := evidence.Verify(context.Background(), ev, evidence.Options{Time: dcapQVLTime, Collateral: b})
	if err != nil {
		t.Fatalf("evidence.Verify: %v", err)
	}
	if !bytes.Equal(claims.ReportData, v.reportData[:]) {
		t.Errorf("verified report data %x", claims.ReportData)
	}
}

func TestEvidenceSomeoneElsesQuote(t *testing.T) {
	v := loadVector(t)
	p := openTree(t, fakeTree(t, v, nil))
	var rd [64]byte
	copy(rd[:], "Goodbye, world!")
	ev, err := p.Evidence(context.Background(), rd)
	if err == nil || ev != nil || !strings.Contains(err.Error(), "someone else's quote") || !strings.HasPrefix(err.Error(), "gramine: ") {
		t.Fatalf("Evidence(other report data) = %d bytes, %v; want a gramine error about someone else's quote", len(ev), err)
	}
}

func TestEvidenceOtherEnclave(t *testing.T) {
	v := loadVector(t)
	root := fakeTree(t, v, nil)
	p := openTree(t, root)
	// The host now answers with a quote of another enclave carrying our
	// report data.
	q := bytes.Clone(v.quote)
	q[48+64] ^= 1 // first byte of MRENCLAVE
	if err := os.WriteFile(filepath.Join(root, fileQuote), q, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Evidence(context.Background(), v.reportData); err == nil || !strings.Contains(err.Error(), "not this enclave") {
		t.Fatalf("Evidence(quote of another MRENCLAVE) = %v", err)
	}
}

func TestOpenAttestationType(t *testing.T) {
	v := loadVector(t)
	for _, typ := range []string{"none", "epid", "", "DCAP"} {
		t.Run(typ, func(t *testing.T) {
			_, err := Open(context.Background(), Config{Root: fakeTree(t, v, map[string][]byte{fileAttestationType: []byte(typ)})})
			if err == nil || !strings.Contains(err.Error(), `attestation type is "`+typ+`"`) || !strings.Contains(err.Error(), "sgx.remote_attestation") {
				t.Fatalf("Open(attestation_type %q) = %v, want an error naming it", typ, err)
			}
		})
	}
	// A trailing newline is tolerated.
	openTree(t, fakeTree(t, v, map[string][]byte{fileAttestationType: []byte("dcap\n")}))
}

func TestOpenMissingFiles(t *testing.T) {
	v := loadVector(t)
	for _, name := range []string{fileAttestationType, fileUserReportData, fileQuote} {
		t.Run(name, func(t *testing.T) {
			root := fakeTree(t, v, map[string][]byte{name: nil})
			_, err := Open(context.Background(), Config{Root: root})
			if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), name) {
				t.Fatalf("Open without %s = %v, want fs.ErrNotExist naming it", name, err)
			}
			if _, serr := os.Stat(filepath.Join(root, name)); serr == nil {
				t.Errorf("Open created %s", name)
			}
		})
	}
}

func TestOpenBadQuote(t *testing.T) {
	v := loadVector(t)
	for name, q := range map[string][]byte{
		"empty":     {},
		"truncated": v.quote[:len(v.quote)-1],
		"garbage":   bytes.Repeat([]byte{0x42}, 2000),
		"too large": make([]byte, 64<<10+1),
	} {
		t.Run(name, func(t *testing.T) {
			_, err := Open(context.Background(), Config{Root: fakeTree(t, v, map[string][]byte{fileQuote: q})})
			if err == nil || !strings.HasPrefix(err.Error(), "gramine: ") {
				t.Fatalf("Open(%s quote) = %v", name, err)
			}
		})
	}
}

func TestDefaultRoot(t *testing.T) {
	if _, err := os.Stat(DefaultRoot); err == nil {
		t.Skipf("%s exists: this is a Gramine enclave", DefaultRoot)
	}
	_, err := Open(context.Background(), Config{})
	if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), DefaultRoot) {
		t.Fatalf("Open(default root) here = %v, want fs.ErrNotExist naming %s", err, DefaultRoot)
	}
}

func TestContextCancelled(t *testing.T) {
	v := loadVector(t)
	root := fakeTree(t, v, nil)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Open(ctx, Config{Root: root}); !errors.Is(err, context.Canceled) {
		t.Errorf("Open(cancelled) = %v", err)
	}
	p := openTree(t, root)
	if _, err := p.Evidence(ctx, v.reportData); !errors.Is(err, context.Canceled) {
		t.Errorf("Evidence(cancelled) = %v", err)
	}
	if _, err := p.SealKey(ctx, seal.KeyRequest{Policy: seal.PolicyEnclave, Measurement: p.Identity().Measurement}); !errors.Is(err, context.Canceled) {
		t.Errorf("SealKey(cancelled) = %v", err)
	}
}

// TestConcurrentEvidence shares one Platform between goroutines; the
// user_report_data → quote exchange must stay paired (and -race quiet).
func TestConcurrentEvidence(t *testing.T) {
	v := loadVector(t)
	p := openTree(t, fakeTree(t, v, nil))
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 8 {
				if _, err := p.Evidence(context.Background(), v.reportData); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
}
