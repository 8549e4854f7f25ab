package wire

import (
	"crypto/rand"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cloister-dev/cloister/tee/gramine/manifest"
)

// TestLaunchPaths: the Gramine form of the launch value round-trips, and
// every path the enclave could be pointed at outside /dev/shm, or in a
// sub-directory of it, is refused, as are mixed and test-only misuses.
func TestLaunchPaths(t *testing.T) {
	for _, l := range []Launch{
		{RegionPath: "/dev/shm/cloister-app.region", EventsPath: "/dev/shm/cloister-app.events", TEE: "sgx"},
		{RegionPath: "/dev/shm/r", EventsPath: "/dev/shm/e", TEE: "sgx", AttestRoot: "/tmp/fake-attestation"},
	} {
		if got, err := ParseLaunch(l.String()); err != nil || got != l {
			t.Errorf("round trip of %+v = %+v, %v", l, got, err)
		}
	}
	for _, bad := range []string{
		"v1 region=/tmp/r events=/dev/shm/e tee=sgx",
		"v1 region=/dev/shm/sub/r events=/dev/shm/e tee=sgx",
		"v1 region=/dev/shm/../etc/passwd events=/dev/shm/e tee=sgx",
		"v1 region=/dev/shm/./r events=/dev/shm/e tee=sgx",
		"v1 region=/dev/shm/ events=/dev/shm/e tee=sgx",
		"v1 region=/dev/shm/.hidden events=/dev/shm/e tee=sgx",
		"v1 region=/dev/shm/a%20b events=/dev/shm/e tee=sgx",
		"v1 region=/dev/shm/" + strings.Repeat("a", 256) + " events=/dev/shm/e tee=sgx",
		"v1 region=/dev/shm/r events=4 tee=sgx",
		"v1 region=3 events=/dev/shm/e tee=sgx",
		"v1 region=/dev/shm/r events=/dev/shm/r tee=sgx",
		"v1 region=/dev/shm/r events=/dev/shm/e tee=sim-sgx attest=/tmp/a",
		"v1 region=/dev/shm/r events=/dev/shm/e tee=sgx attest=tmp/a",
		"v1 region=/dev/shm/r events=/dev/shm/e tee=sgx attest=/tmp/../a",
		"v1 region=/dev/shm/r events=/dev/shm/e tee=sgx attest=/a attest=/b",
		"v1 region=/dev/shm/r events=/dev/shm/e attest=/a",
		"v1 region=/dev/shm/r region=/dev/shm/x tee=sgx attest=/a",
		"v1 region=3 events=4 tee=sgx",
	} {
		if l, err := ParseLaunch(bad); err == nil {
			t.Errorf("ParseLaunch(%q) = %+v", bad, l)
		}
	}
}

// TestLaunchMatchesManifest: the value the Gramine manifest fixes is the
// launch this package reads (the manifest package cannot import wire).
func TestLaunchMatchesManifest(t *testing.T) {
	l, err := ParseLaunch(manifest.BoundaryValue("echo"))
	if err != nil {
		t.Fatal(err)
	}
	want := Launch{RegionPath: manifest.RegionPath("echo"), EventsPath: manifest.EventsPath("echo"), TEE: "sgx"}
	if l != want || l.String() != manifest.BoundaryValue("echo") || manifest.EnvBoundary != EnvBoundary || manifest.ShmDir != ShmDir {
		t.Errorf("manifest's launch %+v, want %+v", l, want)
	}
}

// shmName returns a /dev/shm path unique to this test run.
func shmName(t *testing.T, what string) string {
	t.Helper()
	var b [6]byte
	rand.Read(b[:])
	p := filepath.Join(ShmDir, "cloister-test-"+hex.EncodeToString(b[:])+"."+what)
	t.Cleanup(func() { os.Remove(p) })
	return p
}

