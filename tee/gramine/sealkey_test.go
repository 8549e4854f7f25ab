package gramine

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"testing"

	"github.com/cloister-dev/cloister/seal"
	"github.com/cloister-dev/cloister/tee"
)

func enclaveReq(id tee.Identity) seal.KeyRequest {
	return seal.KeyRequest{Policy: seal.PolicyEnclave, Measurement: id.Measurement}
}

func signerReq(id tee.Identity) seal.KeyRequest {
	return seal.KeyRequest{Policy: seal.PolicySigner, Signer: id.Signer, ProductID: id.ProductID, SVN: id.SVN}
}

func TestSealKey(t *testing.T) {
	v := loadVector(t)
	p := openTree(t, fakeTree(t, v, nil))
	id := p.Identity()
	for _, tc := range []struct {
		req seal.KeyRequest
		raw []byte
	}{
		{enclaveReq(id), keyMRENCLAVE},
		{signerReq(id), keyMRSIGNER},
	} {
		got, err := p.SealKey(context.Background(), tc.req)
		if err != nil {
			t.Fatalf("SealKey(%v): %v", tc.req.Policy, err)
		}
		want, err := seal.DeriveKey(tc.raw, "gramine", tc.req.Context())
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 32 || !bytes.Equal(got, want) {
			t.Errorf("SealKey(%v) = %x, want DeriveKey(raw, \"gramine\", context) = %x", tc.req.Policy, got, want)
		}
	}
}

func TestSealKeyRefusals(t *testing.T) {
	v := loadVector(t)
	p := openTree(t, fakeTree(t, v, nil))
	id := p.Identity()

	otherMeasurement := enclaveReq(id)
	otherMeasurement.Measurement = bytes.Clone(id.Measurement)
	otherMeasurement.Measurement[0] ^= 1
	otherSigner := signerReq(id)
	otherSigner.Signer = bytes.Clone(id.Signer)
	otherSigner.Signer[0] ^= 1
	otherProduct := signerReq(id)
	otherProduct.ProductID++
	higherSVN := signerReq(id)
	higherSVN.SVN++
	for name, req := range map[string]seal.KeyRequest{
		"another measurement": otherMeasurement,
		"another signer":      otherSigner,
		"another product":     otherProduct,
		"a higher SVN":        higherSVN,
		"an unknown policy":   {Policy: 7},
	} {
		if _, err := p.SealKey(context.Background(), req); !errors.Is(err, tee.ErrKeyRequestDenied) {
			t.Errorf("SealKey(%s) = %v, want tee.ErrKeyRequestDenied", name, err)
		}
	}
}

// TestSealKeyLowerSVN: Gramine only exposes the key at the running
// ISVSVN, so a lower-SVN request is refused as unsupported rather than
// answered with a key that could not open the blob anyway.
func TestSealKeyLowerSVN(t *testing.T) {
	v := loadVector(t)
	// The vector's ISVSVN is 0; make it 3 (header, then ISVSVN at body
	// offset 258, little-endian).
	q := bytes.Clone(v.quote)
	q[48+258] = 3
	p := openTree(t, fakeTree(t, v, map[string][]byte{fileQuote: q}))
	id := p.Identity()
	if id.SVN != 3 {
		t.Fatalf("ISVSVN = %d after patching, want 3", id.SVN)
	}
	if _, err := p.SealKey(context.Background(), signerReq(id)); err != nil {
		t.Fatalf("SealKey(running SVN): %v", err)
	}
	req := signerReq(id)
	req.SVN--
	_, err := p.SealKey(context.Background(), req)
	if !errors.Is(err, tee.ErrSealNotSupported) || !strings.Contains(err.Error(), "running ISVSVN") {
		t.Fatalf("SealKey(lower SVN) = %v, want tee.ErrSealNotSupported naming the ISVSVN limit", err)
	}
}

func TestSealKeyBadKeyFiles(t *testing.T) {
	v := loadVector(t)
	for _, file := range []string{fileKeyMRENCLAVE, fileKeyMRSIGNER} {
		for _, size := range []int{0, 15, 17, 32, 65} {
			t.Run(fmt.Sprintf("%s/%d", file, size), func(t *testing.T) {
				p := openTree(t, fakeTree(t, v, map[string][]byte{file: bytes.Repeat([]byte{1}, size)}))
				req := enclaveReq(p.Identity())
				if file == fileKeyMRSIGNER {
					req = signerReq(p.Identity())
				}
				key, err := p.SealKey(context.Background(), req)
				if err == nil || key != nil || !strings.HasPrefix(err.Error(), "gramine: seal key: ") || !strings.Contains(err.Error(), file) {
					t.Fatalf("SealKey with a %d-byte %s = %x, %v", size, file, key, err)
				}
			})
		}
		t.Run(file+"/missing", func(t *testing.T) {
			p := openTree(t, fakeTree(t, v, map[string][]byte{file: nil}))
			req := enclaveReq(p.Identity())
			if file == fileKeyMRSIGNER {
				req = signerReq(p.Identity())
			}
			if _, err := p.SealKey(context.Background(), req); !errors.Is(err, fs.ErrNotExist) {
				t.Fatalf("SealKey without %s = %v, want fs.ErrNotExist", file, err)
			}
		})
	}
}

// TestSealRoundTrip seals and opens through package seal with the Gramine
// platform as the key source, under both policies, and checks that the
// two policies' keys differ.
func TestSealRoundTrip(t *testing.T) {
	v := loadVector(t)
	p := openTree(t, fakeTree(t, v, nil))
	s := tee.NewSealer(p)
	for _, pol := range []seal.Policy{seal.PolicyEnclave, seal.PolicySigner} {
		blob, err := s.Seal(context.Background(), pol, []byte("record"), []byte("secret"))
		if err != nil {
			t.Fatalf("Seal(%v): %v", pol, err)
		}
		pt, err := s.Open(context.Background(), pol, []byte("record"), blob)
		if err != nil || string(pt) != "secret" {
			t.Fatalf("Open(%v) = %q, %v", pol, pt, err)
		}
	}
	ke, err := p.SealKey(context.Background(), enclaveReq(p.Identity()))
	if err != nil {
		t.Fatal(err)
	}
	ks, err := p.SealKey(context.Background(), signerReq(p.Identity()))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(ke, ks) {
		t.Error("enclave and signer keys are equal")
	}
}
