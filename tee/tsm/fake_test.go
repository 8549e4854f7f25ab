package tsm

import (
	"bytes"
	"crypto/rand"
	"encoding/pem"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/cloister-dev/cloister/evidence/snp"
	"github.com/cloister-dev/cloister/evidence/tdx"
	"github.com/google/go-configfs-tsm/configfs/configfsi"
	"github.com/google/go-configfs-tsm/configfs/faketsm"
	"github.com/google/go-sev-guest/abi"
	"github.com/google/uuid"
)

// Offsets of REPORT_DATA and VMPL in the vectors, for the fake providers
// that stamp the inblob into a copy of a real report. fakeOutBlob checks
// them against the parsers, so a wrong constant fails loudly.
const (
	snpReportDataOffset = 0x50 // SEV-SNP ABI, ATTESTATION_REPORT
	snpVMPLOffset       = 0x30
	tdxReportDataOffset = 48 + 520 // quote v4 header, then TD report body
)

func readVector(t testing.TB, dir, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "testdata", dir, name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// snpVector is testdata/snp: a real Milan report, whose REPORT_DATA is
// 0102030405 and zeros, and the certificate table a host would attach:
// its VCEK and the Milan ASK and ARK.
type snpVector struct {
	report     []byte
	reportData [64]byte
	certTable  []byte
}

func loadSNP(t testing.TB) snpVector {
	t.Helper()
	v := snpVector{report: readVector(t, "snp", "attestation.bin")}
	copy(v.reportData[:], v.report[snpReportDataOffset:snpReportDataOffset+64])
	var ders [][]byte
	rest := readVector(t, "snp", "ask_ark_milan.pem")
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		ders = append(ders, b.Bytes)
	}
	if len(ders) != 2 {
		t.Fatalf("ask_ark_milan.pem: %d certificates, want ASK and ARK", len(ders))
	}
	table := abi.CertTable{Entries: []abi.CertTableEntry{
		{GUID: uuid.MustParse(abi.VcekGUID), RawCert: readVector(t, "snp", "vcek.testcer")},
		{GUID: uuid.MustParse(abi.AskGUID), RawCert: ders[0]},
		{GUID: uuid.MustParse(abi.ArkGUID), RawCert: ders[1]},
	}}
	v.certTable = table.Marshal()
	return v
}

// tdxVector is testdata/tdx/dcap-qvl_tdx_quote_v4.bin and its report data.
type tdxVector struct {
	quote      []byte
	reportData [64]byte
	mrtd       []byte
}

func loadTDX(t testing.TB) tdxVector {
	t.Helper()
	v := tdxVector{quote: readVector(t, "tdx", "dcap-qvl_tdx_quote_v4.bin")}
	q, err := tdx.Parse(v.quote)
	if err != nil {
		t.Fatal(err)
	}
	v.reportData = q.Body.ReportData
	v.mrtd = bytes.Clone(q.Body.MRTD[:])
	return v
}

// stamp returns a copy of base with inblob (zero-padded to 64 bytes) at
// off, as the hardware would have made it for that report data. Only the
// vector's own report data gives a report whose signature verifies.
func stamp(base []byte, off int, inblob []byte) []byte {
	out := bytes.Clone(base)
	var rd [64]byte
	copy(rd[:], inblob)
	copy(out[off:off+64], rd[:])
	return out
}

// snpOutBlob is a sev_guest outblob maker: the real report for its own
// report data, a stamped copy for any other, with VMPL set to vmpl.
func snpOutBlob(t testing.TB, v snpVector, vmpl byte) func([]byte) ([]byte, error) {
	return func(inblob []byte) ([]byte, error) {
		out := stamp(v.report, snpReportDataOffset, inblob)
		out[snpVMPLOffset] = vmpl
		r, err := snp.Parse(out)
		if err != nil || !bytes.Equal(r.GetReportData(), out[snpReportDataOffset:snpReportDataOffset+64]) || r.GetVmpl() != uint32(vmpl) {
			t.Errorf("fake sev_guest: offsets disagree with the parser (err %v)", err)
		}
		return out, nil
	}
}

