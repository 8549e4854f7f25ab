package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestDemoInstalledBinary: the demo needs nothing but the cloister binary,
// as 'go install …/cmd/cloister@latest' leaves it: it runs from an empty
// directory, outside any source tree, with no Go toolchain on PATH.
func TestDemoInstalledBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds cloister and runs the demo")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "bin", "cloister")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	// A read-only working directory (enforced unless the tests run as
	// root) and no HOME: the demo writes only under TMPDIR.
	empty := filepath.Join(dir, "empty")
	if err := os.Mkdir(empty, 0o555); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "demo")
	cmd.Dir = empty
	cmd.Env = []string{"PATH=/usr/bin:/bin", "TMPDIR=" + dir}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("demo from an empty directory: %v\n%s", err, out)
	}
	for _, want := range []string{"6. ", "9. attested", "10. fresh evidence checked", "13. stopped", "the demo passed"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("demo output lacks %q:\n%s", want, out)
		}
	}
	entries, err := os.ReadDir(empty)
	if err != nil || len(entries) != 0 {
		t.Errorf("the demo left files in the working directory: %v %v", entries, err)
	}
}
