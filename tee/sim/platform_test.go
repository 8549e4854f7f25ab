package sim

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"testing"

	"github.com/cloister-dev/cloister/evidence"
	"github.com/cloister-dev/cloister/seal"
	"github.com/cloister-dev/cloister/tee"
)

func platform(t *testing.T, pki *PKI, kind tee.Kind, app App) *Platform {
	t.Helper()
	p, err := NewPlatform(pki, kind, app, nil)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// The platform's evidence carries its identity and the caller's report data.
func TestPlatformEvidence(t *testing.T) {
	pki := testPKI(t)
	app := App{MRENCLAVE: [32]byte{0xAA}, MRSIGNER: [32]byte{0xBB}, ProductID: 4, SVN: 2, Debug: true}
	for _, kind := range []tee.Kind{tee.KindSimSGX, tee.KindSimTDX} {
		p := platform(t, pki, kind, app)
		var rd [64]byte
		rd[63] = 0x42
		ev, err := p.Evidence(context.Background(), rd)
		if err != nil {
			t.Fatal(err)
		}
		col, err := pki.Collateral(rand.Reader, testNow, kind == tee.KindSimTDX)
		if err != nil {
			t.Fatal(err)
		}
		c, err := evidence.Verify(context.Background(), ev, evidence.Options{Time: testNow, Collateral: col, TrustRoots: []*x509.Certificate{pki.Root}})
		if err != nil {
			t.Fatalf("%s: %v", kind, err)
		}
		id := p.Identity()
		if c.TEE != string(kind) || c.ReportData[63] != 0x42 || !c.Debug {
			t.Errorf("%s: tee %q report data %x debug %v", kind, c.TEE, c.ReportData, c.Debug)
		}
		if kind == tee.KindSimSGX && (c.MRENCLAVE.String() != evidence.HexBytes(id.Measurement).String() || c.MRSIGNER.String() != evidence.HexBytes(id.Signer).String()) {
			t.Errorf("sgx claims %s/%s, identity %x/%x", c.MRENCLAVE, c.MRSIGNER, id.Measurement, id.Signer)
		}
		if kind == tee.KindSimTDX && c.MRTD.String() != evidence.HexBytes(id.Measurement).String() {
			t.Errorf("tdx mrtd %s, identity %x", c.MRTD, id.Measurement)
		}
	}
}

// Sealing through the sim platform follows the enclave and signer rules.
func TestPlatformSealing(t *testing.T) {
	pki := testPKI(t)
	ctx := context.Background()
	v3 := App{MRENCLAVE: [32]byte{1}, MRSIGNER: [32]byte{9}, ProductID: 1, SVN: 3}
	v4 := App{MRENCLAVE: [32]byte{2}, MRSIGNER: [32]byte{9}, ProductID: 1, SVN: 4}
	other := App{MRENCLAVE: [32]byte{3}, MRSIGNER: [32]byte{8}, ProductID: 1, SVN: 9}
	s3 := tee.NewSealer(platform(t, pki, tee.KindSimSGX, v3))
	s4 := tee.NewSealer(platform(t, pki, tee.KindSimSGX, v4))
	sOther := tee.NewSealer(platform(t, pki, tee.KindSimSGX, other))
	label := []byte("record-1")

	enc, err := s3.Seal(ctx, seal.PolicyEnclave, label, []byte("secret"))
	if err != nil {
		t.Fatal(err)
	}
	if pt, err := s3.Open(ctx, seal.PolicyEnclave, label, enc); err != nil || string(pt) != "secret" {
		t.Fatalf("open by the sealer: %q %v", pt, err)
	}
	if _, err := s4.Open(ctx, seal.PolicyEnclave, label, enc); !errors.Is(err, seal.ErrWrongIdentity) {
		t.Errorf("enclave blob opened by another MRENCLAVE: %v", err)
	}

	sig, err := s3.Seal(ctx, seal.PolicySigner, label, []byte("shared"))
	if err != nil {
		t.Fatal(err)
	}
	if pt, err := s4.Open(ctx, seal.PolicySigner, label, sig); err != nil || string(pt) != "shared" {
		t.Errorf("signer blob at SVN 3 opened at SVN 4: %q %v", pt, err)
	}
	sig4, err := s4.Seal(ctx, seal.PolicySigner, label, []byte("newer"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s3.Open(ctx, seal.PolicySigner, label, sig4); err == nil {
		t.Error("signer blob at SVN 4 opened at SVN 3")
	}
	if _, err := sOther.Open(ctx, seal.PolicySigner, label, sig); err == nil {
		t.Error("signer blob opened by another signer")
	}
	// The platform itself refuses keys for identities it is not running.
	p3 := platform(t, pki, tee.KindSimSGX, v3)
	if _, err := p3.SealKey(ctx, seal.KeyRequest{Policy: seal.PolicySigner, Signer: v3.MRSIGNER[:], ProductID: 1, SVN: 4}); !errors.Is(err, tee.ErrKeyRequestDenied) {
		t.Errorf("key for a higher SVN: %v", err)
	}
	// Another sim platform (another sealing secret) cannot open the blob.
	otherPKI := testPKI(t)
	if _, err := tee.NewSealer(platform(t, otherPKI, tee.KindSimSGX, v3)).Open(ctx, seal.PolicyEnclave, label, enc); err == nil {
		t.Error("blob opened on another platform")
	}
}
