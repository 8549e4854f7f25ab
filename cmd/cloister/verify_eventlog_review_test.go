package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestVerifyAppDigestFailsClosed: --app-digest never passes without what
// proves an app: no identity flag is a usage error (an app digest names no
// TD); SNP evidence with an event log is refused (no RTMR); an empty or
// missing runtime log file is refused with its reason; a log of the wrong
// register layout (only the runtime log, no CCEL, against a real RTMR0)
// fails the replay.
func TestVerifyAppDigestFailsClosed(t *testing.T) {
	q := ccelDir + "cos-113-tdx-quote.dat"
	base := []string{"verify", "evidence", q, "--no-collateral", "--at", "2024-08-01T00:00:00Z"}
	digest := strings.Repeat("ab", 32)
	empty := filepath.Join(t.TempDir(), "empty.log")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name   string
		args   []string
		code   int
		stderr string
	}{
		{"no identity", []string{"--event-log", ccelDir + "ccel_data.dat", "--app-digest", digest}, exitUsage, "identity"},
		{"empty log", []string{"--event-log", empty, "--mrtd", strings.Repeat("00", 48), "--app-digest", digest}, exitFailed, "log 0 is empty"},
		{"missing log", []string{"--event-log", filepath.Join(t.TempDir(), "nope"), "--any-identity", "--app-digest", digest}, exitFailed, "reading event log"},
		{"table is not the log's", []string{"--event-log", ccelDir + "ccel_table.dat", "--ccel-table", ccelDir + "ccel_table.dat"}, exitFailed, "CCEL log area is 56 bytes"},
		{"not a log", []string{"--event-log", ccelDir + "ccel_table.dat"}, exitFailed, "malformed"},
	} {
		r := runCLI(t, append(append([]string(nil), base...), c.args...)...)
		if r.code != c.code || !strings.Contains(r.stderr, c.stderr) || (c.code != exitOK && r.stdout != "") {
			t.Errorf("%s: want exit %d naming %q\n%s", c.name, c.code, c.stderr, r)
		}
	}
	r := runCLI(t, "verify", "evidence", "../../testdata/snp/attestation.bin", "--vcek", "../../testdata/snp/vcek.testcer", "--at", "2025-07-01T00:00:00Z",
		"--event-log", ccelDir+"ccel_data.dat", "--any-identity", "--allow-debug", "--app-digest", digest)
	if r.code != exitFailed || !strings.Contains(r.stderr, "SEV-SNP has no runtime measurement register") || r.stdout != "" {
		t.Errorf("SNP evidence with an event log: want exit 1\n%s", r)
	}
}
