package main

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cloister-dev/cloister/tee/appsign"
)

// The Intel SGX SDK sample key and its published MRSIGNER (see
// tee/appsign/testdata/README.md). Tests sign with it: RSA-3072 keygen is
// slow, so TestSignNewKey is the only test here that makes a key.
const (
	sampleKey      = "../../tee/appsign/testdata/intel_sgx_sdk_sample_key.pem"
	sampleMRSIGNER = "83d719e77deaca1470f6baf62a4d774303c899db69020f9c70ee1dfc08c7ce9e"
	testEnclaveCfg = `{"product_id": 7, "svn": 3, "debug": false, "heap_mb": 128, "threads": 8}`
)

// appFixture writes an app binary and its enclave.json into a fresh
// directory.
func appFixture(t *testing.T) (dir, app, cfg string) {
	t.Helper()
	dir = t.TempDir()
	app = filepath.Join(dir, "app")
	cfg = filepath.Join(dir, "enclave.json")
	if err := os.WriteFile(app, []byte("\x7fELF pretend enclave app\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfg, []byte(testEnclaveCfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir, app, cfg
}

// parseLines reads "name hex" output lines into a map.
func parseLines(t *testing.T, out string) map[string]string {
	t.Helper()
	m := map[string]string{}
	for _, line := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
		k, v, ok := strings.Cut(line, " ")
		if !ok {
			t.Fatalf("output line %q is not \"name hex\"", line)
		}
		m[k] = v
	}
	return m
}

func TestSignThenMeasureAgree(t *testing.T) {
	dir, app, cfg := appFixture(t)
	sig := filepath.Join(dir, "app.sig")

	signed := runCLI(t, "sign", app, "--key", sampleKey, "--config", cfg, "--out", sig)
	if signed.code != 0 || signed.stderr != "" {
		t.Fatalf("sign: %s", signed)
	}
	s := parseLines(t, signed.stdout)
	if s["mrsigner"] != sampleMRSIGNER {
		t.Fatalf("sign printed mrsigner %s, want %s", s["mrsigner"], sampleMRSIGNER)
	}

	// The library agrees with what sign printed and wrote.
	want, err := appsign.MeasureFile(app, appsign.Config{ProductID: 7, SVN: 3, HeapMB: 128, Threads: 8})
	if err != nil {
		t.Fatal(err)
	}
	if s["mrenclave"] != hex.EncodeToString(want[:]) {
		t.Fatalf("sign printed mrenclave %s, library measures %x", s["mrenclave"], want)
	}

	for _, args := range [][]string{
		{"measure", app, "--sig", sig},
		{"measure", app, "--config", cfg},
		{"measure", "--sig", sig, "--config", cfg, app},
	} {
		m := runCLI(t, args...)
		if m.code != 0 || m.stderr != "" {
			t.Fatalf("%v: %s", args, m)
		}
		got := parseLines(t, m.stdout)
		if got["mrenclave"] != s["mrenclave"] {
			t.Errorf("%v: mrenclave %s, sign said %s", args, got["mrenclave"], s["mrenclave"])
		}
		withSig := strings.Contains(strings.Join(args, " "), "--sig")
		if withSig && got["mrsigner"] != sampleMRSIGNER {
			t.Errorf("%v: mrsigner %q, want %s", args, got["mrsigner"], sampleMRSIGNER)
		}
		if !withSig && len(got) != 1 {
			t.Errorf("%v: printed %v, want mrenclave only", args, got)
		}
	}

	j := runCLI(t, "measure", app, "--sig", sig, "--format", "json")
	if j.code != 0 {
		t.Fatalf("json: %s", j)
	}
	var out map[string]string
	if err := json.Unmarshal([]byte(j.stdout), &out); err != nil {
		t.Fatalf("json output %q: %v", j.stdout, err)
	}
	if len(out) != 2 || out["mrenclave"] != s["mrenclave"] || out["mrsigner"] != sampleMRSIGNER {
		t.Fatalf("json output %v", out)
	}
	j = runCLI(t, "measure", app, "--format", "json")
	if j.code != 0 || strings.Contains(j.stdout, "mrsigner") {
		t.Fatalf("json without --sig: %s", j)
	}
}

// Without --config and --sig, measure uses appsign.DefaultConfig.
func TestMeasureDefaultConfig(t *testing.T) {
	_, app, _ := appFixture(t)
	r := runCLI(t, "measure", app)
	if r.code != 0 || r.stderr != "" {
		t.Fatal(r)
	}
	want, err := appsign.MeasureFile(app, appsign.Config{Debug: true, HeapMB: 256, Threads: 4})
	if err != nil {
		t.Fatal(err)
	}
	if r.stdout != "mrenclave "+hex.EncodeToString(want[:])+"\n" {
		t.Fatalf("stdout %q, want the default-config measurement %x", r.stdout, want)
	}
}

func TestSignDefaultOut(t *testing.T) {
	_, app, cfg := appFixture(t)
	if r := runCLI(t, "sign", app, "--key", sampleKey, "--config", cfg); r.code != 0 {
		t.Fatal(r)
	}
	s, err := appsign.ReadSignatureFile(app + ".sig")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Verify(); err != nil {
		t.Fatal(err)
	}
}

func TestMeasureSignatureFailures(t *testing.T) {
	dir, app, cfg := appFixture(t)
	sig := filepath.Join(dir, "app.sig")
	if r := runCLI(t, "sign", app, "--key", sampleKey, "--config", cfg, "--out", sig); r.code != 0 {
		t.Fatal(r)
	}
	sigData, err := os.ReadFile(sig)
	if err != nil {
		t.Fatal(err)
	}

	other := filepath.Join(dir, "other")
	if err := os.WriteFile(other, []byte("\x7fELF pretend enclave app\n!"), 0o755); err != nil {
		t.Fatal(err)
	}
	otherCfg := filepath.Join(dir, "other.json")
	if err := os.WriteFile(otherCfg, []byte(`{"product_id": 7, "svn": 4, "debug": false, "heap_mb": 128, "threads": 8}`), 0o644); err != nil {
		t.Fatal(err)
	}
	tampered := filepath.Join(dir, "tampered.sig")
	if err := os.WriteFile(tampered, bytes.Replace(sigData, []byte(`"svn": 3`), []byte(`"svn": 4`), 1), 0o644); err != nil {
		t.Fatal(err)
	}
	junk := filepath.Join(dir, "junk.sig")
	if err := os.WriteFile(junk, []byte("not a signature"), 0o644); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name      string
		args      []string
		stderrHas string
	}{
		{"other binary", []string{"measure", other, "--sig", sig}, "is not the binary"},
		{"config disagrees", []string{"measure", app, "--sig", sig, "--config", otherCfg}, "disagree"},
		{"tampered signature", []string{"measure", app, "--sig", tampered}, "bad signature"},
		{"junk signature", []string{"measure", app, "--sig", junk}, "appsign: signature file"},
		{"missing signature", []string{"measure", app, "--sig", filepath.Join(dir, "nope.sig")}, "no such file"},
		{"missing app", []string{"measure", filepath.Join(dir, "nope")}, "no such file"},
		{"app is a directory", []string{"measure", dir}, "not a regular file"},
		{"bad config", []string{"measure", app, "--config", junk}, "appsign: config"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := runCLI(t, tt.args...)
			if r.code != 1 || r.stdout != "" || !strings.Contains(r.stderr, tt.stderrHas) {
				t.Fatalf("want exit 1, no stdout, stderr containing %q; got %s", tt.stderrHas, r)
			}
		})
	}
}

