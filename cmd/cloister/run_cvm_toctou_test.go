package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cloister-dev/cloister/tee/tsm"
	"github.com/google/go-configfs-tsm/configfs/configfsi"
)

// swapOnExtend is the hostile actor between hash and exec: when `cloister
// run` extends RTMR3 (after hashing the app, before starting it), it
// replaces the app file with other code. It wraps go-configfs-tsm's fake
// rtmrs client, which still does the extension.
type swapOnExtend struct {
	configfsi.Client
	t          *testing.T
	app, other string
}

func (s *swapOnExtend) WriteFile(name string, contents []byte) error {
	if strings.Contains(name, "rtmrs") && strings.HasSuffix(name, "digest") {
		tmp := s.app + ".new"
		if err := os.WriteFile(tmp, []byte(s.other), 0o755); err != nil {
			s.t.Error(err)
		} else if err := os.Rename(tmp, s.app); err != nil {
			s.t.Error(err)
		}
	}
	return s.Client.WriteFile(name, contents)
}

// TestRunTDXRunsWhatItMeasured: the app file replaced after it was
// hashed (and its digest extended into RTMR3) does not run: the bytes
// that were measured do. Before, the launch executed the path again and
// ran the replacement under the measured app's RTMR3 entry.
func TestRunTDXRunsWhatItMeasured(t *testing.T) {
	f := newCVMTDX(t)
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	app := filepath.Join(t.TempDir(), "app")
	b, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(app, b, 0o755); err != nil {
		t.Fatal(err)
	}
	f.deps.RTMR = tsm.RTMRConfig{Client: &swapOnExtend{Client: f.deps.RTMR.Client, t: t, app: app, other: "#!/bin/sh\necho SWAPPED\n"}}
	var stdout, stderr bytes.Buffer
	e := &env{ctx: context.Background(), stdin: strings.NewReader(""), stdout: &stdout, stderr: &stderr, now: func() time.Time { return fixedNow }, cvm: f.deps}
	args := []string{"--state", t.TempDir(), "--netns=false", "--tee", "tdx", "--runtime-log", f.log, app, "--", cvmTestApp}
	r := result{finish(e, "run", runRun(e, args)), stdout.String(), stderr.String()}
	if got, _ := os.ReadFile(app); !strings.Contains(string(got), "SWAPPED") {
		t.Fatal("the app file was not swapped: the test did not attack")
	}
	if r.code != exitOK || strings.Contains(r.stdout, "SWAPPED") || !strings.Contains(r.stdout, " evidence=") {
		t.Fatalf("the replacement ran instead of the measured app: %s", r)
	}
}

// TestRunTDXScriptApp: the sealed copy is executed through a descriptor
// the child keeps open, so an interpreted app (#!) still runs, with its
// arguments.
func TestRunTDXScriptApp(t *testing.T) {
	f := newCVMTDX(t)
	app := filepath.Join(t.TempDir(), "app.sh")
	if err := os.WriteFile(app, []byte("#!/bin/sh\necho script-ran \"$@\"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	e := &env{ctx: context.Background(), stdin: strings.NewReader(""), stdout: &stdout, stderr: &stderr, now: func() time.Time { return fixedNow }, cvm: f.deps}
	// With --netns (the default): the sealed copy runs in the new
	// namespaces too (or the fallback, where the machine refuses them).
	args := []string{"--state", t.TempDir(), "--tee", "tdx", "--runtime-log", f.log, app, "--", "x"}
	r := result{finish(e, "run", runRun(e, args)), stdout.String(), stderr.String()}
	if r.code != exitOK || !strings.Contains(r.stdout, "script-ran x") {
		t.Fatalf("%s", r)
	}
}
