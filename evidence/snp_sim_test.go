package evidence

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"testing"
	"time"

	"github.com/google/go-sev-guest/abi"
	"github.com/google/go-sev-guest/kds"
	sevtest "github.com/google/go-sev-guest/testing"
)

// snpFakeChain builds an ARK→ASK→VCEK chain of our own with go-sev-guest's
// builder, certified for the Milan vector's chip and TCB, and returns the
// vector re-signed by that VCEK (after edit, if any) with the chain.
func snpFakeChain(t *testing.T, edit func(report []byte)) (report []byte, s *sevtest.AmdSigner) {
	t.Helper()
	raw := bytes.Clone(readVector(t, "snp/attestation.bin"))
	created := time.Date(2022, 1, 1, 0, 0, 0, 0, time.UTC)
	tcb := kds.DecomposeTCBVersion(kds.TCBVersion(0x4405000000000002)) // the vector's REPORTED_TCB
	b := &sevtest.AmdSignerBuilder{
		ProductName:      "Milan-B0",
		ArkCreationTime:  created,
		AskCreationTime:  created,
		AsvkCreationTime: created,
		VcekCreationTime: created,
		VlekCreationTime: created,
		VcekCustom:       sevtest.CertOverride{Extensions: sevtest.CustomExtensions(tcb, raw[0x1A0:0x1E0], "", "Milan-B0")},
		VlekCustom:       sevtest.CertOverride{Extensions: sevtest.CustomExtensions(tcb, nil, "cloister-test", "Milan-B0")},
		CSPID:            "cloister-test",
	}
	s, err := b.TestOnlyCertChain()
	if err != nil {
		t.Fatal(err)
	}
	if edit != nil {
		edit(raw)
	}
	r, sig, err := s.Sign(abi.SignedComponent(raw))
	if err != nil {
		t.Fatal(err)
	}
	if err := abi.SetSignature(r, sig, raw); err != nil {
		t.Fatal(err)
	}
	return raw, s
}

// TestSNPCallerRootIsSim: a report whose chain ends at an ARK the caller
// named (not one of AMD's) is reported as sim-snp, never as sev-snp, as
// SGX and TDX evidence under a caller's root is sim-sgx/sim-tdx.
func TestSNPCallerRootIsSim(t *testing.T) {
	raw, s := snpFakeChain(t, nil)
	chain := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: s.Ask.Raw})
	c, err := Verify(context.Background(), raw, Options{Time: snpTime, VCEK: s.Vcek.Raw, SNPChain: chain, TrustRoots: []*x509.Certificate{s.Ark}})
	if err != nil {
		t.Fatal(err)
	}
	if c.TEE != TEESimSNP || c.SNPClaims == nil {
		t.Errorf("tee %q under a caller-named ARK, want %q with SNP claims", c.TEE, TEESimSNP)
	}
	// The caller's ARK next to AMD's: still the caller's chain, still sim.
	milanARK := lastCert(t, readVector(t, "snp/ask_ark_milan.pem"))
	c, err = Verify(context.Background(), raw, Options{Time: snpTime, VCEK: s.Vcek.Raw, SNPChain: chain, TrustRoots: []*x509.Certificate{milanARK, s.Ark}})
	if err != nil {
		t.Fatal(err)
	}
	if c.TEE != TEESimSNP {
		t.Errorf("tee %q with AMD's and a caller's ARK, want %q", c.TEE, TEESimSNP)
	}
	// Without naming it, the same evidence does not verify at all.
	if _, err := Verify(context.Background(), raw, Options{Time: snpTime, VCEK: s.Vcek.Raw, SNPChain: chain}); err == nil {
		t.Fatal("a report under a self-made ARK verified against the built-in roots")
	}
	// AMD's own ARK named as the trust root is still hardware.
	real := readVector(t, "snp/attestation.bin")
	c, err = Verify(context.Background(), real, Options{Time: snpTime, VCEK: readVector(t, "snp/vcek.testcer"), TrustRoots: []*x509.Certificate{milanARK}})
	if err != nil {
		t.Fatal(err)
	}
	if c.TEE != TEESNP {
		t.Errorf("tee %q under AMD's Milan ARK named explicitly, want %q", c.TEE, TEESNP)
	}
}

// lastCert parses the last certificate of a PEM bundle.
func lastCert(t *testing.T, b []byte) *x509.Certificate {
	t.Helper()
	var last *x509.Certificate
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			break
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		last = c
	}
	if last == nil {
		t.Fatal("no certificate")
	}
	return last
}

// TestSNPVLEKClaims: a VLEK-signed report says so in snp_signer (and, under
// a caller-named ARK, is sim-snp).
func TestSNPVLEKClaims(t *testing.T) {
	raw, s := snpFakeChain(t, func(r []byte) { r[0x48] |= byte(abi.VlekReportSigner) << 2 })
	chain := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: s.Asvk.Raw})
	c, err := Verify(context.Background(), raw, Options{Time: snpTime, VCEK: s.Vlek.Raw, SNPChain: chain, TrustRoots: []*x509.Certificate{s.Ark}})
	if err != nil {
		t.Fatal(err)
	}
	if c.TEE != TEESimSNP || c.Signer != SNPSignerVLEK {
		t.Errorf("tee %q signer %q, want sim-snp vlek", c.TEE, c.Signer)
	}
}
