package seal

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
)

var policies = []Policy{PolicyEnclave, PolicySigner}

func TestRoundTrip(t *testing.T) {
	ctx := context.Background()
	s, _ := sealerFor(rootA, idA)
	tests := []struct {
		name      string
		label     []byte
		plaintext []byte
	}{
		{"empty", nil, nil},
		{"one byte", []byte("k"), []byte{0}},
		{"text", []byte("record/42"), []byte("the quick brown fox")},
		{"4KiB", bytes.Repeat([]byte("L"), 300), bytes.Repeat([]byte{0xa5}, 4096)},
	}
	for _, p := range policies {
		for _, tt := range tests {
			t.Run(p.String()+"/"+tt.name, func(t *testing.T) {
				blob, err := s.Seal(ctx, p, tt.label, tt.plaintext)
				if err != nil {
					t.Fatalf("Seal: %v", err)
				}
				if bytes.Contains(blob, tt.plaintext) && len(tt.plaintext) > 4 {
					t.Fatal("blob contains the plaintext")
				}
				got, err := s.Open(ctx, p, tt.label, blob)
				if err != nil {
					t.Fatalf("Open: %v", err)
				}
				if !bytes.Equal(got, tt.plaintext) {
					t.Fatalf("Open = %x, want %x", got, tt.plaintext)
				}
				b, err := UnverifiedBinding(blob)
				if err != nil {
					t.Fatalf("UnverifiedBinding: %v", err)
				}
				if b.Policy != p {
					t.Fatalf("binding policy = %v, want %v", b.Policy, p)
				}
			})
		}
	}
}

func TestFreshNoncePerSeal(t *testing.T) {
	s, _ := sealerFor(rootA, idA)
	a, err := s.Seal(context.Background(), PolicyEnclave, nil, []byte("x"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := s.Seal(context.Background(), PolicyEnclave, nil, []byte("x"))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(a, b) {
		t.Fatal("two seals of the same plaintext gave the same blob: nonce reused")
	}
}

// TestOpenIdentity covers who may open what. The opener runs on the same
// platform (same root) as the sealer but with its own identity, which its
// KeySource also enforces.
func TestOpenIdentity(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name    string
		policy  Policy
		opener  Identity
		wantErr error // nil: must open
		// wantReqSVN is the SVN the KeySource must be asked for (signer
		// policy, successful opens).
		wantReqSVN uint16
	}{
		{"enclave/same", PolicyEnclave, idA, nil, 0},
		{"enclave/same measurement, other signer and svn", PolicyEnclave,
			with(idA, func(id *Identity) { id.Signer = signerB; id.SVN = 1 }), nil, 0},
		{"enclave/other measurement", PolicyEnclave,
			with(idA, func(id *Identity) { id.Measurement = measB }), ErrWrongIdentity, 0},
		{"enclave/shorter measurement", PolicyEnclave,
			with(idA, func(id *Identity) { id.Measurement = measA[:31] }), ErrWrongIdentity, 0},

		{"signer/same", PolicySigner, idA, nil, 3},
		{"signer/higher svn", PolicySigner,
			with(idA, func(id *Identity) { id.SVN = 4 }), nil, 3},
		{"signer/much higher svn, new measurement", PolicySigner,
			with(idA, func(id *Identity) { id.SVN = 0xffff; id.Measurement = measB }), nil, 3},
		{"signer/lower svn", PolicySigner,
			with(idA, func(id *Identity) { id.SVN = 2 }), ErrSVNTooHigh, 0},
		{"signer/svn zero", PolicySigner,
			with(idA, func(id *Identity) { id.SVN = 0 }), ErrSVNTooHigh, 0},
		{"signer/other product", PolicySigner,
			with(idA, func(id *Identity) { id.ProductID = 0x0103 }), ErrWrongIdentity, 0},
		{"signer/other product, higher svn", PolicySigner,
			with(idA, func(id *Identity) { id.ProductID = 0; id.SVN = 9 }), ErrWrongIdentity, 0},
		{"signer/other signer", PolicySigner,
			with(idA, func(id *Identity) { id.Signer = signerB }), ErrWrongIdentity, 0},
		{"signer/other signer, lower svn", PolicySigner,
			with(idA, func(id *Identity) { id.Signer = signerB; id.SVN = 0 }), ErrWrongIdentity, 0},
	}
	sealer, _ := sealerFor(rootA, idA)
	plaintext := []byte("state")
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			blob, err := sealer.Seal(ctx, tt.policy, []byte("l"), plaintext)
			if err != nil {
				t.Fatal(err)
			}
			opener, ks := sealerFor(rootA, tt.opener)
			got, err := opener.Open(ctx, tt.policy, []byte("l"), blob)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("Open error = %v, want %v", err, tt.wantErr)
				}
				if got != nil {
					t.Fatalf("Open returned plaintext with an error")
				}
				// seal's own check must come first: no key was requested.
				if r := ks.requests(); len(r) != 0 {
					t.Fatalf("KeySource asked for %d keys before the identity check", len(r))
				}
				return
			}
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			if !bytes.Equal(got, plaintext) {
				t.Fatalf("Open = %q, want %q", got, plaintext)
			}
			r := ks.requests()
			if len(r) != 1 || r[0].Policy != tt.policy {
				t.Fatalf("KeySource requests = %+v, want one %v request", r, tt.policy)
			}
			if tt.policy == PolicySigner && r[0].SVN != tt.wantReqSVN {
				t.Fatalf("key requested at SVN %d, want the sealed-at SVN %d", r[0].SVN, tt.wantReqSVN)
			}
		})
	}
}

