package host

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cloister-dev/cloister/host/wire"
	"github.com/cloister-dev/cloister/tee"
)

// TestAppCommandDescriptors: the descriptor numbers the child is told (the
// launch value's region=, the /proc/self/fd/N it executes) are where the
// region and the sealed image really are in the child: a child started
// from appCommand executes the sealed copy and finds the region file at
// the number its launch value names. A number that drifted from the
// ExtraFiles order fails the exec or names another file.
func TestAppCommandDescriptors(t *testing.T) {
	sh, err := filepath.EvalSymlinks("/bin/sh")
	if err != nil {
		t.Skipf("no /bin/sh: %v", err)
	}
	region, err := os.Create(filepath.Join(t.TempDir(), "region-marker"))
	if err != nil {
		t.Fatal(err)
	}
	defer region.Close()
	img, err := sealedImage(sh)
	if err != nil {
		t.Fatal(err)
	}
	defer img.Close()
	// The script prints what its region descriptor names, then what the
	// process executes.
	script := `r=${` + wire.EnvBoundary + `#* region=}; r=${r%% *}; readlink /proc/self/fd/$r; readlink /proc/$$/exe`
	for _, withImg := range []bool{true, false} {
		var im *os.File
		if withImg {
			im = img
		}
		cmd := appCommand(Config{App: sh, Args: []string{"-c", script}, TEE: tee.KindSimTDX}, region, im)
		l, err := wire.ParseLaunch(strings.TrimPrefix(cmd.Env[0], wire.EnvBoundary+"="))
		if err != nil {
			t.Fatal(err)
		}
		if i := l.RegionFD - 3; i < 0 || i >= len(cmd.ExtraFiles) || cmd.ExtraFiles[i] != region {
			t.Fatalf("img %v: region=%d is not the region among %d inherited files", withImg, l.RegionFD, len(cmd.ExtraFiles))
		}
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Run(); err != nil {
			t.Fatalf("img %v: %s: %v\n%s", withImg, cmd.Path, err, out.String())
		}
		lines := strings.Split(strings.TrimSpace(out.String()), "\n")
		if len(lines) != 2 || lines[0] != region.Name() {
			t.Fatalf("img %v: the child's region descriptor names %q, want %s", withImg, out.String(), region.Name())
		}
		if withImg != strings.HasPrefix(lines[1], "/memfd:cloister-app") {
			t.Errorf("img %v: the child executes %q", withImg, lines[1])
		}
	}
}
