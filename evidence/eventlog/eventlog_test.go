package eventlog

import (
	"bytes"
	"crypto/sha512"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/cloister-dev/cloister/evidence/tdx"
	"github.com/google/go-eventlog/ccel"
	"github.com/google/go-eventlog/extract"
	"github.com/google/go-eventlog/register"
)

// ccelVector is testdata/tdx/ccel (go-tdx-guest's cos-113 vector): the
// ACPI table, the log area and the quote's RTMRs. The quote is only
// parsed here (format); its signature is checked in package evidence.
type ccelVector struct {
	table, log []byte
	rtmr       [Registers][DigestSize]byte
}

func readTestdata(name string) ([]byte, error) {
	return os.ReadFile(filepath.Join("..", "..", "testdata", "tdx", "ccel", name))
}

func loadCCEL(t testing.TB) ccelVector {
	t.Helper()
	read := func(name string) []byte {
		b, err := readTestdata(name)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	v := ccelVector{table: read("ccel_table.dat"), log: read("ccel_data.dat")}
	q, err := tdx.Parse(read("cos-113-tdx-quote.dat"))
	if err != nil {
		t.Fatal(err)
	}
	v.rtmr = q.Body.RTMR
	return v
}

func testApp(b byte) App {
	a := App{ProductID: 7, SVN: 3, Debug: b%2 == 0}
	for i := range a.Measurement {
		a.Measurement[i] = b
		a.Signer[i] = ^b
	}
	return a
}

// runtimeLog is a runtime log of apps, and the RTMR3 they give.
func runtimeLog(apps ...App) ([]byte, [DigestSize]byte) {
	b := EncodeHeader()
	var v [DigestSize]byte
	for _, a := range apps {
		b = append(b, EncodeAppEvent(a)...)
		d := a.Digest()
		v = sha512.Sum384(append(v[:], d[:]...))
	}
	return b, v
}

// TestCCELVectorReplays: the real CCEL replays to the cos-113 quote's
// RTMR0-2 (RTMR3 is zero there and the log has no RTMR3 event), and the
// kept library agrees (go-eventlog's ccel replay, which go-tdx-guest's
// ParseCcelWithTdQuote runs after its own quote check).
func TestCCELVectorReplays(t *testing.T) {
	v := loadCCEL(t)
	tab, err := ParseTable(v.table)
	if err != nil {
		t.Fatal(err)
	}
	if err := tab.CheckLog(v.log); err != nil {
		t.Fatal(err)
	}
	events, err := Parse(v.log)
	if err != nil {
		t.Fatal(err)
	}
	res, err := Replay(events, v.rtmr)
	if err != nil {
		t.Fatal(err)
	}
	counts := map[int]int{}
	for _, e := range res.Events {
		counts[e.Register]++
	}
	if len(res.Events) != 43 || counts[0] != 16 || counts[1] != 7 || counts[2] != 20 || len(res.Apps) != 0 || len(res.Uncovered) != 0 {
		t.Errorf("replayed %d events %v, %d apps, %d uncovered; want 43 (16, 7, 20 in RTMR0-2), none else", len(res.Events), counts, len(res.Apps), len(res.Uncovered))
	}
	if res.Events[0].TypeName != "EV_EFI_HANDOFF_TABLES2" {
		t.Errorf("first event %q, want EV_EFI_HANDOFF_TABLES2", res.Events[0].TypeName)
	}
	bank := register.RTMRBank{}
	for i := range 3 {
		bank.RTMRs = append(bank.RTMRs, register.RTMR{Index: i, Digest: v.rtmr[i][:]})
	}
	if st, err := ccel.ReplayAndExtract(v.table, v.log, bank, extract.Opts{Loader: extract.GRUB}); st == nil {
		t.Fatalf("go-eventlog refuses the vector: %v", err)
	}
}

// TestCCELPlusRuntimeLog: the firmware log and a runtime log replay
// together against all four registers.
func TestCCELPlusRuntimeLog(t *testing.T) {
	v := loadCCEL(t)
	rt, rtmr3 := runtimeLog(testApp(1), testApp(2))
	v.rtmr[3] = rtmr3
	events, err := Parse(v.log, rt)
	if err != nil {
		t.Fatal(err)
	}
	res, err := Replay(events, v.rtmr)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Apps) != 2 || res.Apps[0].App != testApp(1) || res.Apps[1].App != testApp(2) || len(res.Events) != 45 {
		t.Fatalf("apps %+v, %d events", res.Apps, len(res.Events))
	}
	if e := res.Events[44]; e.Log != 1 || e.Register != 3 || e.TypeName != "EV_EVENT_TAG" {
		t.Errorf("last event %+v", e)
	}
}