func TestErrorMessages(t *testing.T) {
	sealer, _ := sealerFor(rootA, idA)
	blob, err := sealer.Seal(context.Background(), PolicySigner, nil, []byte("secret plaintext"))
	if err != nil {
		t.Fatal(err)
	}
	opener, _ := sealerFor(rootA, with(idA, func(id *Identity) { id.SVN = 1 }))
	_, err = opener.Open(context.Background(), PolicySigner, nil, blob)
	want := "seal: blob sealed at a higher SVN: blob sealed at SVN 3, running SVN 1"
	if err == nil || err.Error() != want {
		t.Fatalf("error = %q, want %q", err, want)
	}
	_, err = sealer.Open(context.Background(), PolicySigner, []byte("other"), blob)
	if !errors.Is(err, ErrAuth) || !strings.HasPrefix(err.Error(), "seal: ") {
		t.Fatalf("error = %v, want ErrAuth with seal: prefix", err)
	}
	if strings.Contains(err.Error(), "secret") {
		t.Fatal("error leaks plaintext")
	}
}

func TestLabelSwap(t *testing.T) {
	ctx := context.Background()
	s, _ := sealerFor(rootA, idA)
	for _, p := range policies {
		t.Run(p.String(), func(t *testing.T) {
			a, err := s.Seal(ctx, p, []byte("record/a"), []byte("value a"))
			if err != nil {
				t.Fatal(err)
			}
			b, err := s.Seal(ctx, p, []byte("record/b"), []byte("value b"))
			if err != nil {
				t.Fatal(err)
			}
			for _, tc := range []struct {
				label []byte
				blob  []byte
			}{
				{[]byte("record/a"), b},
				{[]byte("record/b"), a},
				{nil, a},
				{[]byte("record/a\x00"), a},
				{[]byte("record/"), a},
			} {
				if _, err := s.Open(ctx, p, tc.label, tc.blob); !errors.Is(err, ErrAuth) {
					t.Errorf("Open(label %q) error = %v, want ErrAuth", tc.label, err)
				}
			}
		})
	}
}

func TestOtherPlatform(t *testing.T) {
	ctx := context.Background()
	sealer, _ := sealerFor(rootA, idA)
	other, _ := sealerFor(rootB, idA) // same identity, another platform secret
	for _, p := range policies {
		blob, err := sealer.Seal(ctx, p, nil, []byte("x"))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := other.Open(ctx, p, nil, blob); !errors.Is(err, ErrAuth) {
			t.Errorf("%v: Open on another platform error = %v, want ErrAuth", p, err)
		}
	}
}

// TestEveryByteFlip changes each byte of a blob in three ways; every
// changed blob must fail with one of the named causes.
func TestEveryByteFlip(t *testing.T) {
	ctx := context.Background()
	s, _ := sealerFor(rootA, idA)
	for _, p := range policies {
		t.Run(p.String(), func(t *testing.T) {
			blob, err := s.Seal(ctx, p, []byte("label"), []byte("plaintext to protect"))
			if err != nil {
				t.Fatal(err)
			}
			for i := range blob {
				for _, mask := range []byte{0x01, 0x80, 0xff} {
					mod := bytes.Clone(blob)
					mod[i] ^= mask
					got, err := s.Open(ctx, p, []byte("label"), mod)
					if err == nil || got != nil {
						t.Fatalf("byte %d ^ %#x: Open succeeded", i, mask)
					}
					if !isSentinel(err) {
						t.Fatalf("byte %d ^ %#x: error %v is not a named cause", i, mask, err)
					}
				}
			}
		})
	}
}

