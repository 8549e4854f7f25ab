package main

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
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

// The decrypted app gets the broker URL the host handed the bundle
// (`cloister run --broker URL`), as a plain app does: RunHandoff passes it
// on, so the app can use env.Secret with the host's address (which it
// holds to its own pinned policy).
func TestEncryptedBundleAppSeesBrokerURL(t *testing.T) {
	s := newBundleScene(t)
	if r := s.sign(t); r.code != 0 {
		t.Fatalf("sign --encrypt: %s", r)
	}
	hostURL := "https://broker.example.test:8443"
	r := runCLIAt(t, s.now, "run", "--sim-dir", s.simDir, "--state", s.dir, "--broker", hostURL, s.app+".bundle", "--", "--show-broker")
	if r.code != 0 {
		t.Fatalf("cloister run --broker BUNDLE: %s", r)
	}
	if want := "broker url \"" + hostURL + "\""; !strings.Contains(r.stdout, want) {
		t.Errorf("the decrypted app did not get the host's broker URL; want %q in:\n%s", want, r)
	}
}
