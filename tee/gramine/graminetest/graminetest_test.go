package graminetest

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cloister-dev/cloister/evidence"
	"github.com/cloister-dev/cloister/seal"
	"github.com/cloister-dev/cloister/tee"
	"github.com/cloister-dev/cloister/tee/gramine"
	"github.com/cloister-dev/cloister/tee/sim"
)

// simTree serves a fake tree whose quotes come from a sim-sgx platform.
func simTree(t *testing.T, app sim.App) (*Tree, *sim.PKI, time.Time) {
	t.Helper()
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	pki, err := sim.Load(filepath.Join(t.TempDir(), "sim"), rand.Reader, now)
	if err != nil {
		t.Fatal(err)
	}
	plat, err := sim.NewPlatform(pki, tee.KindSimSGX, app, nil)
	if err != nil {
		t.Fatal(err)
	}
	keys := Keys{}
	copy(keys.MRENCLAVE[:], bytes.Repeat([]byte{0xe1}, 16))
	copy(keys.MRSIGNER[:], bytes.Repeat([]byte{0x51}, 16))
	tree, err := Start(t.TempDir(), func(rd [64]byte) ([]byte, error) {
		return plat.Evidence(context.Background(), rd)
	}, keys)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := tree.Close(); err != nil {
			t.Error(err)
		}
	})
	return tree, pki, now
}

// TestTreeDrivesGramine: tee/gramine, unchanged, reads the fake tree as it
// reads Gramine's: the identity from a quote at Open, evidence bound to the
// report data written, which verifies under the sim root (as sim-sgx), and
// the seal keys.
func TestTreeDrivesGramine(t *testing.T) {
	app := sim.App{ProductID: 3, SVN: 4, Debug: false}
	app.MRENCLAVE[0], app.MRSIGNER[0] = 0xaa, 0xbb
	tree, pki, now := simTree(t, app)
	p, err := gramine.Open(context.Background(), gramine.Config{Root: tree.Root})
	if err != nil {
		t.Fatal(err)
	}
	id := p.Identity()
	if id.Measurement[0] != 0xaa || id.Signer[0] != 0xbb || id.ProductID != 3 || id.SVN != 4 || id.Debug {
		t.Fatalf("identity %+v", id)
	}
	col, err := pki.Collateral(rand.Reader, now, false)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		var rd [64]byte
		rd[0], rd[63] = byte(i+1), 0x5a
		q, err := p.Evidence(context.Background(), rd)
		if err != nil {
			t.Fatal(err)
		}
		c, err := evidence.Verify(context.Background(), q, evidence.Options{Time: now, TrustRoots: []*x509.Certificate{pki.Root}, Collateral: col})
		if err != nil {
			t.Fatal(err)
		}
		if c.TEE != "sim-sgx" || !bytes.Equal(c.ReportData, rd[:]) || c.TCBStatus != "UpToDate" {
			t.Errorf("claims tee %s report_data %s", c.TEE, c.ReportData)
		}
	}
	if n := len(tree.Quotes()); n != 4 { // Open's identity quote and three
		t.Errorf("%d quotes served, want 4", n)
	}
	k, err := p.SealKey(context.Background(), seal.KeyRequest{Policy: seal.PolicyEnclave, Measurement: id.Measurement})
	if err != nil || len(k) != 32 {
		t.Fatalf("seal key: %d bytes, %v", len(k), err)
	}
	if err := tree.Err(); err != nil {
		t.Fatal(err)
	}
}

// TestTreeQuoterError: a quoter that fails gives the reader an empty quote,
// which tee/gramine refuses: the app fails instead of hanging.
func TestTreeQuoterError(t *testing.T) {
	tree, err := Start(t.TempDir(), func([64]byte) ([]byte, error) { return nil, errors.New("no quote today") }, Keys{})
	if err != nil {
		t.Fatal(err)
	}
	defer tree.Close()
	if _, err := gramine.Open(context.Background(), gramine.Config{Root: tree.Root}); err == nil {
		t.Fatal("Open succeeded without a quote")
	}
	if err := tree.Err(); err == nil || !strings.Contains(err.Error(), "no quote today") {
		t.Fatalf("Err = %v", err)
	}
}

// TestTreeCloseIdle: Close returns while the server waits for a writer.
func TestTreeCloseIdle(t *testing.T) {
	tree, err := Start(t.TempDir(), func([64]byte) ([]byte, error) { return nil, nil }, Keys{})
	if err != nil {
		t.Fatal(err)
	}
	if err := tree.Close(); err != nil {
		t.Fatal(err)
	}
}
