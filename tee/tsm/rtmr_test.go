package tsm

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/cloister-dev/cloister/evidence/eventlog"
	"github.com/google/go-configfs-tsm/configfs/configfsi"
	"github.com/google/go-configfs-tsm/configfs/fakertmr"
	"github.com/google/go-configfs-tsm/configfs/faketsm"
)

// fakeRTMR3 is RTMR3 of go-configfs-tsm's fake rtmrs subsystem, which
// extends as the kernel does (SHA-384 of the old value and the digest).
func fakeRTMR3(t *testing.T) Register {
	t.Helper()
	c := &faketsm.Client{Subsystems: map[string]configfsi.Client{"rtmrs": fakertmr.CreateRtmrSubsystem(t.TempDir())}}
	r, err := OpenRTMR(RTMRConfig{Client: c}, 3)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func app(b byte) eventlog.App {
	var a eventlog.App
	a.Measurement[0], a.SVN = b, uint16(b)
	return a
}

// replayLog checks that the log at path replays to reg's value and
// returns the apps it covers and how many events it does not.
func replayLog(t *testing.T, reg Register, path string) ([]eventlog.App, int) {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	events, err := eventlog.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	var regs [eventlog.Registers][eventlog.DigestSize]byte
	if regs[3], err = reg.Read(); err != nil {
		t.Fatal(err)
	}
	res, err := eventlog.Replay(events, regs)
	if err != nil {
		t.Fatal(err)
	}
	var apps []eventlog.App
	for _, a := range res.Apps {
		apps = append(apps, a.App)
	}
	return apps, len(res.Uncovered)
}

// TestMeasureAppRoundTrip: launches are logged and extended through the
// fake configfs-tsm rtmrs subsystem; the log replays to the register.
func TestMeasureAppRoundTrip(t *testing.T) {
	reg := fakeRTMR3(t)
	path := filepath.Join(t.TempDir(), "run", "cloister", "rtmr3.log")
	for i := byte(1); i <= 3; i++ {
		m, err := MeasureApp(context.Background(), reg, path, app(i))
		if err != nil {
			t.Fatal(err)
		}
		if m.Digest != app(i).Digest() || m.Dropped != 0 {
			t.Fatalf("launch %d: %+v", i, m)
		}
	}
	apps, uncovered := replayLog(t, reg, path)
	if len(apps) != 3 || apps[2] != app(3) || uncovered != 0 {
		t.Fatalf("apps %+v, uncovered %d", apps, uncovered)
	}
}

// failing wraps a Register and fails the chosen step once: a launch that
// stops (is killed) at that step.
type failing struct {
	Register
	failRead, failExtend bool
	reads                int
}

var errKilled = errors.New("killed here")

func (f *failing) Read() ([eventlog.DigestSize]byte, error) {
	f.reads++
	if f.failRead && f.reads == 2 {
		return [eventlog.DigestSize]byte{}, errKilled
	}
	return f.Register.Read()
}

func (f *failing) Extend(d [eventlog.DigestSize]byte) error {
	if f.failExtend {
		return errKilled
	}
	return f.Register.Extend(d)
}

// TestMeasureAppCrash: a launch stopped after logging and before
// extending leaves an event the register does not cover: a verifier
// still replays the log (the event is reported uncovered), and the next
// launch cuts it and goes on. Stopped after extending (before the read
// back), the log is already consistent.
func TestMeasureAppCrash(t *testing.T) {
	reg := fakeRTMR3(t)
	path := filepath.Join(t.TempDir(), "rtmr3.log")
	if _, err := MeasureApp(context.Background(), reg, path, app(1)); err != nil {
		t.Fatal(err)
	}
	if _, err := MeasureApp(context.Background(), &failing{Register: reg, failExtend: true}, path, app(2)); !errors.Is(err, errKilled) {
		t.Fatalf("stopped before extending: %v", err)
	}
	if apps, uncovered := replayLog(t, reg, path); len(apps) != 1 || apps[0] != app(1) || uncovered != 1 {
		t.Fatalf("after the stop: apps %+v, uncovered %d; want app 1 and one uncovered event", apps, uncovered)
	}
	m, err := MeasureApp(context.Background(), reg, path, app(3))
	if err != nil || m.Dropped != 1 {
		t.Fatalf("next launch: %+v %v, want one dropped event", m, err)
	}
	if apps, uncovered := replayLog(t, reg, path); len(apps) != 2 || apps[1] != app(3) || uncovered != 0 {
		t.Fatalf("after the next launch: apps %+v, uncovered %d", apps, uncovered)
	}
	if _, err := MeasureApp(context.Background(), &failing{Register: reg, failRead: true}, path, app(4)); !errors.Is(err, errKilled) {
		t.Fatalf("stopped before the read back: %v", err)
	}
	if apps, uncovered := replayLog(t, reg, path); len(apps) != 3 || apps[2] != app(4) || uncovered != 0 {
		t.Fatalf("stopped after extending: apps %+v, uncovered %d", apps, uncovered)
	}
}

// TestMeasureAppRefusesForeignExtension: RTMR3 extended outside the log
// can never be replayed: nothing more is logged or extended.
func TestMeasureAppRefusesForeignExtension(t *testing.T) {
	reg := fakeRTMR3(t)
	path := filepath.Join(t.TempDir(), "rtmr3.log")
	if _, err := MeasureApp(context.Background(), reg, path, app(1)); err != nil {
		t.Fatal(err)
	}
	if err := reg.Extend([eventlog.DigestSize]byte{9}); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(path)
	v, _ := reg.Read()
	if _, err := MeasureApp(context.Background(), reg, path, app(2)); !errors.Is(err, ErrLogMismatch) {
		t.Fatalf("%v, want ErrLogMismatch", err)
	}
	after, _ := os.ReadFile(path)
	if w, _ := reg.Read(); w != v || !bytes.Equal(before, after) {
		t.Fatal("the refused launch changed the log or the register")
	}
	// A log that does not parse is refused too, untouched.
	if err := os.WriteFile(path, []byte("junk"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := MeasureApp(context.Background(), reg, path, app(2)); !errors.Is(err, eventlog.ErrFormat) {
		t.Fatalf("junk log: %v", err)
	}
}

// TestMeasureAppConcurrent: launches racing on one log (each with its
// own open file, as separate processes would) extend in log order.
func TestMeasureAppConcurrent(t *testing.T) {
	reg := fakeRTMR3(t)
	path := filepath.Join(t.TempDir(), "rtmr3.log")
	var wg sync.WaitGroup
	errs := make(chan error, 40)
	for g := range 8 {
		wg.Go(func() {
			for i := range 5 {
				if _, err := MeasureApp(context.Background(), reg, path, app(byte(g*5+i))); err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if apps, uncovered := replayLog(t, reg, path); len(apps) != 40 || uncovered != 0 {
		t.Fatalf("%d apps, %d uncovered; want 40, 0", len(apps), uncovered)
	}
}

// TestOpenRTMR: the sysfs file under an injected root is found first and
// gets the digest written at offset 0 (a plain file stands in for the
// kernel's, so it holds the last digest rather than extending); without
// any interface the error names both paths.
func TestOpenRTMR(t *testing.T) {
	root := t.TempDir()
	if _, err := OpenRTMR(RTMRConfig{Root: root}, 3); !errors.Is(err, ErrNoRTMRInterface) ||
		!strings.Contains(err.Error(), "tdx_guest/measurements/rtmr3:sha384") || !strings.Contains(err.Error(), "tsm/rtmrs") {
		t.Fatalf("no interface: %v", err)
	}
	p := filepath.Join(root, fmt.Sprintf(SysfsRTMRPath, 3))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, make([]byte, 48), 0o644); err != nil {
		t.Fatal(err)
	}
	r, err := OpenRTMR(RTMRConfig{Root: root}, 3)
	if err != nil || !strings.Contains(r.How(), p) {
		t.Fatalf("%v %v", r, err)
	}
	d := [eventlog.DigestSize]byte{1, 2, 3}
	if err := r.Extend(d); err != nil {
		t.Fatal(err)
	}
	if got, err := r.Read(); err != nil || got != d {
		t.Fatalf("read %x %v", got, err)
	}
	if _, err := OpenRTMR(RTMRConfig{Root: root}, 4); err == nil {
		t.Fatal("RTMR4 opened")
	}
}

// racing extends twice when asked once: another writer extending RTMR3
// between our extension and the read back.
type racing struct{ Register }

func (r racing) Extend(d [eventlog.DigestSize]byte) error {
	if err := r.Register.Extend(d); err != nil {
		return err
	}
	return r.Register.Extend([eventlog.DigestSize]byte{7})
}

// TestMeasureAppReadBack: an extension by someone else at the same time
// is caught by the read back.
func TestMeasureAppReadBack(t *testing.T) {
	reg := fakeRTMR3(t)
	path := filepath.Join(t.TempDir(), "rtmr3.log")
	if _, err := MeasureApp(context.Background(), racing{reg}, path, app(1)); !errors.Is(err, ErrLogMismatch) {
		t.Fatalf("%v, want ErrLogMismatch", err)
	}
}

// TestMeasureAppForeignLogBytes: uncovered events are cut only from a log
// whose bytes are this writer's encoding; another writer's log (here: a
// header with another errata byte, which parses the same) is refused.
func TestMeasureAppForeignLogBytes(t *testing.T) {
	reg := fakeRTMR3(t)
	path := filepath.Join(t.TempDir(), "rtmr3.log")
	b := eventlog.EncodeHeader()
	b[32+16+4+2] = 0                                  // errata
	b = append(b, eventlog.EncodeAppEvent(app(1))...) // logged, never extended
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := MeasureApp(context.Background(), reg, path, app(2)); err == nil || !strings.Contains(err.Error(), "not written by cloister") {
		t.Fatalf("%v", err)
	}
	if got, _ := os.ReadFile(path); !bytes.Equal(got, b) {
		t.Fatal("the foreign log was changed")
	}
}

// TestMeasureAppLockLiveness: a launch waiting for a lock another holds
// returns when its context ends, and succeeds once the lock is released.
func TestMeasureAppLockLiveness(t *testing.T) {
	reg := fakeRTMR3(t)
	path := filepath.Join(t.TempDir(), "rtmr3.log")
	holder, err := os.OpenFile(path+LockSuffix, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Close()
	if err := syscall.Flock(int(holder.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := MeasureApp(ctx, reg, path, app(1))
		done <- err
	}()
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("%v, want context.Canceled", err)
	}
	go func() {
		_, err := MeasureApp(context.Background(), reg, path, app(1))
		done <- err
	}()
	if err := syscall.Flock(int(holder.Fd()), syscall.LOCK_UN); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
