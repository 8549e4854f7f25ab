package host

import (
	"fmt"
	"strings"
	"testing"
)

// fakeTB records how pgUnavailable ended a test.
type fakeTB struct{ skipped, failed string }

func (f *fakeTB) Helper()                           {}
func (f *fakeTB) Skipf(format string, args ...any)  { f.skipped = fmt.Sprintf(format, args...) }
func (f *fakeTB) Fatalf(format string, args ...any) { f.failed = fmt.Sprintf(format, args...) }

// In CI the PostgreSQL tests fail instead of skipping when no server can
// run: .ci/run installs PostgreSQL, so a skip there would hide a broken CI.
func TestPostgresUnavailableFailsInCI(t *testing.T) {
	t.Setenv("CI", "true")
	var f fakeTB
	pgUnavailable(&f, "no initdb in %v", []string{"PATH"})
	if f.failed == "" || f.skipped != "" || !strings.Contains(f.failed, "no initdb in [PATH]") {
		t.Errorf("CI=true: skipped %q, failed %q; want a failure", f.skipped, f.failed)
	}
	t.Setenv("CI", "")
	f = fakeTB{}
	pgUnavailable(&f, "no initdb")
	if f.skipped == "" || f.failed != "" {
		t.Errorf("outside CI: skipped %q, failed %q; want a skip", f.skipped, f.failed)
	}
}

// pgBinDir finds Debian's layout (/usr/lib/postgresql/VERSION/bin), which
// is not on PATH, as well as PATH: it must list it among the places tried
// or find the binaries there.
func TestPgBinDirLooksInDebianLayout(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	dir, tried := pgBinDir()
	if dir == "" && !strings.Contains(strings.Join(tried, " "), "/usr/lib/postgresql/") {
		t.Errorf("pgBinDir tried %v, not /usr/lib/postgresql/*/bin", tried)
	}
	if dir != "" {
		t.Logf("found %s", dir)
	}
}
