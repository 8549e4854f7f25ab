package host

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/cloister-dev/cloister/tee/appsign"
	"github.com/cloister-dev/cloister/tee/gramine/manifest"
)

// TestSignCommand: the exact gramine-sgx-sign invocation (run in the app's
// directory): the manifest in, the .manifest.sgx out (gramine-sgx looks
// for NAME.manifest.sgx and NAME.sig there), the key only when given.
func TestSignCommand(t *testing.T) {
	if got := signCommand("gramine-sgx-sign", "echo", ""); !slices.Equal(got, []string{"gramine-sgx-sign", "--manifest", "echo.manifest", "--output", "echo.manifest.sgx"}) {
		t.Errorf("without key: %q", got)
	}
	if got := signCommand("/opt/g/gramine-sgx-sign", "echo", "/k.pem"); !slices.Equal(got, []string{"/opt/g/gramine-sgx-sign", "--manifest", "echo.manifest", "--output", "echo.manifest.sgx", "--key", "/k.pem"}) {
		t.Errorf("with key: %q", got)
	}
}

// TestLockShm: one run per app name; a second is refused while the first
// holds the lock, stale files of a dead run are removed, and release
// removes everything.
func TestLockShm(t *testing.T) {
	if st, err := os.Stat("/dev/shm"); err != nil || !st.IsDir() {
		t.Skip("no /dev/shm")
	}
	name := "locktest-" + strings.ReplaceAll(t.Name(), "/", "-") + "-" + filepath.Base(t.TempDir())
	// A crashed run's leftovers.
	for _, p := range []string{manifest.RegionPath(name)} {
		if err := os.WriteFile(p, []byte("stale"), 0o600); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.Remove(p) })
	}
	l, err := lockShm(name)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{manifest.RegionPath(name)} {
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("stale %s not removed: %v", p, err)
		}
	}
	if _, err := lockShm(name); err == nil || !strings.Contains(err.Error(), "another 'cloister run'") {
		t.Fatalf("second lock: %v", err)
	}
	l.release()
	l2, err := lockShm(name)
	if err != nil {
		t.Fatalf("after release: %v", err)
	}
	l2.release()
	if _, err := os.Stat(filepath.Join("/dev/shm", "cloister-"+name+".lock")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("lock file left: %v", err)
	}
}

func TestGramineValidate(t *testing.T) {
	app := filepath.Join(t.TempDir(), "echo")
	if err := os.WriteFile(app, []byte("x"), 0o755); err != nil {
		t.Fatal(err)
	}
	m, err := manifest.ForApp(app, manifest.Options{Config: appsign.DefaultConfig()})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{App: app, TEE: "sgx"}, "no Gramine manifest"},
		{Config{App: app, TEE: "sgx", Sig: "a.sig", Gramine: GramineOptions{Manifest: m}}, "--gramine-key"},
		{Config{App: filepath.Join(filepath.Dir(app), "other"), TEE: "sgx", Gramine: GramineOptions{Manifest: m}}, "the manifest is for"},
		{Config{App: app, TEE: "sgx", Args: []string{"x"}, Gramine: GramineOptions{Manifest: m}}, "fixed in the manifest"},
		{Config{App: app, TEE: "sgx", Gramine: GramineOptions{Manifest: m, DirectAttestRoot: "rel"}}, "not absolute"},
	} {
		if _, err := tc.cfg.validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want %q", tc.cfg, err, tc.want)
		}
	}
}
