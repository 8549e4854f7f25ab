package tsm

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cloister-dev/cloister/evidence/eventlog"
)

// TestMeasureAppRefusesTrailingBytes: a runtime log whose parsed events
// are followed by bytes the parser skips (0xFF "padding", which
// go-eventlog stops at) is not this writer's log. Appending after them
// would extend RTMR3 with an event no verifier reads: the log could never
// replay again. It is refused, untouched, and nothing is extended.
func TestMeasureAppRefusesTrailingBytes(t *testing.T) {
	reg := fakeRTMR3(t)
	path := filepath.Join(t.TempDir(), "rtmr3.log")
	if _, err := MeasureApp(context.Background(), reg, path, app(1)); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(bytes.Repeat([]byte{0xff}, 16)); err != nil {
		t.Fatal(err)
	}
	f.Close()
	before, _ := os.ReadFile(path)
	v, _ := reg.Read()
	if _, err := MeasureApp(context.Background(), reg, path, app(2)); err == nil || !strings.Contains(err.Error(), "not written by cloister") {
		t.Fatalf("log with trailing padding: %v, want a refusal", err)
	}
	if after, _ := os.ReadFile(path); !bytes.Equal(before, after) {
		t.Fatal("the refused launch changed the log")
	}
	if w, _ := reg.Read(); w != v {
		t.Fatal("the refused launch extended RTMR3")
	}
	if apps, _ := replayLog(t, reg, path); len(apps) != 1 || apps[0] != app(1) {
		t.Fatalf("apps %+v, want app 1", apps)
	}
}

// TestMeasureAppTornAppend: an append that fails part way (here: the file
// size limit, as a full /run would) leaves no torn record behind; the
// launch fails, nothing is extended, and the next launch goes on. Before,
// the torn record made every later launch fail to parse the log.
func TestMeasureAppTornAppend(t *testing.T) {
	reg := fakeRTMR3(t)
	path := filepath.Join(t.TempDir(), "rtmr3.log")
	if _, err := MeasureApp(context.Background(), reg, path, app(1)); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	v, _ := reg.Read()
	var old syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_FSIZE, &old); err != nil {
		t.Fatal(err)
	}
	// Room for half a record: the write is cut short (EFBIG; Go ignores
	// SIGXFSZ).
	lim := old
	lim.Cur = uint64(st.Size()) + uint64(len(eventlog.EncodeAppEvent(app(2))))/2
	if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &lim); err != nil {
		t.Fatal(err)
	}
	_, err = MeasureApp(context.Background(), reg, path, app(2))
	if err2 := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &old); err2 != nil {
		t.Fatal(err2)
	}
	if err == nil {
		t.Fatal("the cut append succeeded")
	}
	if w, _ := reg.Read(); w != v {
		t.Fatal("a failed append extended RTMR3")
	}
	if got, _ := os.Stat(path); got.Size() != st.Size() {
		t.Fatalf("the log is %d bytes after the failed append, was %d: a torn record stays", got.Size(), st.Size())
	}
	if _, err := MeasureApp(context.Background(), reg, path, app(3)); err != nil {
		t.Fatalf("next launch: %v", err)
	}
	if apps, uncovered := replayLog(t, reg, path); len(apps) != 2 || apps[1] != app(3) || uncovered != 0 {
		t.Fatalf("apps %+v, uncovered %d", apps, uncovered)
	}
}

// TestMeasureAppReaderCannotBlock: the log is readable by everyone (it is
// handed to verifiers), and flock needs no write access: a lock held on a
// read-only descriptor of the log (any user of the TD could take it) must
// not stop launches. The launch lock is a separate file only its owner
// can open.
func TestMeasureAppReaderCannotBlock(t *testing.T) {
	reg := fakeRTMR3(t)
	path := filepath.Join(t.TempDir(), "rtmr3.log")
	if _, err := MeasureApp(context.Background(), reg, path, app(1)); err != nil {
		t.Fatal(err)
	}
	reader, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer reader.Close()
	if err := syscall.Flock(int(reader.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	// Bounded so that the failure before the fix is an error, not a hang.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := MeasureApp(ctx, reg, path, app(2)); err != nil {
		t.Fatalf("a reader's lock on the log blocked the launch: %v", err)
	}
	st, err := os.Stat(path + ".lock")
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("lock file mode %v, want 0600", st.Mode().Perm())
	}
}
