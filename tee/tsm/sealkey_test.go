package tsm

import (
	"bytes"
	"context"
	"errors"
	"os"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/cloister-dev/cloister/seal"
	"github.com/cloister-dev/cloister/tee"
	"github.com/google/go-sev-guest/client"
	labi "github.com/google/go-sev-guest/client/linuxabi"
	sevtest "github.com/google/go-sev-guest/testing"
)

// countingDevice is go-sev-guest's mock device, counting requests so a
// test can tell that a refused request never reached the firmware.
type countingDevice struct {
	*sevtest.Device
	calls atomic.Int32
}

func (d *countingDevice) Ioctl(command uintptr, req any) (uintptr, error) {
	d.calls.Add(1)
	return d.Device.Ioctl(command, req)
}

// mockKeyDevice answers MSG_KEY_REQ for exactly the request this package
// must send for the enclave policy at vmpl: VCEK root (ROOT_KEY_SELECT 0),
// GUEST_FIELD_SELECT 0x9 (GUEST_POLICY | MEASUREMENT), no GUEST_SVN, no
// TCB_VERSION. Any other request is "unmapped" and fails.
func mockKeyDevice(t *testing.T, vmpl uint32, key []byte) *countingDevice {
	t.Helper()
	req := &labi.SnpDerivedKeyReqABI{
		RootKeySelect:    0,
		GuestFieldSelect: client.GuestFieldSelect{GuestPolicy: true, Measurement: true}.ABI(),
		Vmpl:             vmpl,
	}
	if req.GuestFieldSelect != 0x9 {
		t.Fatalf("GUEST_FIELD_SELECT = %#x, want 0x9 (GUEST_POLICY bit 0 | MEASUREMENT bit 3)", req.GuestFieldSelect)
	}
	return &countingDevice{Device: &sevtest.Device{Keys: map[string][]byte{
		sevtest.DerivedKeyRequestToString(req): key,
	}}}
}

func enclaveReq(m []byte) seal.KeyRequest {
	return seal.KeyRequest{Policy: seal.PolicyEnclave, Measurement: m}
}

func TestSNPSealKeyEnclave(t *testing.T) {
	for _, vmpl := range []byte{0, 1} {
		v := loadSNP(t)
		hw := bytes.Repeat([]byte{0x5e}, 32)
		dev := mockKeyDevice(t, uint32(vmpl), hw)
		p := openFake(t, &fakeProvider{name: "sev_guest", outBlob: snpOutBlob(t, v, vmpl), aux: v.certTable}, Config{SEVGuest: dev})
		req := enclaveReq(p.Identity().Measurement)
		got, err := p.SealKey(context.Background(), req)
		if err != nil {
			t.Fatalf("vmpl %d: SealKey: %v", vmpl, err)
		}
		want, err := seal.DeriveKey(hw, purposeSNP, req.Context())
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) || len(got) != 32 {
			t.Errorf("vmpl %d: SealKey = %x, want DeriveKey(hw, %q, measurement) = %x", vmpl, got, purposeSNP, want)
		}
		again, err := p.SealKey(context.Background(), req)
		if err != nil || !bytes.Equal(again, got) {
			t.Errorf("vmpl %d: second SealKey differs (err %v)", vmpl, err)
		}
	}
}

func TestSNPSealKeyRefusals(t *testing.T) {
	v := loadSNP(t)
	dev := mockKeyDevice(t, 0, bytes.Repeat([]byte{1}, 32))
	p := openFake(t, &fakeProvider{name: "sev_guest", outBlob: snpOutBlob(t, v, 0), aux: v.certTable}, Config{SEVGuest: dev})
	other := bytes.Clone(p.Identity().Measurement)
	other[0] ^= 1

	if _, err := p.SealKey(context.Background(), enclaveReq(other)); !errors.Is(err, tee.ErrKeyRequestDenied) {
		t.Errorf("SealKey(another measurement) = %v, want tee.ErrKeyRequestDenied", err)
	}
	signer := seal.KeyRequest{Policy: seal.PolicySigner, Signer: bytes.Repeat([]byte{2}, 48)}
	if _, err := p.SealKey(context.Background(), signer); !errors.Is(err, tee.ErrSealNotSupported) || !strings.Contains(err.Error(), "signer policy") {
		t.Errorf("SealKey(signer policy) = %v, want tee.ErrSealNotSupported naming the signer policy", err)
	}
	if _, err := p.SealKey(context.Background(), seal.KeyRequest{Policy: 9}); !errors.Is(err, tee.ErrKeyRequestDenied) {
		t.Errorf("SealKey(policy 9) = %v, want tee.ErrKeyRequestDenied", err)
	}
	if n := dev.calls.Load(); n != 0 {
		t.Errorf("refused requests reached the device %d times", n)
	}
}

