package main

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/cloister-dev/cloister/bundle"
)

// Whether this binary is a bundle decides whether it runs only the
// loader or the whole CLI: a file it cannot read must be an error (main
// exits 1), never "not a bundle", or a host that makes a measured
// bundle's own file unreadable would get the CLI's subcommands under the
// bundle's measurement.
func TestBundleTailFailsClosed(t *testing.T) {
	dir := t.TempDir()
	plain := filepath.Join(dir, "plain")
	os.WriteFile(plain, []byte("a plain executable, long enough for a tail"), 0o755)
	tailed := filepath.Join(dir, "tailed")
	os.WriteFile(tailed, append([]byte("loader and the rest......"), bundle.Magic...), 0o755)
	short := filepath.Join(dir, "short")
	os.WriteFile(short, []byte("x"), 0o755)
	for path, want := range map[string]bool{plain: false, tailed: true, short: false} {
		if got, err := bundleTail(path); err != nil || got != want {
			t.Errorf("%s: %v, %v; want %v", filepath.Base(path), got, err, want)
		}
	}
	for name, path := range map[string]string{"missing": filepath.Join(dir, "missing"), "a directory": dir} {
		if got, err := bundleTail(path); err == nil || got {
			t.Errorf("%s: %v, %v; want an error", name, got, err)
		} else if !errors.Is(err, errSelfUnreadable) {
			t.Errorf("%s: %v, want errSelfUnreadable", name, err)
		}
	}
}