// TestRuntimePrefix: a log read after the quote may hold later launches;
// only the prefix the quote covers counts, the rest is Uncovered.
func TestRuntimePrefix(t *testing.T) {
	v := loadCCEL(t)
	_, first := runtimeLog(testApp(1))
	rt, _ := runtimeLog(testApp(1), testApp(2))
	v.rtmr[3] = first
	events, err := Parse(v.log, rt)
	if err != nil {
		t.Fatal(err)
	}
	res, err := Replay(events, v.rtmr)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Apps) != 1 || res.Apps[0].App != testApp(1) || len(res.Uncovered) != 1 {
		t.Fatalf("apps %+v, uncovered %d; want app 1 covered, app 2 not", res.Apps, len(res.Uncovered))
	}
	// RTMR3 zero: nothing is covered.
	v.rtmr[3] = [DigestSize]byte{}
	res, err = Replay(events, v.rtmr)
	if err != nil || len(res.Apps) != 0 || len(res.Uncovered) != 2 {
		t.Fatalf("RTMR3 zero: %v, %+v", err, res)
	}
}

// TestEmptyRegisterMustBeZero: a register without events must be zero.
// go-eventlog accepts any value there (it compares only registers that
// have events), so a log without firmware events would otherwise
// "replay" against any RTMR0-2.
func TestEmptyRegisterMustBeZero(t *testing.T) {
	v := loadCCEL(t)
	rt, rtmr3 := runtimeLog(testApp(1))
	v.rtmr[3] = rtmr3
	events, err := Parse(rt)
	if err != nil {
		t.Fatal(err)
	}
	_, err = Replay(events, v.rtmr)
	var re *ReplayError
	if !errors.As(err, &re) || re.Register != 0 || !errors.Is(err, ErrReplay) {
		t.Fatalf("runtime log alone against a real RTMR0: %v, want a ReplayError on RTMR0", err)
	}
	// Nonzero RTMR3 with no RTMR3 event either.
	v = loadCCEL(t)
	v.rtmr[3][0] = 1
	events, _ = Parse(v.log)
	if _, err := Replay(events, v.rtmr); !errors.As(err, &re) || re.Register != 3 {
		t.Fatalf("RTMR3 nonzero without events: %v", err)
	}
}

// TestTamperedEventFailsReplay: changing any byte of any covered event's
// digest fails the replay of its register.
func TestTamperedEventFailsReplay(t *testing.T) {
	v := loadCCEL(t)
	rt, rtmr3 := runtimeLog(testApp(1), testApp(2))
	v.rtmr[3] = rtmr3
	events, err := Parse(v.log, rt)
	if err != nil {
		t.Fatal(err)
	}
	for i := range events {
		for j := range DigestSize {
			mut := append([]Event(nil), events...)
			mut[i].Digest[j] ^= 0x01
			_, err := Replay(mut, v.rtmr)
			var re *ReplayError
			if !errors.As(err, &re) || re.Register != events[i].Register {
				t.Fatalf("event %d (RTMR%d) digest byte %d flipped: %v, want a replay error on its register", i, events[i].Register, j, err)
			}
		}
	}
	// Dropping or swapping the two runtime events fails too.
	n := len(events)
	if _, err := Replay(events[:n-2:n-2], v.rtmr); !errors.Is(err, ErrReplay) {
		t.Errorf("both runtime events dropped: %v", err)
	}
	swapped := append(append(append([]Event(nil), events[:n-2]...), events[n-1]), events[n-2])
	if _, err := Replay(swapped, v.rtmr); !errors.Is(err, ErrReplay) {
		t.Errorf("runtime events swapped: %v", err)
	}
}