func TestSignFailures(t *testing.T) {
	dir, app, cfg := appFixture(t)
	write := func(name, data string) string {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	notKey := write("notkey.pem", "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
	garbage := write("garbage.pem", "hello")
	badCfg := write("bad.json", `{"debug": false, "heap_mb": 0}`)
	unknownCfg := write("unknown.json", `{"debug": false, "stack_mb": 1}`)
	out := filepath.Join(dir, "out.sig")

	tests := []struct {
		name      string
		args      []string
		stderrHas string
	}{
		{"key not a key", []string{"sign", app, "--key", notKey, "--config", cfg, "--out", out}, `PEM block "CERTIFICATE"`},
		{"key garbage", []string{"sign", app, "--key", garbage, "--config", cfg, "--out", out}, "no PEM block"},
		{"key missing", []string{"sign", app, "--key", filepath.Join(dir, "nope.pem"), "--config", cfg, "--out", out}, "no such file"},
		{"config out of range", []string{"sign", app, "--key", sampleKey, "--config", badCfg, "--out", out}, "heap_mb 0"},
		{"config unknown field", []string{"sign", app, "--key", sampleKey, "--config", unknownCfg, "--out", out}, `unknown field "stack_mb"`},
		{"app missing", []string{"sign", filepath.Join(dir, "nope"), "--key", sampleKey, "--config", cfg, "--out", out}, "no such file"},
		{"app empty", []string{"sign", write("empty", ""), "--key", sampleKey, "--config", cfg, "--out", out}, "empty binary"},
		{"out dir missing", []string{"sign", app, "--key", sampleKey, "--config", cfg, "--out", filepath.Join(dir, "no", "out.sig")}, "writing signature"},
		{"new key exists", []string{"sign", "--new-key", garbage}, "refusing to overwrite"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := runCLI(t, tt.args...)
			if r.code != 1 || r.stdout != "" || !strings.Contains(r.stderr, tt.stderrHas) {
				t.Fatalf("want exit 1, no stdout, stderr containing %q; got %s", tt.stderrHas, r)
			}
		})
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Fatalf("a failed sign left %s behind (%v)", out, err)
	}
	if got, _ := os.ReadFile(garbage); string(got) != "hello" {
		t.Fatal("--new-key changed an existing file")
	}
}

func TestSignMeasureUsage(t *testing.T) {
	_, app, cfg := appFixture(t)
	tests := []struct {
		name      string
		args      []string
		stderrHas string
	}{
		{"sign nothing", []string{"sign"}, "missing APP"},
		{"sign no key", []string{"sign", app, "--config", cfg}, "missing --key"},
		{"sign no config", []string{"sign", app, "--key", sampleKey}, "missing --config"},
		{"sign two apps", []string{"sign", app, app, "--key", sampleKey, "--config", cfg}, "want one APP"},
		{"sign new-key and app", []string{"sign", "--new-key", "k.pem", app}, "--new-key makes a key and nothing else"},
		{"sign new-key and key", []string{"sign", "--new-key", "k.pem", "--key", sampleKey}, "--new-key makes a key"},
		{"sign out is app", []string{"sign", app, "--key", sampleKey, "--config", cfg, "--out", app}, "would replace APP or the key"},
		{"sign out is key", []string{"sign", app, "--key", sampleKey, "--config", cfg, "--out", sampleKey}, "would replace APP or the key"},
		{"sign bad flag", []string{"sign", app, "--bogus"}, "flag provided but not defined"},
		{"sign key no value", []string{"sign", app, "--key"}, "flag needs an argument"},
		{"measure nothing", []string{"measure"}, "missing APP"},
		{"measure two apps", []string{"measure", app, app}, "want one APP"},
		{"measure bad format", []string{"measure", app, "--format", "xml"}, `--format "xml"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := runCLI(t, tt.args...)
			if r.code != 2 || r.stdout != "" || !strings.Contains(r.stderr, tt.stderrHas) {
				t.Fatalf("want exit 2, no stdout, stderr containing %q; got %s", tt.stderrHas, r)
			}
		})
	}
	for _, args := range [][]string{{"sign", "--help"}, {"help", "measure"}} {
		if r := runCLI(t, args...); r.code != 0 || !strings.Contains(r.stdout, "Usage:") {
			t.Errorf("%v: %s", args, r)
		}
	}
}

// TestSignNewKey is the whole flow with a fresh key: the one keygen of
// this test binary.
func TestSignNewKey(t *testing.T) {
	dir, app, cfg := appFixture(t)
	key := filepath.Join(dir, "key.pem")
	r := runCLI(t, "sign", "--new-key", key)
	if r.code != 0 || r.stderr != "" {
		t.Fatal(r)
	}
	fi, err := os.Stat(key)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("key mode %v, want 0600", fi.Mode().Perm())
	}
	keyMRSIGNER := parseLines(t, r.stdout)["mrsigner"]
	if len(keyMRSIGNER) != 64 || keyMRSIGNER == sampleMRSIGNER {
		t.Fatalf("--new-key printed %q", r.stdout)
	}
	before, _ := os.ReadFile(key)
	if again := runCLI(t, "sign", "--new-key", key); again.code != 1 || !strings.Contains(again.stderr, "refusing to overwrite") {
		t.Fatalf("second --new-key: %s", again)
	}
	if after, _ := os.ReadFile(key); !bytes.Equal(before, after) {
		t.Fatal("key file changed")
	}

	sig := filepath.Join(dir, "app.sig")
	signed := runCLI(t, "sign", app, "--key", key, "--config", cfg, "--out", sig)
	if signed.code != 0 {
		t.Fatal(signed)
	}
	measured := runCLI(t, "measure", app, "--sig", sig)
	if measured.code != 0 {
		t.Fatal(measured)
	}
	if measured.stdout != signed.stdout {
		t.Fatalf("measure printed\n%s\nsign printed\n%s", measured.stdout, signed.stdout)
	}
	if got := parseLines(t, measured.stdout)["mrsigner"]; got != keyMRSIGNER {
		t.Fatalf("mrsigner %s, --new-key said %s", got, keyMRSIGNER)
	}
}