// TestEveryTruncation checks every strict prefix, and an appended byte.
func TestEveryTruncation(t *testing.T) {
	ctx := context.Background()
	s, _ := sealerFor(rootA, idA)
	for _, p := range policies {
		t.Run(p.String(), func(t *testing.T) {
			blob, err := s.Seal(ctx, p, nil, []byte("plaintext"))
			if err != nil {
				t.Fatal(err)
			}
			hdrEnd := len(blob) - len("plaintext") - tagSize
			for n := range len(blob) {
				_, err := s.Open(ctx, p, nil, blob[:n])
				want := ErrAuth
				if n < hdrEnd+tagSize {
					want = ErrMalformed
				}
				if !errors.Is(err, want) {
					t.Fatalf("prefix of %d/%d bytes: error = %v, want %v", n, len(blob), err, want)
				}
			}
			// Trailing bytes extend the ciphertext, so GCM rejects them.
			if _, err := s.Open(ctx, p, nil, append(bytes.Clone(blob), 0)); !errors.Is(err, ErrAuth) {
				t.Fatalf("trailing byte: error = %v, want ErrAuth", err)
			}
		})
	}
}

func TestMalformed(t *testing.T) {
	s, _ := sealerFor(rootA, idA)
	good, err := s.Seal(context.Background(), PolicySigner, nil, []byte("x"))
	if err != nil {
		t.Fatal(err)
	}
	set := func(off int, v ...byte) []byte {
		b := bytes.Clone(good)
		copy(b[off:], v)
		return b
	}
	tests := []struct {
		name string
		blob []byte
		want string
	}{
		{"empty", nil, "header"},
		{"bad magic", set(0, 'C', 'L', 'S', '0'), "magic"},
		{"version 0", set(offVersion, 0), "version"},
		{"version 3", set(offVersion, 3), "version"},
		{"policy 0", set(offPolicy, 0), "policy"},
		{"policy 3", set(offPolicy, 3), "policy"},
		{"context over cap", set(offCtxLen, 0x01, 0x01), "kdf context"},
		{"context longer than blob", set(offCtxLen, 0x00, 0xff), "size"},
		{"signer context too short", set(offCtxLen, 0x00, 0x04), "kdf context"},
		{"enclave context empty", set(offPolicy, byte(PolicyEnclave), 0, 0), "kdf context"},
		{"enclave context over measurement cap", append(set(offPolicy, byte(PolicyEnclave), 0, 65), make([]byte, 64)...), "kdf context"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := s.Open(context.Background(), PolicySigner, nil, tt.blob)
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error = %v, want ErrMalformed", err)
			}
			if !strings.Contains(err.Error(), "malformed blob: "+tt.want+":") {
				t.Fatalf("error %q does not name %q", err, tt.want)
			}
			if _, err := UnverifiedBinding(tt.blob); !errors.Is(err, ErrMalformed) {
				t.Fatalf("UnverifiedBinding error = %v, want ErrMalformed", err)
			}
		})
	}
}

func TestSealRejects(t *testing.T) {
	ctx := context.Background()
	s, _ := sealerFor(rootA, idA)
	tests := []struct {
		name    string
		s       Sealer
		p       Policy
		label   []byte
		pt      []byte
		wantErr error // nil: any error
	}{
		{"no KeySource", Sealer{Identity: idA}, PolicyEnclave, nil, nil, nil},
		{"unknown policy", s, Policy(0), nil, nil, nil},
		{"policy 3", s, Policy(3), nil, nil, nil},
		{"enclave without measurement", Sealer{Keys: s.Keys, Identity: Identity{Signer: signerA}}, PolicyEnclave, nil, nil, nil},
		{"signer without signer", Sealer{Keys: s.Keys, Identity: Identity{Measurement: measA}}, PolicySigner, nil, nil, nil},
		{"measurement over cap", Sealer{Keys: s.Keys, Identity: Identity{Measurement: make([]byte, MaxMeasurementSize+1)}}, PolicyEnclave, nil, nil, nil},
		{"signer over cap", Sealer{Keys: s.Keys, Identity: Identity{Signer: make([]byte, MaxSignerSize+1)}}, PolicySigner, nil, nil, nil},
		{"label over cap", s, PolicyEnclave, make([]byte, MaxLabelSize+1), nil, ErrTooLarge},
		// Seal refuses before reading the plaintext, so these pages stay
		// untouched.
		{"plaintext over cap", s, PolicyEnclave, nil, make([]byte, MaxPlaintextSize+1), ErrTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			blob, err := tt.s.Seal(ctx, tt.p, tt.label, tt.pt)
			if err == nil || blob != nil {
				t.Fatal("Seal succeeded")
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Fatalf("error = %v, want %v", err, tt.wantErr)
			}
			if !strings.HasPrefix(err.Error(), "seal: ") {
				t.Fatalf("error %q lacks the seal: prefix", err)
			}
		})
	}
	if _, err := (Sealer{Identity: idA}).Open(ctx, PolicyEnclave, nil, nil); err == nil {
		t.Fatal("Open without KeySource succeeded")
	}
	if _, err := s.Open(ctx, PolicyEnclave, make([]byte, MaxLabelSize+1), nil); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("Open with oversized label: %v, want ErrTooLarge", err)
	}
}