// TestRuntimeLogByteFlips: every single-byte change of a runtime log
// inside the event either fails (parse or replay) or, where the byte is
// the tag (TCG logs measure neither type nor tag: a firmware event's
// digest is of the thing measured, not of the event), turns the event
// into a foreign one and drops the app from the result (a policy on app
// digests then fails: it admits no foreign RTMR3 event, and the claims
// warn); a changed type fails (Replay refuses a relabelled app record); no
// change anywhere yields another app.
func TestRuntimeLogByteFlips(t *testing.T) {
	v := loadCCEL(t)
	rt, rtmr3 := runtimeLog(testApp(1))
	v.rtmr[3] = rtmr3
	fw, err := Parse(v.log)
	if err != nil {
		t.Fatal(err)
	}
	typeOff := len(EncodeHeader()) + 4
	tagOff := len(EncodeHeader()) + 4 + 4 + 4 + 2 + DigestSize + 4
	for i := range rt {
		for _, x := range []byte{0x01, 0x80} {
			mut := bytes.Clone(rt)
			mut[i] ^= x
			events, err := Parse(mut)
			if err != nil {
				continue
			}
			for k := range events {
				events[k].Seq += len(fw)
			}
			res, err := Replay(append(append([]Event(nil), fw...), events...), v.rtmr)
			if err != nil {
				continue
			}
			switch {
			case len(res.Apps) != 0 && res.Apps[0].App != testApp(1):
				t.Fatalf("byte %d ^%#x: replay yields another app %+v", i, x, res.Apps[0].App)
			case i < len(EncodeHeader()):
				// Header fields the parser does not read (its own
				// register index, the SHA-1 digest, platform class,
				// errata) describe no measurement: the same app.
			case len(res.Apps) != 0:
				t.Fatalf("byte %d ^%#x: the changed event still replays with its app", i, x)
			case (i < typeOff || i >= typeOff+4) && (i < tagOff || i >= tagOff+4):
				t.Fatalf("byte %d ^%#x (neither the event type nor the tag): the changed log replays", i, x)
			}
		}
	}
}

// TestAppEventDataBound: the record of a covered app event must be what
// was extended: data changed under the same digest fails.
func TestAppEventDataBound(t *testing.T) {
	a := testApp(1)
	d := a.Digest()
	other := testApp(3)
	events := []Event{{Seq: 0, Register: 3, Type: evEventTag, Digest: d, Data: other.EventData()}}
	var rtmr [Registers][DigestSize]byte
	rtmr[3] = sha512.Sum384(append(make([]byte, DigestSize), d[:]...))
	if _, err := Replay(events, rtmr); !errors.Is(err, ErrAppDigest) {
		t.Fatalf("app record swapped under the digest: %v, want ErrAppDigest", err)
	}
}

func TestAppRecordRoundTrip(t *testing.T) {
	for _, a := range []App{testApp(0), testApp(1), {}} {
		got, ok, err := ParseAppEvent(a.EventData())
		if err != nil || !ok || got != a {
			t.Errorf("%+v: got %+v %v %v", a, got, ok, err)
		}
		data := a.EventData()
		for n := range len(data) {
			if _, ok, err := ParseAppEvent(data[:n]); ok || (err == nil && n >= 4) {
				t.Errorf("prefix of %d bytes: ok %v err %v", n, ok, err)
			}
		}
	}
	bad := testApp(1).EventData()
	bad[len(bad)-1] = 2
	if _, _, err := ParseAppEvent(bad); !errors.Is(err, ErrFormat) {
		t.Errorf("unknown flag bit: %v", err)
	}
}

// TestTable: the vector parses; any single-byte change fails (the ACPI
// checksum catches what the other checks do not).
func TestTable(t *testing.T) {
	v := loadCCEL(t)
	tab, err := ParseTable(v.table)
	if err != nil || tab.CCType != CCTypeTDX || tab.LogLength != 256<<10 {
		t.Fatalf("%+v %v", tab, err)
	}
	for i := range v.table {
		mut := bytes.Clone(v.table)
		mut[i] ^= 0x01
		if _, err := ParseTable(mut); !errors.Is(err, ErrFormat) {
			t.Errorf("byte %d flipped: %v", i, err)
		}
	}
	if err := tab.CheckLog(v.log[:len(v.log)-1]); !errors.Is(err, ErrFormat) {
		t.Errorf("short log area: %v", err)
	}
}

func TestParseRefuses(t *testing.T) {
	v := loadCCEL(t)
	legacy := make([]byte, 32) // one SHA-1 format event, no Spec ID
	legacy[4] = 1
	for name, logs := range map[string][][]byte{
		"empty":       {nil},
		"sha1 only":   {legacy},
		"too big":     {make([]byte, MaxLogSize+1)},
		"MRTD event":  {append(EncodeHeader(), EncodeEvent(-1, evEventTag, [DigestSize]byte{}, nil)...)},
		"RTMR4 event": {append(EncodeHeader(), EncodeEvent(4, evEventTag, [DigestSize]byte{}, nil)...)},
		"truncated":   {v.log[:1000]},
	} {
		if _, err := Parse(logs...); !errors.Is(err, ErrFormat) {
			t.Errorf("%s: %v, want ErrFormat", name, err)
		}
	}
}
