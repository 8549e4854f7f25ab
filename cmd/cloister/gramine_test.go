package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/cloister-dev/cloister/tee/gramine/manifest"
)

// TestGramineManifestCLI: the command writes the manifest of the app it is
// given (its SHA-256, its enclave.json, the arguments after "--", the
// listed host variables), to stdout or --out, the same bytes either way.
func TestGramineManifestCLI(t *testing.T) {
	dir := t.TempDir()
	app := filepath.Join(dir, "myapp")
	bin := []byte("\x7fELF not really, but a file to hash")
	if err := os.WriteFile(app, bin, 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "enclave.json")
	if err := os.WriteFile(cfg, []byte(`{"product_id": 7, "svn": 3, "debug": false, "heap_mb": 1024, "threads": 2}`), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "myapp.manifest")
	args := []string{"gramine", "manifest", app, "--config", cfg, "--env", "TZ", "--env", "LANG", "--", "--listen", ":8443"}
	r := runCLI(t, "gramine", "manifest", app, "--config", cfg, "--env", "TZ", "--env", "LANG", "--out", out, "--", "--listen", ":8443")
	if r.code != 0 || r.stdout != "" {
		t.Fatalf("gramine manifest --out: %v", r)
	}
	written, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	r = runCLI(t, args...)
	if r.code != 0 || !bytes.Equal([]byte(r.stdout), written) {
		t.Fatalf("stdout and --out differ: %v", r)
	}
	m, err := manifest.Parse(written)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(bin)
	s := m.SGX
	// enclave_size: 1024 MiB heap + one arena + 1152 MiB for the Go
	// runtime + the binary + 128 MiB for Gramine = 2369 MiB -> 4G.
	if m.Name() != "myapp" || s.TrustedFiles[0].SHA256 != hex.EncodeToString(sum[:]) || s.ISVProdID != 7 || s.ISVSVN != 3 || s.Debug ||
		s.EnclaveSize != "4G" || s.MaxThreads != 22 || s.RemoteAttestation != "dcap" {
		t.Errorf("manifest does not describe the app: %+v", s)
	}
	if !slices.Equal(m.Loader.Argv, []string{"/app/myapp", "--listen", ":8443"}) {
		t.Errorf("argv = %q", m.Loader.Argv)
	}
	if !slices.Equal(m.PassthroughEnv(), []string{"LANG", "TZ"}) {
		t.Errorf("passthrough = %q", m.PassthroughEnv())
	}
	// No configuration: the debug default, as 'cloister measure' uses.
	r = runCLI(t, "gramine", "manifest", app)
	if r.code != 0 || !strings.Contains(r.stdout, "debug = true") {
		t.Errorf("default configuration: %v", r)
	}
}

func TestGramineManifestCLIErrors(t *testing.T) {
	dir := t.TempDir()
	app := filepath.Join(dir, "app")
	if err := os.WriteFile(app, []byte("x"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"gramine", "manifest"}, 2, "missing APP"},
		{[]string{"gramine", "manifest", app, "--env", "GODEBUG"}, 2, "GODEBUG"},
		{[]string{"gramine", "manifest", app, "--env", "CLOISTER_BOUNDARY"}, 2, "fixed by the manifest"},
		{[]string{"gramine", "manifest", app, "--env", "A-B"}, 2, "not a variable name"},
		{[]string{"gramine", "manifest", app, "--bogus"}, 2, "bogus"},
		{[]string{"gramine", "manifest", filepath.Join(dir, "missing")}, 1, "missing"},
		{[]string{"gramine", "manifest", dir}, 1, "not a regular file"},
		{[]string{"gramine", "manifest", app, "--config", filepath.Join(dir, "none.json")}, 1, "none.json"},
		{[]string{"gramine", "manifest", app, "--libos", "relative.so"}, 1, "libos"},
	} {
		r := runCLI(t, tc.args...)
		if r.code != tc.code || r.stdout != "" || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("%q: %v; want exit %d mentioning %q", tc.args, r, tc.code, tc.want)
		}
	}
}

// TestMeasureSGX: 'cloister measure --tee sgx' computes nothing (Gramine's
// layout is gramine-sgx-sign's) and says how to get and pin the value.
func TestMeasureSGX(t *testing.T) {
	app := filepath.Join(t.TempDir(), "app")
	if err := os.WriteFile(app, []byte("x"), 0o755); err != nil {
		t.Fatal(err)
	}
	r := runCLI(t, "measure", app, "--tee", "sgx")
	if r.code != exitFailed || r.stdout != "" {
		t.Fatalf("%v", r)
	}
	for _, want := range []string{"gramine-sgx-sign", "gramine-sgx-sigstruct-view " + app + ".sig", "--mrenclave", "cloister gramine manifest " + app} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, r.stderr)
		}
	}
	if r := runCLI(t, "measure", app, "--tee", "bogus"); r.code != exitUsage {
		t.Errorf("--tee bogus: %v", r)
	}
	if r := runCLI(t, "measure", app, "--tee", "sim-sgx"); r.code != exitOK || !strings.HasPrefix(r.stdout, "mrenclave ") {
		t.Errorf("--tee sim-sgx: %v", r)
	}
}
