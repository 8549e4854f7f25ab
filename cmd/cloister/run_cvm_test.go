package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cloister-dev/cloister/enclave"
	"github.com/cloister-dev/cloister/evidence/tdx"
	"github.com/cloister-dev/cloister/seal"
	"github.com/cloister-dev/cloister/tee/sim"
	"github.com/cloister-dev/cloister/tee/tsm"
	"github.com/google/go-configfs-tsm/configfs/configfsi"
	"github.com/google/go-configfs-tsm/configfs/fakertmr"
	"github.com/google/go-configfs-tsm/configfs/faketsm"
	"github.com/google/go-sev-guest/abi"
	"github.com/google/go-sev-guest/kds"
	sevtest "github.com/google/go-sev-guest/testing"
	"github.com/google/uuid"
)

// cvmTestApp is the argument under which this test binary is the enclave
// app of the confidential-VM tests (TestMain dispatches it): it asks its
// Platform for evidence over cvmReportData and for a sealing key, and
// prints "kind=K evidence=HEX" and "sealkey=ERROR or ok".
const cvmTestApp = "cvm-test-app"

var cvmReportData = [64]byte{'c', 'v', 'm', '-', 'e', '2', 'e'}

func runCVMTestApp() {
	enclave.Run(func(ctx context.Context, env *enclave.Env) error {
		p := env.Platform()
		ev, err := p.Evidence(ctx, cvmReportData)
		if err != nil {
			return err
		}
		fmt.Printf("kind=%s evidence=%s\n", p.Kind(), hex.EncodeToString(ev))
		sk := "ok"
		if _, err := p.SealKey(ctx, seal.KeyRequest{Policy: seal.PolicyEnclave, Measurement: p.Identity().Measurement}); err != nil {
			sk = err.Error()
		}
		fmt.Printf("sealkey=%s\n", sk)
		return nil
	})
}

// fakeReport is a faketsm report subsystem for provider name whose outblob
// is made by outblob from the inblob (and auxblob, when set).
func fakeReport(name string, outblob func(inblob []byte) ([]byte, error), aux []byte) configfsi.Client {
	return &faketsm.ReportSubsystem{
		MakeEntry: func() *faketsm.ReportEntry {
			return &faketsm.ReportEntry{InAttrs: map[string]*faketsm.ReportAttributeState{"inblob": {}, "privlevel": {}}}
		},
		CheckInAttr: func(_ *faketsm.ReportEntry, attr string, contents []byte) error {
			if attr == "inblob" && len(contents) > 64 {
				return syscall.EINVAL
			}
			return nil
		},
		ReadAttr: func(e *faketsm.ReportEntry, attr string) ([]byte, error) {
			switch attr {
			case "provider":
				return []byte(name + "\n"), nil
			case "auxblob":
				if aux == nil {
					return nil, os.ErrNotExist
				}
				return bytes.Clone(aux), nil
			case "outblob":
				var rd [64]byte
				copy(rd[:], e.InAttrs["inblob"].Value)
				return outblob(rd[:])
			}
			return nil, os.ErrNotExist
		},
		Random: rand.Reader,
	}
}

// cvmTDX is a fake TDX CVM: a tdx_guest provider whose quotes are signed
// by a sim PKI and carry the cos-113 vector's RTMR0-2 (so its real CCEL
// replays) and the RTMR3 that go-configfs-tsm's fake rtmrs subsystem has
// accumulated, which `cloister run` extends.
type cvmTDX struct {
	deps                    *cvmDeps
	simDir, root, coll, log string
	mrtd                    [48]byte
}

