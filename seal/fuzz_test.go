package seal

import (
	"bytes"
	"context"
	"errors"
	"testing"
)

// FuzzOpen feeds arbitrary blobs and labels to Open. It must never panic,
// must report every failure as a named cause, must agree with
// UnverifiedBinding about the format, and whatever parses must re-encode
// to the same header bytes (the encoding is canonical). Seeds are real
// blobs of both policies, their prefixes and the committed fixtures.
func FuzzOpen(f *testing.F) {
	s, _ := sealerFor(rootA, idA)
	label := []byte("fuzz")
	for _, p := range policies {
		for _, pt := range [][]byte{nil, []byte("fuzz plaintext")} {
			blob, err := s.Seal(context.Background(), p, label, pt)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(blob, label)
			f.Add(blob, []byte("other"))
			f.Add(blob[:fixedPrefix+4], label)
		}
	}
	for _, fx := range fixtures {
		if b, err := readFixture(fx.file); err == nil {
			f.Add(b, fixtureLabel)
		}
	}
	f.Add([]byte(Magic), []byte(nil))
	f.Add([]byte{}, []byte(nil))

	f.Fuzz(func(t *testing.T, blob, label []byte) {
		opener, ks := sealerFor(rootA, idA)
		// Open under the policy the blob declares (when it declares a known
		// one), so both policies' paths are fuzzed past the policy check.
		p := PolicyEnclave
		if len(blob) > offPolicy && Policy(blob[offPolicy]).valid() {
			p = Policy(blob[offPolicy])
		}
		pt, err := opener.Open(context.Background(), p, label, blob)
		bind, berr := UnverifiedBinding(blob)
		if (berr != nil) != errors.Is(err, ErrMalformed) {
			t.Fatalf("UnverifiedBinding error %v disagrees with Open error %v", berr, err)
		}
		if berr == nil {
			h, _, _ := parseHeader(blob)
			re, aerr := appendHeader(nil, h.version, bind, h.nonces)
			if aerr != nil || !bytes.Equal(re, h.raw) {
				t.Fatalf("header re-encodes to %x, blob has %x (%v)", re, h.raw, aerr)
			}
		}
		if err != nil {
			if pt != nil {
				t.Fatal("plaintext returned with an error")
			}
			if !isSentinel(err) && !errors.Is(err, ErrTooLarge) {
				t.Fatalf("error %v is not a named cause", err)
			}
			if !errors.Is(err, ErrAuth) && len(ks.requests()) != 0 {
				t.Fatalf("key requested before the failure %v", err)
			}
			return
		}
		// Opened: the binding must be one idA may hold.
		if cerr := bind.check(idA); cerr != nil {
			t.Fatalf("opened a blob bound elsewhere: %v", cerr)
		}
	})
}