// tdxOutBlob is a tdx_guest outblob maker, like snpOutBlob.
func tdxOutBlob(t testing.TB, v tdxVector) func([]byte) ([]byte, error) {
	return func(inblob []byte) ([]byte, error) {
		out := stamp(v.quote, tdxReportDataOffset, inblob)
		q, err := tdx.Parse(out)
		if err != nil || !bytes.Equal(q.Body.ReportData[:], out[tdxReportDataOffset:tdxReportDataOffset+64]) {
			t.Errorf("fake tdx_guest: offsets disagree with the parser (err %v)", err)
		}
		return out, nil
	}
}

// fakeProvider is a faketsm report subsystem that answers like the
// kernel's provider: "provider" with a trailing newline, an outblob made
// from the inblob, the auxblob only when aux is non-nil (tdx_guest hides
// that attribute), and privlevel checked against floor. Every privlevel
// written is recorded.
type fakeProvider struct {
	name    string
	outBlob func(inblob []byte) ([]byte, error)
	aux     []byte
	floor   uint

	mu         sync.Mutex
	privlevels []string
}

func (f *fakeProvider) client() *faketsm.Client {
	sub := &faketsm.ReportSubsystem{
		MakeEntry: func() *faketsm.ReportEntry {
			return &faketsm.ReportEntry{InAttrs: map[string]*faketsm.ReportAttributeState{
				"inblob":    {},
				"privlevel": {},
			}}
		},
		CheckInAttr: f.check,
		ReadAttr:    f.read,
		Random:      rand.Reader,
	}
	return &faketsm.Client{Subsystems: map[string]configfsi.Client{"report": sub}}
}

func (f *fakeProvider) check(_ *faketsm.ReportEntry, attr string, contents []byte) error {
	switch attr {
	case "inblob":
		if len(contents) > 64 {
			return syscall.EINVAL
		}
	case "privlevel":
		level, err := configfsi.Kstrtouint(contents, 10, 32)
		if err != nil || level > 3 || uint(level) < f.floor {
			return syscall.EINVAL
		}
		f.mu.Lock()
		f.privlevels = append(f.privlevels, string(contents))
		f.mu.Unlock()
	default:
		return fmt.Errorf("unwritable attribute %q", attr)
	}
	return nil
}

func (f *fakeProvider) read(e *faketsm.ReportEntry, attr string) ([]byte, error) {
	switch attr {
	case "provider":
		return []byte(f.name + "\n"), nil
	case "privlevel_floor":
		return []byte(fmt.Sprintf("%d\n", f.floor)), nil
	case "auxblob":
		if f.aux == nil {
			return nil, os.ErrNotExist
		}
		return bytes.Clone(f.aux), nil
	case "outblob":
		in := e.InAttrs["inblob"].Value
		if len(in) == 0 {
			return nil, syscall.EINVAL
		}
		return f.outBlob(in)
	}
	return nil, os.ErrNotExist
}

// interferer wraps a configfs client and, while armed, writes a foreign
// inblob into the entry just before each outblob read: another process
// racing us on the same entry. The generation check must catch it.
type interferer struct {
	configfsi.Client
	mu    sync.Mutex
	armed bool
	hits  int
}

func (c *interferer) arm() {
	c.mu.Lock()
	c.armed = true
	c.mu.Unlock()
}

func (c *interferer) ReadFile(name string) ([]byte, error) {
	c.mu.Lock()
	armed := c.armed
	c.mu.Unlock()
	if armed && path.Base(name) == "outblob" {
		foreign := bytes.Repeat([]byte{0xee}, 64)
		if err := c.Client.WriteFile(strings.TrimSuffix(name, "outblob")+"inblob", foreign); err != nil {
			return nil, err
		}
		c.mu.Lock()
		c.hits++
		c.mu.Unlock()
	}
	return c.Client.ReadFile(name)
}
