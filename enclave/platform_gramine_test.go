package enclave

import (
	"context"
	"crypto/rand"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cloister-dev/cloister/host/wire"
	"github.com/cloister-dev/cloister/tee"
	"github.com/cloister-dev/cloister/tee/gramine/graminetest"
	"github.com/cloister-dev/cloister/tee/sim"
)

// TestPlatformAt: where the process runs decides what a launch may ask
// for. Under Gramine (its attestation directory exists) the simulator kinds
// and attest= are refused, so a host cannot give a real enclave host-made
// evidence or keys; outside it, attest= opens the named tree.
func TestPlatformAt(t *testing.T) {
	dir := t.TempDir()
	realRoot := t.TempDir()                 // "Gramine is here"
	noRoot := filepath.Join(dir, "missing") // "not under Gramine"
	pki, err := sim.Load(filepath.Join(dir, "sim"), rand.Reader, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	plat, err := sim.NewPlatform(pki, tee.KindSimSGX, testApp, nil)
	if err != nil {
		t.Fatal(err)
	}
	tree, err := graminetest.Start(filepath.Join(dir, "attest"), func(rd [64]byte) ([]byte, error) {
		return plat.Evidence(context.Background(), rd)
	}, graminetest.Keys{})
	if err != nil {
		t.Fatal(err)
	}
	defer tree.Close()

	for _, tc := range []struct {
		name string
		l    wire.Launch
		root string
		want string // "" = opens
	}{
		{"sim outside gramine", wire.Launch{TEE: "sim-sgx"}, noRoot, ""},
		{"sim-tdx under gramine", wire.Launch{TEE: "sim-tdx"}, realRoot, "under Gramine only tee=sgx"},
		{"sim-sgx under gramine", wire.Launch{TEE: "sim-sgx"}, realRoot, "under Gramine only tee=sgx"},
		{"attest under gramine", wire.Launch{TEE: "sgx", AttestRoot: tree.Root}, realRoot, "refused under Gramine"},
		{"attest outside gramine", wire.Launch{TEE: "sgx", AttestRoot: tree.Root}, noRoot, ""},
		{"sgx without gramine", wire.Launch{TEE: "sgx"}, noRoot, "not running under Gramine"},
		{"tdx outside gramine", wire.Launch{TEE: "tdx"}, noRoot, ""},
		{"sev-snp outside gramine", wire.Launch{TEE: "sev-snp"}, noRoot, ""},
		{"tdx under gramine", wire.Launch{TEE: "tdx"}, realRoot, "under Gramine only tee=sgx"},
		{"unknown kind", wire.Launch{TEE: "sev"}, noRoot, "want sim-sgx, sim-tdx, sgx, tdx or sev-snp"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := platformAt(tc.l, tc.root)
			if tc.want != "" {
				if err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("err = %v, want %q", err, tc.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tc.l.TEE == "sgx" && (p == nil || p.Kind() != tee.KindSGX) {
				t.Fatalf("platform %v", p)
			}
		})
	}
}