func TestRandFailure(t *testing.T) {
	s, _ := sealerFor(rootA, idA)
	s.Rand = bytes.NewReader(make([]byte, 5)) // short: io.ReadFull fails
	if blob, err := s.Seal(context.Background(), PolicyEnclave, nil, []byte("x")); err == nil || blob != nil {
		t.Fatalf("Seal with a failing Rand = %x, %v; want an error", blob, err)
	}
}

func TestKeySourceFailures(t *testing.T) {
	ctx := context.Background()
	good, _ := sealerFor(rootA, idA)
	blob, err := good.Seal(ctx, PolicyEnclave, nil, []byte("x"))
	if err != nil {
		t.Fatal(err)
	}
	platformErr := errors.New("platform: not supported on TDX: use the key broker")
	tests := []struct {
		name    string
		ks      funcKeys
		wantErr error
	}{
		{"platform error", func(context.Context, KeyRequest) ([]byte, error) { return nil, platformErr }, platformErr},
		{"context error", func(ctx context.Context, _ KeyRequest) ([]byte, error) { return nil, ctx.Err() }, context.Canceled},
		{"short key", func(context.Context, KeyRequest) ([]byte, error) { return make([]byte, MinKeyMaterialSize-1), nil }, nil},
		{"empty key", func(context.Context, KeyRequest) ([]byte, error) { return nil, nil }, nil},
		{"long key", func(context.Context, KeyRequest) ([]byte, error) { return make([]byte, MaxKeyMaterialSize+1), nil }, nil},
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := Sealer{Keys: tt.ks, Identity: idA}
			_, serr := s.Seal(cctx, PolicyEnclave, nil, []byte("x"))
			_, oerr := s.Open(cctx, PolicyEnclave, nil, blob)
			for _, err := range []error{serr, oerr} {
				if err == nil {
					t.Fatal("succeeded with a failing KeySource")
				}
				if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
					t.Fatalf("error = %v, want it to wrap %v", err, tt.wantErr)
				}
				if isSentinel(err) {
					t.Fatalf("KeySource failure %v reported as a blob problem", err)
				}
			}
		})
	}
}

