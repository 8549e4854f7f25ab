package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestRunUsage(t *testing.T) {
	r := runCLI(t, "run")
	if r.code != exitUsage || !strings.Contains(r.stderr, "missing APP") {
		t.Fatalf("run without APP = %d %q", r.code, r.stderr)
	}
	r = runCLI(t, "run", "--help")
	if r.code != exitOK || !strings.Contains(r.stdout, "--listen") || !strings.Contains(r.stdout, "network namespace") {
		t.Fatalf("run --help = %d %q", r.code, r.stdout)
	}
	dir := t.TempDir()
	r = runCLI(t, "run", "--tee", "bogus", "--sim-dir", dir, "--state", dir, filepath.Join(dir, "app"))
	if r.code != exitUsage || !strings.Contains(r.stderr, "want one of sim-sgx, sim-tdx") {
		t.Fatalf("run --tee bogus = %d %q", r.code, r.stderr)
	}
}

// TestRunExitStatus: cloister run exits with the app's status. The app
// here is a shell that is not an enclave app at all; it need not be, to
// exit.
func TestRunExitStatus(t *testing.T) {
	sh, err := filepath.EvalSymlinks("/bin/sh")
	if err != nil {
		t.Skip("no /bin/sh")
	}
	if _, err := os.Stat(sh); err != nil {
		t.Skip("no /bin/sh")
	}
	dir := t.TempDir()
	r := runCLI(t, "run", "--sim-dir", dir, "--state", dir, "--netns=false", sh, "--", "-c", "exit 3")
	if r.code != 3 {
		t.Fatalf("exit %d, want 3; stderr:\n%s", r.code, r.stderr)
	}
	if !strings.Contains(r.stderr, "network: shared with the host") {
		t.Errorf("the network mode is not logged:\n%s", r.stderr)
	}
}

// TestRunRelativeApp: "cloister run app" measures ./app and must launch
// that same file, not whatever "app" $PATH names.
func TestRunRelativeApp(t *testing.T) {
	sh, err := filepath.EvalSymlinks("/bin/sh")
	if err != nil {
		t.Skip("no /bin/sh")
	}
	data, err := os.ReadFile(sh)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "app"), data, 0o755); err != nil {
		t.Fatal(err)
	}
	// Another "app" on $PATH, which exits 5: launching it would be
	// running a file that was not measured.
	bin := filepath.Join(dir, "bin")
	if err := os.Mkdir(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(bin, "app"), []byte("#!"+sh+"\nexit 5\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", bin+string(os.PathListSeparator)+os.Getenv("PATH"))
	t.Chdir(dir)
	r := runCLI(t, "run", "--sim-dir", filepath.Join(dir, "sim"), "--state", dir, "--netns=false", "app", "--", "-c", "exit 3")
	if r.code != 3 {
		t.Fatalf("exit %d, want 3 (./app, the measured file); stderr:\n%s", r.code, r.stderr)
	}
}
