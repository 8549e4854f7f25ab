package probe

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cloister-dev/cloister/tee"
	"github.com/cloister-dev/cloister/tee/sim"
)

func TestAutoFindsNothing(t *testing.T) {
	dir := t.TempDir()
	_, _, err := Open(context.Background(), Config{TSMPath: filepath.Join(dir, "tsm"), GramineRoot: filepath.Join(dir, "attestation")})
	if !errors.Is(err, ErrNoTEE) || !strings.Contains(err.Error(), "--tee sim-sgx") {
		t.Fatalf("%v; want ErrNoTEE that says how to use the simulator", err)
	}
}

// auto finds a Gramine tree when there is no configfs-tsm.
func TestAutoFindsGramine(t *testing.T) {
	dir := t.TempDir()
	root := filepath.Join(dir, "attestation")
	quote, err := os.ReadFile("../../testdata/sgx/dcap-qvl_sgx_quote_v3.bin")
	if err != nil {
		t.Fatal(err)
	}
	for name, b := range map[string][]byte{
		"attestation_type": []byte("dcap"), "user_report_data": {}, "quote": quote,
		"keys/_sgx_mrenclave": make([]byte, 16), "keys/_sgx_mrsigner": make([]byte, 16),
	} {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	p, found, err := Open(context.Background(), Config{TSMPath: filepath.Join(dir, "tsm"), GramineRoot: root})
	if err != nil {
		t.Fatal(err)
	}
	if p.Kind() != tee.KindSGX || found.Kind != tee.KindSGX || !strings.Contains(found.How, "Gramine") {
		t.Errorf("kind %s, found %+v", p.Kind(), found)
	}
}

func TestSimKinds(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "sim")
	for _, k := range []tee.Kind{tee.KindSimSGX, tee.KindSimTDX} {
		p, found, err := Open(context.Background(), Config{TEE: string(k), SimDir: dir, SimApp: sim.App{MRENCLAVE: [32]byte{1}}})
		if err != nil {
			t.Fatal(err)
		}
		if p.Kind() != k || !strings.Contains(found.How, "NOT FOR PRODUCTION") {
			t.Errorf("%s: %s %+v", k, p.Kind(), found)
		}
	}
	if _, _, err := Open(context.Background(), Config{TEE: "sim-sgx"}); err == nil {
		t.Error("simulator without a data directory")
	}
}

func TestExplicitHardwareAbsent(t *testing.T) {
	dir := t.TempDir()
	for _, k := range []string{"tdx", "sev-snp", "sgx", "nitro"} {
		if _, _, err := Open(context.Background(), Config{TEE: k, TSMPath: filepath.Join(dir, "tsm"), GramineRoot: filepath.Join(dir, "attestation")}); err == nil {
			t.Errorf("--tee %s opened with no hardware interface", k)
		}
	}
}
