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
	r = runCLI(t, "run", "--tee", "sgx", "--sim-dir", dir, "--state", dir, filepath.Join(dir, "app"))
	if r.code != exitFailed || !strings.Contains(r.stderr, "only sim-sgx and sim-tdx") {
		t.Fatalf("run --tee sgx = %d %q", r.code, r.stderr)
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
