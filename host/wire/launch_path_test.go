package wire

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/cloister-dev/cloister/tee/gramine/manifest"
)

// TestLaunchPaths: the Gramine form of the launch value round-trips, and
// every path the enclave could be pointed at outside /dev/shm, or in a
// sub-directory of it, is refused, as are test-only misuses and the v1
// form's event page (gone in v2), whether by path or by descriptor.
func TestLaunchPaths(t *testing.T) {
	for _, l := range []Launch{
		{RegionPath: "/dev/shm/cloister-app.region", TEE: "sgx"},
		{RegionPath: "/dev/shm/r", TEE: "sgx", AttestRoot: "/tmp/fake-attestation"},
		{RegionPath: "/dev/shm/r", TEE: "sim-sgx"},
	} {
		if got, err := ParseLaunch(l.String()); err != nil || got != l {
			t.Errorf("round trip of %+v = %+v, %v", l, got, err)
		}
	}
	for _, bad := range []string{
		"v2 region=/tmp/r tee=sgx",
		"v2 region=/dev/shm/sub/r tee=sgx",
		"v2 region=/dev/shm/../etc/passwd tee=sgx",
		"v2 region=/dev/shm/./r tee=sgx",
		"v2 region=/dev/shm/ tee=sgx",
		"v2 region=/dev/shm/.hidden tee=sgx",
		"v2 region=/dev/shm/a%20b tee=sgx",
		"v2 region=/dev/shm/" + strings.Repeat("a", 256) + " tee=sgx",
		"v2 region=/dev/shm/r region=/dev/shm/x tee=sgx",
		"v2 region=/dev/shm/r region=3 tee=sgx",
		"v2 region=/dev/shm/r tee=sim-sgx attest=/tmp/a",
		"v2 region=/dev/shm/r tee=sgx attest=tmp/a",
		"v2 region=/dev/shm/r tee=sgx attest=/tmp/../a",
		"v2 region=/dev/shm/r tee=sgx attest=/a attest=/b",
		"v2 region=/dev/shm/r attest=/a",
		"v2 region=/dev/shm/r tee=sgx tee=sgx",
		"v2 region=3 tee=sgx",
		"v2 region=3 tee=sgx attest=/a",
		"v2 region=/dev/shm/r events=/dev/shm/e tee=sgx",
		"v2 region=/dev/shm/r events=4 tee=sgx",
		"v1 region=/dev/shm/r events=/dev/shm/e tee=sgx",
		"v1 region=/dev/shm/r tee=sgx",
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
	want := Launch{RegionPath: manifest.RegionPath("echo"), TEE: "sgx"}
	if l != want || l.String() != manifest.BoundaryValue("echo") || manifest.EnvBoundary != EnvBoundary || manifest.ShmDir != ShmDir {
		t.Errorf("manifest's launch %+v, want %+v", l, want)
	}
}

// FuzzParseLaunch: whatever ParseLaunch accepts re-encodes to a value that
// parses to the same Launch, names files only directly under /dev/shm, and
// carries attest= only for tee=sgx.
func FuzzParseLaunch(f *testing.F) {
	for _, s := range []string{
		manifest.BoundaryValue("echo"),
		manifest.BoundaryValue("echo") + " attest=/tmp/fake",
		Launch{RegionFD: 3, TEE: "sim-sgx"}.String(),
		"v2 region=/dev/shm/../b tee=sgx",
		"v1 region=/dev/shm/a events=/dev/shm/b tee=sgx",
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
		if p := l.RegionPath; p != "" && (filepath.Dir(p) != ShmDir || filepath.Clean(p) != p) {
			t.Fatalf("%q names %q outside %s", s, p, ShmDir)
		}
		if l.AttestRoot != "" && l.TEE != "sgx" {
			t.Fatalf("%q: attest with tee %q", s, l.TEE)
		}
		if l.TEE == "sgx" && l.RegionPath == "" {
			t.Fatalf("%q: tee=sgx with descriptors", s)
		}
	})
}