func newCVMTDX(t *testing.T) *cvmTDX {
	t.Helper()
	dir := t.TempDir()
	f := &cvmTDX{simDir: filepath.Join(dir, "sim"), root: filepath.Join(dir, "root.pem"), coll: filepath.Join(dir, "coll.json"), log: filepath.Join(dir, "run", "rtmr3.log")}
	pki, err := sim.Load(f.simDir, rand.Reader, fixedNow)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range [][]string{{"sim", "root", "--sim-dir", f.simDir}, {"sim", "collateral", "--tee", "sim-tdx", "--sim-dir", f.simDir, "--out", f.coll}} {
		r := runCLI(t, c...)
		if r.code != exitOK {
			t.Fatalf("%v: %s", c, r)
		}
		if c[1] == "root" {
			if err := os.WriteFile(f.root, []byte(r.stdout), 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	cos, err := tdx.Parse(readFile(t, ccelDir+"cos-113-tdx-quote.dat"))
	if err != nil {
		t.Fatal(err)
	}
	f.mrtd = cos.Body.MRTD
	client := &faketsm.Client{Subsystems: map[string]configfsi.Client{"rtmrs": fakertmr.CreateRtmrSubsystem(filepath.Join(dir, "rtmrs"))}}
	rtmr3, err := tsm.OpenRTMR(tsm.RTMRConfig{Client: client}, 3)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	client.Subsystems["report"] = fakeReport("tdx_guest", func(rd []byte) ([]byte, error) {
		mu.Lock()
		defer mu.Unlock()
		b := tdx.Body{MRTD: cos.Body.MRTD, RTMR: cos.Body.RTMR, ReportData: [64]byte(rd)}
		b.XFAM[0], b.XFAM[1] = 0xE7, 0x02
		var err error
		if b.RTMR[3], err = rtmr3.Read(); err != nil {
			return nil, err
		}
		return pki.QuoteTDX(rand.Reader, b)
	}, nil)
	f.deps = &cvmDeps{TSM: tsm.Config{Client: client}, RTMR: tsm.RTMRConfig{Client: client}}
	return f
}

func readFile(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// runCVM runs `cloister run` with the fake deps and the test app, and
// returns the app's evidence and sealing-key line.
func runCVM(t *testing.T, deps *cvmDeps, args ...string) (result, []byte, string) {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	e := &env{ctx: context.Background(), stdin: strings.NewReader(""), stdout: &stdout, stderr: &stderr, now: func() time.Time { return fixedNow }, cvm: deps}
	full := append(append([]string{"--state", t.TempDir(), "--netns=false"}, args...), self, "--", cvmTestApp)
	r := result{finish(e, "run", runRun(e, full)), stdout.String(), stderr.String()}
	var ev []byte
	var sk string
	for _, line := range strings.Split(r.stdout, "\n") {
		if _, h, ok := strings.Cut(line, " evidence="); ok {
			if ev, err = hex.DecodeString(h); err != nil {
				t.Fatal(err)
			}
		}
		if v, ok := strings.CutPrefix(line, "sealkey="); ok {
			sk = v
		}
	}
	return r, ev, sk
}

func appDigest(t *testing.T) string {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	a, err := sim.AppFromFiles(self, "")
	if err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(a.MRENCLAVE[:])
}

// TestRunTDXEndToEnd: `cloister run --tee tdx` against go-configfs-tsm's
// fakes: the app's digest is extended into RTMR3 and logged, the app's
// evidence (a configfs-tsm report around a quote signed under the sim
// root) verifies, binds the app's report data, and with the firmware's
// CCEL and the runtime log replays RTMR0-3 and names the app, which a
// policy can pin; a second launch adds to the log; a changed runtime log
// fails; TDX sealing points to the key broker.
func TestRunTDXEndToEnd(t *testing.T) {
	f := newCVMTDX(t)
	r, ev, sk := runCVM(t, f.deps, "--tee", "tdx", "--runtime-log", f.log)
	if r.code != exitOK || ev == nil {
		t.Fatalf("%s", r)
	}
	if !strings.Contains(r.stdout, "kind=tdx ") || !strings.Contains(r.stderr, "app measured into RTMR3") {
		t.Errorf("%s", r)
	}
	if !strings.Contains(sk, "key broker") {
		t.Errorf("TDX SealKey: %q, want a pointer to the key broker", sk)
	}
	evFile := filepath.Join(t.TempDir(), "ev.json")
	if err := os.WriteFile(evFile, ev, 0o600); err != nil {
		t.Fatal(err)
	}
	digest := appDigest(t)
	verify := func(logs ...string) result {
		args := []string{"verify", "evidence", evFile, "--trust-root", f.root, "--collateral", f.coll,
			"--ccel-table", ccelDir + "ccel_table.dat", "--event-log", ccelDir + "ccel_data.dat"}
		for _, l := range logs {
			args = append(args, "--event-log", l)
		}
		return runCLI(t, append(args, "--mrtd", hex.EncodeToString(f.mrtd[:]), "--app-digest", digest)...)
	}
	r = verify(f.log)
	if r.code != exitOK {
		t.Fatalf("verify: %s", r)
	}
	var c struct {
		TEE        string `json:"tee"`
		ReportData string `json:"report_data"`
		RTMR3      string `json:"rtmr3"`
		EventLog   struct {
			Events     []struct{ Register, Type string } `json:"events"`
			AppDigests []string                          `json:"app_digests"`
		} `json:"event_log"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &c); err != nil {
		t.Fatal(err)
	}
	if c.TEE != "sim-tdx" || c.ReportData != hex.EncodeToString(cvmReportData[:]) || len(c.EventLog.Events) != 44 ||
		len(c.EventLog.AppDigests) != 1 || c.EventLog.AppDigests[0] != digest || c.RTMR3 == strings.Repeat("0", 96) {
		t.Fatalf("claims: %s", r.stdout)
	}

	// Another launch: the log holds both; the first evidence covers only
	// the first (the second is reported, not trusted).
	if r2, ev2, _ := runCVM(t, f.deps, "--tee", "tdx", "--runtime-log", f.log); r2.code != exitOK || ev2 == nil {
		t.Fatalf("second launch: %s", r2)
	}
	r = verify(f.log)
	if r.code != exitOK || !strings.Contains(r.stderr, "1 RTMR3 event(s) at the end of the log are not covered") {
		t.Fatalf("first evidence, longer log: %s", r)
	}

	// A changed digest byte in the runtime log's first event fails.
	raw := readFile(t, f.log)
	raw[65+14+3] ^= 0x40
	bad := filepath.Join(t.TempDir(), "bad.log")
	if err := os.WriteFile(bad, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	r = verify(bad)
	if r.code != exitFailed || !strings.Contains(r.stderr, "RTMR3") || r.stdout != "" {
		t.Fatalf("tampered runtime log: %s", r)
	}
	// Another app digest fails the policy.
	r = runCLI(t, "verify", "evidence", evFile, "--trust-root", f.root, "--collateral", f.coll,
		"--event-log", ccelDir+"ccel_data.dat", "--event-log", f.log, "--mrtd", hex.EncodeToString(f.mrtd[:]), "--app-digest", strings.Repeat("00", 32))
	if r.code != exitFailed || !strings.Contains(r.stderr, "app_digest") {
		t.Fatalf("unlisted app digest: %s", r)
	}
}

// TestRunTDXNoRTMRInterface: a kernel without the RTMR interface refuses
// the launch, naming the files it looked for, unless
// --no-runtime-measurement; then nothing is extended and a verifier's
// claims say so.
func TestRunTDXNoRTMRInterface(t *testing.T) {
	f := newCVMTDX(t)
	f.deps.RTMR = tsm.RTMRConfig{Root: t.TempDir()}
	r, _, _ := runCVM(t, f.deps, "--tee", "tdx", "--runtime-log", f.log)
	if r.code != exitFailed || !strings.Contains(r.stderr, "rtmr3:sha384") || !strings.Contains(r.stderr, "--no-runtime-measurement") || strings.Contains(r.stdout, "evidence=") {
		t.Fatalf("no RTMR interface: %s", r)
	}
	r, ev, _ := runCVM(t, f.deps, "--tee", "tdx", "--runtime-log", f.log, "--no-runtime-measurement")
	if r.code != exitOK || ev == nil || !strings.Contains(r.stderr, "runtime measurement skipped") {
		t.Fatalf("--no-runtime-measurement: %s", r)
	}
	if _, err := os.Stat(f.log); !os.IsNotExist(err) {
		t.Errorf("a runtime log was written: %v", err)
	}
	evFile := filepath.Join(t.TempDir(), "ev.json")
	if err := os.WriteFile(evFile, ev, 0o600); err != nil {
		t.Fatal(err)
	}
	r = runCLI(t, "verify", "evidence", evFile, "--trust-root", f.root, "--collateral", f.coll, "--event-log", ccelDir+"ccel_data.dat")
	if r.code != exitOK || !strings.Contains(r.stderr, "nothing was measured at run time") || !strings.Contains(r.stdout, `"app_digests": []`) {
		t.Fatalf("verify unmeasured: %s", r)
	}
}

// TestRunSNPEndToEnd: `cloister run --tee sev-snp` against a fake
// sev_guest provider whose reports go-sev-guest's test signer signs (a
// chain of its own, named with --trust-root): the evidence carries the
// certificate table, verifies as sim-snp and binds the app's report data.
func TestRunSNPEndToEnd(t *testing.T) {
	raw := readFile(t, "../../testdata/snp/attestation.bin")
	tcb := kds.DecomposeTCBVersion(kds.TCBVersion(0x4405000000000002))
	created := time.Date(2022, 1, 1, 0, 0, 0, 0, time.UTC)
	b := &sevtest.AmdSignerBuilder{
		ProductName: "Milan-B0", ArkCreationTime: created, AskCreationTime: created, AsvkCreationTime: created,
		VcekCreationTime: created, VlekCreationTime: created,
		VcekCustom: sevtest.CertOverride{Extensions: sevtest.CustomExtensions(tcb, raw[0x1A0:0x1E0], "", "Milan-B0")},
	}
	s, err := b.TestOnlyCertChain()
	if err != nil {
		t.Fatal(err)
	}
	table := abi.CertTable{Entries: []abi.CertTableEntry{
		{GUID: uuid.MustParse(abi.VcekGUID), RawCert: s.Vcek.Raw},
		{GUID: uuid.MustParse(abi.AskGUID), RawCert: s.Ask.Raw},
		{GUID: uuid.MustParse(abi.ArkGUID), RawCert: s.Ark.Raw},
	}}
	client := &faketsm.Client{Subsystems: map[string]configfsi.Client{"report": fakeReport("sev_guest", func(rd []byte) ([]byte, error) {
		out := bytes.Clone(raw)
		copy(out[0x50:0x90], rd)
		r, sig, err := s.Sign(abi.SignedComponent(out))
		if err != nil {
			return nil, err
		}
		return out, abi.SetSignature(r, sig, out)
	}, table.Marshal())}}
	r, ev, _ := runCVM(t, &cvmDeps{TSM: tsm.Config{Client: client}}, "--tee", "sev-snp")
	if r.code != exitOK || ev == nil || !strings.Contains(r.stdout, "kind=sev-snp ") || !strings.Contains(r.stderr, "SEV-SNP has no runtime measurement register") {
		t.Fatalf("%s", r)
	}
	dir := t.TempDir()
	evFile, root := filepath.Join(dir, "ev.json"), filepath.Join(dir, "ark.pem")
	if err := os.WriteFile(evFile, ev, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(root, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: s.Ark.Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	r = runCLIAt(t, time.Date(2023, 1, 1, 0, 0, 0, 0, time.UTC), "verify", "evidence", evFile, "--trust-root", root)
	if r.code != exitOK || !strings.Contains(r.stdout, `"tee": "sim-snp"`) || !strings.Contains(r.stdout, hex.EncodeToString(cvmReportData[:])) {
		t.Fatalf("verify: %s", r)
	}
	// An event log cannot bind anything to SNP evidence.
	r = runCLIAt(t, time.Date(2023, 1, 1, 0, 0, 0, 0, time.UTC), "verify", "evidence", evFile, "--trust-root", root, "--event-log", ccelDir+"ccel_data.dat")
	if r.code != exitFailed || !strings.Contains(r.stderr, "SEV-SNP has no runtime measurement register") {
		t.Fatalf("SNP with an event log: %s", r)
	}
}

// TestRunAutoNeverSimulates: --tee auto without configfs-tsm fails with a
// hint and starts nothing; with the fake it finds TDX.
func TestRunAutoNeverSimulates(t *testing.T) {
	r, _, _ := runCVM(t, &cvmDeps{TSMPath: filepath.Join(t.TempDir(), "none")}, "--tee", "auto")
	if r.code != exitFailed || !strings.Contains(r.stderr, "no TEE found") || strings.Contains(r.stdout, "evidence=") {
		t.Fatalf("auto without a TEE: %s", r)
	}
	f := newCVMTDX(t)
	f.deps.TSMPath = t.TempDir()
	r, ev, _ := runCVM(t, f.deps, "--tee", "auto", "--runtime-log", f.log)
	if r.code != exitOK || ev == nil || !strings.Contains(r.stdout, "kind=tdx ") {
		t.Fatalf("auto with configfs-tsm: %s", r)
	}
}

// TestRunTDXRefusesUnexplainedRTMR3: RTMR3 extended outside the runtime
// log could never be replayed: the launch is refused and the app does not
// start.
func TestRunTDXRefusesUnexplainedRTMR3(t *testing.T) {
	f := newCVMTDX(t)
	reg, err := tsm.OpenRTMR(f.deps.RTMR, 3)
	if err != nil {
		t.Fatal(err)
	}
	if err := reg.Extend([48]byte{1}); err != nil {
		t.Fatal(err)
	}
	r, ev, _ := runCVM(t, f.deps, "--tee", "tdx", "--runtime-log", f.log)
	if r.code != exitFailed || ev != nil || !strings.Contains(r.stderr, "RTMR3 was extended outside this log") || strings.Contains(r.stderr, "enclave started") {
		t.Fatalf("%s", r)
	}
}