// TestEventsPath: an event page made at a /dev/shm path and attached by
// name carries notifications across; names that are not a regular file of
// the page's size are refused without blocking.
func TestEventsPath(t *testing.T) {
	if st, err := os.Stat(ShmDir); err != nil || !st.IsDir() {
		t.Skipf("no %s", ShmDir)
	}
	p := shmName(t, "events")
	host, err := CreateEventsAt(p)
	if err != nil {
		t.Fatal(err)
	}
	defer host.Close()
	if _, err := CreateEventsAt(p); err == nil {
		t.Fatal("CreateEventsAt over an existing file succeeded")
	}
	enc, err := AttachEventsPath(p)
	if err != nil {
		t.Fatal(err)
	}
	defer enc.Close()
	before := enc.Seq(7)
	host.Notify(7)
	if enc.Seq(7) != before+1 || enc.Global() == 0 {
		t.Fatalf("notification not seen: seq %d -> %d", before, enc.Seq(7))
	}
	enc.WaitGlobal(enc.Global()-1, time.Millisecond) // returns at once: the value changed

	fifo := shmName(t, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	short := shmName(t, "short")
	if err := os.WriteFile(short, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	link := shmName(t, "link")
	if err := os.Symlink(p, link); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{fifo, short, link, "/tmp/events", ShmDir + "/missing-" + filepath.Base(p)} {
		if _, err := AttachEventsPath(bad); err == nil {
			t.Errorf("AttachEventsPath(%s) succeeded", bad)
		}
	}
	if _, err := CreateEventsAt("/tmp/x.events"); err == nil {
		t.Error("CreateEventsAt outside /dev/shm succeeded")
	}
}

// FuzzParseLaunch: whatever ParseLaunch accepts re-encodes to a value that
// parses to the same Launch, names files only directly under /dev/shm, and
// carries attest= only for tee=sgx.
func FuzzParseLaunch(f *testing.F) {
	for _, s := range []string{
		manifest.BoundaryValue("echo"),
		manifest.BoundaryValue("echo") + " attest=/tmp/fake",
		Launch{RegionFD: 3, EventsFD: 4, TEE: "sim-sgx"}.String(),
		"v1 region=/dev/shm/a events=/dev/shm/../b tee=sgx",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		l, err := ParseLaunch(s)
		if err != nil {
			return
		}
		again, err := ParseLaunch(l.String())
		if err != nil || again != l {
			t.Fatalf("%q parses to %+v, which re-encodes to %q: %+v, %v", s, l, l.String(), again, err)
		}
		for _, p := range []string{l.RegionPath, l.EventsPath} {
			if p != "" && (filepath.Dir(p) != ShmDir || filepath.Clean(p) != p) {
				t.Fatalf("%q names %q outside %s", s, p, ShmDir)
			}
		}
		if l.AttestRoot != "" && l.TEE != "sgx" {
			t.Fatalf("%q: attest with tee %q", s, l.TEE)
		}
		if l.TEE == "sgx" && l.RegionPath == "" {
			t.Fatalf("%q: tee=sgx with descriptors", s)
		}
	})
}

// TestCheckEventsFile: inside Gramine, a file of the untrusted_shm mount
// stats as a character device of the host file's size (Gramine's
// libos/src/fs/shm/fs.c), so the event page must be accepted as one; a
// real device (size 0), a FIFO or a directory is refused.
func TestCheckEventsFile(t *testing.T) {
	for _, tc := range []struct {
		name string
		mode uint32
		size int64
		ok   bool
	}{
		{"host regular file", syscall.S_IFREG | 0o600, EventPageSize, true},
		{"Gramine untrusted_shm file", syscall.S_IFCHR | 0o600, EventPageSize, true},
		{"real character device", syscall.S_IFCHR | 0o666, 0, false},
		{"wrong size", syscall.S_IFREG | 0o600, EventPageSize + 1, false},
		{"fifo", syscall.S_IFIFO | 0o600, EventPageSize, false},
		{"directory", syscall.S_IFDIR | 0o700, EventPageSize, false},
	} {
		if err := checkEventsFile("/dev/shm/x", tc.mode, tc.size); (err == nil) != tc.ok {
			t.Errorf("%s: %v, want ok=%v", tc.name, err, tc.ok)
		}
	}
}
