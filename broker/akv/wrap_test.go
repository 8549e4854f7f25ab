package akv

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"testing"
)

// RFC 5649 section 6, both vectors (192-bit KEK; 20 and 7 octets of key
// data), both ways, and every refusal of a changed wrapping.
func TestKWPRFC5649Vectors(t *testing.T) {
	kek, _ := hex.DecodeString("5840df6e29b02af1ab493b705bf16ea1ae8338f4dcc176a8")
	for _, v := range []struct{ key, wrapped string }{
		{"c37b7e6492584340bed12207808941155068f738", "138bdeaa9b8fa7fc61f97742e72248ee5ae6ae5360d1ae6a5f54f373fa543b6a"},
		{"466f7250617369", "afbeb0f07dfbf5419200f2ccb50bb24f"},
	} {
		key, _ := hex.DecodeString(v.key)
		want, _ := hex.DecodeString(v.wrapped)
		got, err := kwpWrap(kek, key)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("wrap %s: %x, %v; RFC 5649 says %x", v.key, got, err, want)
		}
		back, err := kwpUnwrap(kek, want)
		if err != nil || !bytes.Equal(back, key) {
			t.Fatalf("unwrap %s: %x, %v", v.wrapped, back, err)
		}
		for i := range want {
			bad := bytes.Clone(want)
			bad[i] ^= 0x80
			if _, err := kwpUnwrap(kek, bad); err == nil {
				t.Fatalf("unwrap with byte %d flipped: accepted", i)
			}
		}
		if _, err := kwpUnwrap(kek[:16], want); err == nil {
			t.Fatal("unwrapped under another KEK")
		}
	}
	for _, bad := range [][]byte{nil, make([]byte, 8), make([]byte, 20)} {
		if _, err := kwpUnwrap(kek, bad); err == nil {
			t.Fatalf("%d bytes unwrapped", len(bad))
		}
	}
	if _, err := kwpWrap(kek, nil); err == nil {
		t.Fatal("empty key data wrapped")
	}
	// Every length from 1 to 70 round-trips (padding from 0 to 7 bytes,
	// the one-block case and the W process).
	for n := 1; n <= 70; n++ {
		p := bytes.Repeat([]byte{byte(n)}, n)
		w, err := kwpWrap(kek, p)
		if err != nil || len(w) != 8+(n+7)/8*8 {
			t.Fatalf("len %d: %d bytes, %v", n, len(w), err)
		}
		if back, err := kwpUnwrap(kek, w); err != nil || !bytes.Equal(back, p) {
			t.Fatalf("len %d: round trip: %v", n, err)
		}
	}
}

func TestWrapRoundTripAndRefusals(t *testing.T) {
	testKeys(t)
	material := bytes.Repeat([]byte{0x5a}, 1200) // about a PKCS#8 RSA-2048 key
	for _, enc := range []string{EncCkmRsaAesKeyWrap, EncRsaAesKeyWrap256, EncRsaAesKeyWrap384} {
		ct, err := wrap(rand.Reader, &enclaveKey.PublicKey, enc, material)
		if err != nil {
			t.Fatal(err)
		}
		if len(ct) != enclaveKey.Size()+len(material)+8 {
			t.Fatalf("%s: %d bytes, want RSA block + KWP(%d)", enc, len(ct), len(material))
		}
		got, err := Unwrap(enclaveKey, enc, ct)
		if err != nil || !bytes.Equal(got, material) {
			t.Fatalf("%s: round trip: %v", enc, err)
		}
		// Another private key, another enc's hash, or any flipped byte
		// (of the RSA part or of the wrapped key): nothing comes out.
		if _, err := Unwrap(otherKey, enc, ct); !errors.Is(err, ErrUnwrap) {
			t.Fatalf("%s: unwrapped with another key: %v", enc, err)
		}
		other := EncRsaAesKeyWrap256
		if enc == other {
			other = EncCkmRsaAesKeyWrap
		}
		if _, err := Unwrap(enclaveKey, other, ct); !errors.Is(err, ErrUnwrap) {
			t.Fatalf("%s: unwrapped as %s: %v", enc, other, err)
		}
		for _, i := range []int{0, enclaveKey.Size() - 1, enclaveKey.Size(), enclaveKey.Size() + 7, len(ct) - 1} {
			bad := bytes.Clone(ct)
			bad[i] ^= 1
			if _, err := Unwrap(enclaveKey, enc, bad); !errors.Is(err, ErrUnwrap) {
				t.Fatalf("%s: byte %d flipped: %v", enc, i, err)
			}
		}
		if _, err := Unwrap(enclaveKey, enc, ct[:enclaveKey.Size()]); !errors.Is(err, ErrUnwrap) {
			t.Fatalf("%s: truncated: %v", enc, err)
		}
	}
	if _, err := wrap(rand.Reader, &enclaveKey.PublicKey, "A256KW", material); err == nil {
		t.Fatal("unknown enc accepted")
	}
}