func TestSNPSealKeyDeviceError(t *testing.T) {
	v := loadSNP(t)
	// Keys for VMPL 3 only: the request for VMPL 0 is unmapped, as a
	// firmware refusal would be.
	dev := mockKeyDevice(t, 3, bytes.Repeat([]byte{1}, 32))
	p := openFake(t, &fakeProvider{name: "sev_guest", outBlob: snpOutBlob(t, v, 0), aux: v.certTable}, Config{SEVGuest: dev})
	_, err := p.SealKey(context.Background(), enclaveReq(p.Identity().Measurement))
	if err == nil || !strings.HasPrefix(err.Error(), "tsm: seal key: MSG_KEY_REQ") {
		t.Errorf("SealKey with a failing device = %v", err)
	}
}

func TestTDXSealKeyNotSupported(t *testing.T) {
	v := loadTDX(t)
	p := openFake(t, &fakeProvider{name: "tdx_guest", outBlob: tdxOutBlob(t, v)}, Config{})
	for _, req := range []seal.KeyRequest{enclaveReq(p.Identity().Measurement), {Policy: seal.PolicySigner, Signer: []byte{1}}} {
		_, err := p.SealKey(context.Background(), req)
		if !errors.Is(err, tee.ErrSealNotSupported) || !strings.Contains(err.Error(), "not supported on TDX (a TD has no hardware sealing key") {
			t.Errorf("SealKey(%v) on TDX = %v", req.Policy, err)
		}
	}
}

// TestSNPSealRoundTrip seals and opens through package seal with this
// platform as the key source.
func TestSNPSealRoundTrip(t *testing.T) {
	v := loadSNP(t)
	dev := mockKeyDevice(t, 0, bytes.Repeat([]byte{7}, 32))
	p := openFake(t, &fakeProvider{name: "sev_guest", outBlob: snpOutBlob(t, v, 0), aux: v.certTable}, Config{SEVGuest: dev})
	s := tee.NewSealer(p)
	blob, err := s.Seal(context.Background(), seal.PolicyEnclave, []byte("label"), []byte("state"))
	if err != nil {
		t.Fatal(err)
	}
	pt, err := s.Open(context.Background(), seal.PolicyEnclave, []byte("label"), blob)
	if err != nil || string(pt) != "state" {
		t.Fatalf("Open = %q, %v", pt, err)
	}
	if _, err := s.Seal(context.Background(), seal.PolicySigner, nil, []byte("x")); err == nil {
		t.Error("Seal under the signer policy succeeded on SEV-SNP")
	}
}

// TestSNPSealKeyNoDevice: with no SEVGuest configured, SealKey opens
// /dev/sev-guest, which this machine does not have.
func TestSNPSealKeyNoDevice(t *testing.T) {
	if _, err := os.Stat("/dev/sev-guest"); err == nil {
		t.Skip("/dev/sev-guest exists: this is an SEV-SNP guest")
	}
	v := loadSNP(t)
	p := openFake(t, &fakeProvider{name: "sev_guest", outBlob: snpOutBlob(t, v, 0), aux: v.certTable}, Config{})
	_, err := p.SealKey(context.Background(), enclaveReq(p.Identity().Measurement))
	if err == nil || !strings.Contains(err.Error(), "opening the SEV guest device") {
		t.Fatalf("SealKey without /dev/sev-guest = %v", err)
	}
}
