package main

import (
	"strings"
	"testing"
)

// "help COMMAND --help" is help on COMMAND, as "help --help" is help on
// help: a trailing help flag is not part of the command's name.
func TestHelpCommandHelpFlag(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"help", "verify", "--help"}, "verify cert"},
		{[]string{"help", "verify", "cert", "--help"}, "cloister verify cert"},
		{[]string{"help", "attest", "verify-token", "-h"}, "--skip-appraisal"},
	} {
		r := runCLI(t, tc.args...)
		if r.code != 0 || !strings.Contains(r.stdout, tc.want) {
			t.Errorf("cloister %s: exit %d, want 0 printing %q\n%s", strings.Join(tc.args, " "), r.code, tc.want, r)
		}
	}
	if r := runCLI(t, "help", "nosuch", "--help"); r.code != exitUsage {
		t.Errorf("help nosuch --help: exit %d, want 2", r.code)
	}
}