// TestKeyMaterialCleared checks that seal zeroes the material it was
// handed once it has derived the blob key.
func TestKeyMaterialCleared(t *testing.T) {
	s, ks := sealerFor(rootA, idA)
	blob, err := s.Seal(context.Background(), PolicySigner, nil, []byte("x"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(ks.last, make([]byte, len(ks.last))) {
		t.Fatal("Seal left the key material in place")
	}
	if _, err := s.Open(context.Background(), PolicySigner, nil, blob); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(ks.last, make([]byte, len(ks.last))) {
		t.Fatal("Open left the key material in place")
	}
}

// TestConcurrent shares one Sealer among goroutines; run with -race.
func TestConcurrent(t *testing.T) {
	s, _ := sealerFor(rootA, idA)
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for g := range 4 {
		wg.Go(func() {
			for i := range 25 {
				label := fmt.Appendf(nil, "g%d/%d", g, i)
				p := policies[i%2]
				blob, err := s.Seal(context.Background(), p, label, label)
				if err == nil {
					var got []byte
					got, err = s.Open(context.Background(), p, label, blob)
					if err == nil && !bytes.Equal(got, label) {
						err = fmt.Errorf("got %q, want %q", got, label)
					}
				}
				if err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestUnverifiedBinding(t *testing.T) {
	s, _ := sealerFor(rootA, idA)
	blob, err := s.Seal(context.Background(), PolicySigner, nil, []byte("x"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := UnverifiedBinding(blob)
	if err != nil {
		t.Fatal(err)
	}
	if b.Policy != PolicySigner || !bytes.Equal(b.Signer, signerA) || b.ProductID != idA.ProductID || b.SVN != idA.SVN || b.Measurement != nil {
		t.Fatalf("UnverifiedBinding = %+v", b)
	}
	// The result must not alias the blob.
	b.Signer[0] ^= 1
	if again, _ := UnverifiedBinding(blob); !bytes.Equal(again.Signer, signerA) {
		t.Fatal("UnverifiedBinding result aliases the blob")
	}
}

func TestPolicyString(t *testing.T) {
	for p, want := range map[Policy]string{PolicyEnclave: "enclave", PolicySigner: "signer", 0: "Policy(0)", 9: "Policy(9)"} {
		if got := p.String(); got != want {
			t.Errorf("Policy(%d).String() = %q, want %q", uint8(p), got, want)
		}
	}
}

// TestExpectedPolicy: Open refuses a blob sealed under another policy than
// the caller expects, before asking for any key, even when the running
// identity could open it (a PolicySigner blob at a lower SVN is exactly
// what an old release of the same signer can make).
func TestExpectedPolicy(t *testing.T) {
	ctx := context.Background()
	s, ks := sealerFor(rootA, idA)
	for _, p := range policies {
		blob, err := s.Seal(ctx, p, []byte("l"), []byte("x"))
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range policies {
			before := len(ks.requests())
			got, err := s.Open(ctx, want, []byte("l"), blob)
			if want == p {
				if err != nil || string(got) != "x" {
					t.Fatalf("Open(%v blob, expecting %v) = %q, %v", p, want, got, err)
				}
				continue
			}
			if !errors.Is(err, ErrWrongPolicy) || got != nil {
				t.Fatalf("Open(%v blob, expecting %v) = %q, %v; want ErrWrongPolicy", p, want, got, err)
			}
			if len(ks.requests()) != before {
				t.Fatalf("Open(%v blob, expecting %v) asked for a key", p, want)
			}
		}
		if _, err := s.Open(ctx, Policy(9), []byte("l"), blob); err == nil {
			t.Fatal("Open expecting an unknown policy succeeded")
		}
	}
}

// TestPerBlobKeys: two blobs of one binding whose GCM nonces collide (the
// event that breaks AES-GCM under one key) still use different keys,
// because each blob's key is derived with its own salt. With one key per
// binding (version 1) the two keystreams would be equal: c1 ⊕ c2 = p1 ⊕ p2.
// Only a collision of all 192 random bits gives two blobs one keystream.
func TestPerBlobKeys(t *testing.T) {
	ctx := context.Background()
	gcmNonce := bytes.Repeat([]byte{0x5a}, gcmNonceSize)
	salt1, salt2 := bytes.Repeat([]byte{1}, keySaltSize), bytes.Repeat([]byte{2}, keySaltSize)
	p1, p2 := []byte("attack at dawn!!"), []byte("retreat at dusk!")
	for _, p := range policies {
		seal := func(salt, pt []byte) []byte {
			s, _ := sealerFor(rootA, idA)
			s.Rand = bytes.NewReader(append(bytes.Clone(salt), gcmNonce...))
			blob, err := s.Seal(ctx, p, nil, pt)
			if err != nil {
				t.Fatal(err)
			}
			return blob
		}
		body := func(blob []byte) []byte { return blob[len(blob)-tagSize-len(p1) : len(blob)-tagSize] }
		xor := func(a, b []byte) []byte {
			out := make([]byte, len(a))
			for i := range a {
				out[i] = a[i] ^ b[i]
			}
			return out
		}
		same1, same2 := seal(salt1, p1), seal(salt1, p2)
		if !bytes.Equal(xor(body(same1), body(same2)), xor(p1, p2)) {
			t.Fatalf("%v: one salt and one nonce did not give one keystream; the test is not measuring what it claims", p)
		}
		b1, b2 := seal(salt1, p1), seal(salt2, p2)
		if bytes.Equal(xor(body(b1), body(b2)), xor(p1, p2)) {
			t.Fatalf("%v: blobs with different salts and the same GCM nonce share a keystream", p)
		}
		for _, b := range [][]byte{b1, b2} {
			s, _ := sealerFor(rootA, idA)
			if _, err := s.Open(ctx, p, nil, b); err != nil {
				t.Fatalf("%v: Open: %v", p, err)
			}
		}
		// The salt is authenticated: a blob with another salt does not open.
		moved := bytes.Clone(b1)
		copy(moved[len(moved)-tagSize-len(p1)-nonceSize:], salt2)
		if _, err := (func() ([]byte, error) { s, _ := sealerFor(rootA, idA); return s.Open(ctx, p, nil, moved) })(); !errors.Is(err, ErrAuth) {
			t.Fatalf("%v: blob with its salt replaced: %v, want ErrAuth", p, err)
		}
	}
}
