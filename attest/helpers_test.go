package attest

import (
	"os"
	"testing"
)

// osMkdirTemp makes the package-wide sim directory; it outlives single
// tests (the fixture is shared), so it lives in the system temp dir.
func osMkdirTemp() (string, error) {
	d, err := os.MkdirTemp("", "attest-sim-*")
	if err == nil {
		simDirs = append(simDirs, d)
	}
	return d, err
}

// simDirs are removed by TestMain when the package's tests end.
var simDirs []string

func TestMain(m *testing.M) {
	code := m.Run()
	for _, d := range simDirs {
		os.RemoveAll(d)
	}
	os.Exit(code)
}
