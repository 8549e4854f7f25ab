package kbs

import (
	"os"
	"testing"
)

func TestMain(m *testing.M) {
	code := m.Run()
	if simDir != "" {
		os.RemoveAll(simDir)
	}
	os.Exit(code)
}
