package ratls

import (
	"bytes"
	"context"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"regexp"
	"slices"
	"testing"

	"github.com/fxamacker/cbor/v2"

	"github.com/cloister-dev/cloister/evidence"
	"github.com/cloister-dev/cloister/policy"
)

// The three interop certificates parse; every form in them verifies
// (without collateral, at a time inside their validity) and binds the
// certificate's key; the identities are those of testdata/README.md.
func TestInteropForms(t *testing.T) {
	ctx := context.Background()
	for _, tc := range interop {
		t.Run(tc.file, func(t *testing.T) {
			cert := readCert(t, tc.file)
			all, err := ParseAll(cert)
			if err != nil {
				t.Fatal(err)
			}
			var forms []Form
			for _, ev := range all {
				forms = append(forms, ev.Form)
			}
			if !slices.Equal(forms, tc.forms) {
				t.Fatalf("forms %v, want %v", forms, tc.forms)
			}
			for _, ev := range all {
				c, err := evidence.Verify(ctx, ev.UnverifiedEvidence, evidence.Options{Time: interopAt, SkipTCBEvaluation: true})
				if err != nil {
					t.Fatalf("%s: %v", ev.Form, err)
				}
				if err := ev.CheckKeyBinding(c.ReportData); err != nil {
					t.Errorf("%s: %v", ev.Form, err)
				}
				if c.MRENCLAVE.String() != tc.mrenclave || c.MRSIGNER.String() != tc.mrsigner || !c.Debug || c.TEE != evidence.TEESGX {
					t.Errorf("%s: tee %s mrenclave %s mrsigner %s debug %v", ev.Form, c.TEE, c.MRENCLAVE, c.MRSIGNER, c.Debug)
				}
			}
			ev, err := ParseCertificate(cert)
			if err != nil || ev.Form != FormCCC || !slices.Equal(ev.Others, tc.forms[1:]) {
				t.Fatalf("ParseCertificate: form %v others %v err %v", ev.Form, ev.Others, err)
			}
		})
	}
}

// The intel-sgxsdk legacy extension binds the claims buffer, not the key:
// it is bound only through the CCC claims buffer of the same certificate.
func TestInteropIntelLegacyBindsThroughClaims(t *testing.T) {
	cert := readCert(t, "intel-sgxsdk-cert.pem")
	all, err := ParseAll(cert)
	if err != nil {
		t.Fatal(err)
	}
	legacy := all[1]
	if !bytes.Equal(legacy.UnverifiedEvidence, all[0].UnverifiedEvidence) {
		t.Fatal("the SDK's two extensions no longer hold the same quote")
	}
	c, err := evidence.Verify(context.Background(), legacy.UnverifiedEvidence, evidence.Options{Time: interopAt, SkipTCBEvaluation: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := legacy.CheckKeyBinding(c.ReportData); err != nil {
		t.Fatalf("through the claims buffer: %v", err)
	}
	legacy.sibling = nil
	if err := legacy.CheckKeyBinding(c.ReportData); !errors.Is(err, ErrKeyNotBound) {
		t.Fatalf("without the CCC extension: %v, want ErrKeyNotBound", err)
	}
}

// Full Verify of the interop certificates: a debug-allowing, no-collateral
// policy passes; the default policy (any identity) names both failures.
func TestInteropVerify(t *testing.T) {
	ctx := context.Background()
	for _, tc := range interop {
		t.Run(tc.file, func(t *testing.T) {
			cert := readCert(t, tc.file)
			o := VerifyOptions{Now: fixed(interopAt), SkipTCBEvaluation: true}
			o.Policy = policy.Policy{MRENCLAVE: [][]byte{unhex(t, tc.mrenclave)}, MRSIGNER: [][]byte{unhex(t, tc.mrsigner)},
				AllowDebug: true, AllowStatus: []string{evidence.StatusNotEvaluated}}
			r, err := Verify(ctx, cert, o)
			if err != nil {
				t.Fatal(err)
			}
			if r.Form != FormCCC || !r.KeyBound || r.Claims.MRENCLAVE.String() != tc.mrenclave {
				t.Errorf("result %+v", r)
			}
			o.Policy = policy.Policy{AnyIdentity: true}
			_, err = Verify(ctx, cert, o)
			if got := mismatches(err); !errors.Is(err, ErrPolicy) || !slices.Equal(got, []string{"tcb_status", "debug"}) {
				t.Errorf("default policy: %v (fields %v)", err, got)
			}
		})
	}
}

func mismatches(err error) []string {
	var out []string
	var walk func(error)
	walk = func(e error) {
		var m *policy.Mismatch
		if errors.As(e, &m) && e == error(m) {
			out = append(out, m.Field)
			return
		}
		switch u := e.(type) {
		case interface{ Unwrap() []error }:
			for _, x := range u.Unwrap() {
				walk(x)
			}
		case interface{ Unwrap() error }:
			walk(u.Unwrap())
		}
	}
	if err != nil {
		walk(err)
	}
	return out
}

// rats-tls writes custom claims; they are decoded as byte strings.
func TestInteropCustomClaims(t *testing.T) {
	ev, err := ParseCertificate(readCert(t, "rats-tls-cert.pem"))
	if err != nil {
		t.Fatal(err)
	}
	if got := ev.UnverifiedClaims["key_0"]; string(got) != "value_0\x00" {
		t.Errorf("key_0 = %q", got)
	}
	if len(ev.UnverifiedClaims) != 3 {
		t.Errorf("claims %v", ev.UnverifiedClaims)
	}
}

var hexRe = regexp.MustCompile(`h'[0-9a-f]*'`)

// shape is the CBOR diagnostic notation of the CCC extension with byte
// string contents elided, the claims buffer and pubkey-hash expanded.
func shape(t *testing.T, ev *Evidence, ext []byte) string {
	t.Helper()
	outer, err := cbor.Diagnose(ext)
	if err != nil {
		t.Fatal(err)
	}
	claims, err := cbor.Diagnose(ev.UnverifiedClaimsBuffer)
	if err != nil {
		t.Fatal(err)
	}
	ph, err := cbor.Diagnose(ev.UnverifiedClaims[ClaimPubKeyHash])
	if err != nil {
		t.Fatal(err)
	}
	// The pubkey-hash hash length is kept: it must be 32 (sha-256).
	ph = regexp.MustCompile(`h'([0-9a-f]{64})'`).ReplaceAllString(ph, "h'<32 bytes>'")
	return hexRe.ReplaceAllString(outer, "h'…'") + " claims " + hexRe.ReplaceAllString(claims, "h'…'") + " pubkey-hash " + ph
}

func cccExt(t *testing.T, cert *x509.Certificate) []byte {
	t.Helper()
	for _, e := range cert.Extensions {
		if e.Id.Equal(OIDCCCEvidence) {
			return e.Value
		}
	}
	t.Fatal("no CCC extension")
	return nil
}

// Our certificates have the CCC structure of the Gramine and Intel SGX SDK
// interop certificates, byte layout of the heads included, and each
// direction parses with the same code.
func TestOwnStructureMatchesInterop(t *testing.T) {
	e := newSim(t)
	ours := e.server(t, e.app, nil).Certificate()
	ourEv, err := ParseCertificate(ours)
	if err != nil {
		t.Fatal(err)
	}
	want := shape(t, ourEv, cccExt(t, ours))
	const expect = `60000([h'…', h'…']) claims {"pubkey-hash": h'…'} pubkey-hash [1, h'<32 bytes>']`
	if want != expect {
		t.Errorf("our shape %s\nwant %s", want, expect)
	}
	for _, name := range []string{"gramine-cert.pem", "intel-sgxsdk-cert.pem"} {
		c := readCert(t, name)
		ev, err := ParseCertificate(c)
		if err != nil {
			t.Fatal(err)
		}
		if got := shape(t, ev, cccExt(t, c)); got != want {
			t.Errorf("%s: shape %s\nours %s", name, got, want)
		}
		// Same heads: tag, array(2), bstr with 2-byte length, then the
		// claims buffer's bstr head and its pubkey-hash value prefix.
		theirs, mine := cccExt(t, c), cccExt(t, ours)
		if !bytes.Equal(theirs[:5], mine[:5]) {
			t.Errorf("%s: heads % x, ours % x", name, theirs[:5], mine[:5])
		}
		if !bytes.Equal(ev.UnverifiedClaims[ClaimPubKeyHash][:4], ourEv.UnverifiedClaims[ClaimPubKeyHash][:4]) {
			t.Errorf("%s: pubkey-hash head differs", name)
		}
	}
}

// Every strictness rule of the CCC decoder, each on a mutation of a valid
// extension built by our encoder.
func TestStrictCBOR(t *testing.T) {
	quote := bytes.Repeat([]byte{7}, 300)
	claims, err := encodeClaims([]byte("spki"), nil)
	if err != nil {
		t.Fatal(err)
	}
	good, err := encodeCCC(quote, claims)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := parseExtension(FormCCC, pkix.Extension{Id: OIDCCCEvidence, Value: good}); err != nil {
		t.Fatalf("good extension: %v", err)
	}
	mk := func(v any) []byte {
		b, err := cbor.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	tagged := func(content []byte) []byte { return append(bytes.Clone(cccTagHead), content...) }
	phGood := mk([]any{1, make([]byte, 32)})
	tests := map[string][]byte{
		"other tag":                 mk(cbor.Tag{Number: 60001, Content: [][]byte{quote, claims}}),
		"tag in long form":          append([]byte{0xda, 0, 0, 0xea, 0x60}, mk([][]byte{quote, claims})...),
		"no tag":                    mk([][]byte{quote, claims}),
		"three elements":            tagged(mk([][]byte{quote, claims, claims})),
		"one element":               tagged(mk([][]byte{quote})),
		"text evidence":             tagged(mk([]any{string(quote), claims})),
		"text claims buffer":        tagged(mk([]any{quote, string(claims)})),
		"empty evidence":            tagged(mk([][]byte{{}, claims})),
		"trailing byte":             append(bytes.Clone(good), 0),
		"indefinite array":          tagged(append(append([]byte{0x9f}, mk(quote)...), append(mk(claims), 0xff)...)),
		"indefinite bstr":           tagged(append([]byte{0x82, 0x5f}, append(append(mk(quote), 0xff), mk(claims)...)...)),
		"nested tag":                tagged(mk([]any{cbor.Tag{Number: 24, Content: quote}, claims})),
		"claims not a map":          tagged(mk([]any{quote, mk([]any{1})})),
		"duplicate claim":           tagged(mk([]any{quote, append([]byte{0xa2}, append(mk("pubkey-hash"), append(mk(phGood), append(mk("pubkey-hash"), mk(phGood)...)...)...)...)})),
		"bstr map key":              tagged(mk([]any{quote, append([]byte{0xa1}, append(mk([]byte("k")), mk([]byte("v"))...)...)})),
		"text claim value":          tagged(mk([]any{quote, mk(map[string]any{"pubkey-hash": phGood, "x": "text"})})),
		"pubkey-hash not an array":  tagged(mk([]any{quote, mk(map[string][]byte{"pubkey-hash": mk(1)})})),
		"pubkey-hash negative alg":  tagged(mk([]any{quote, mk(map[string][]byte{"pubkey-hash": mk([]any{-1, make([]byte, 32)})})})),
		"pubkey-hash unknown alg":   tagged(mk([]any{quote, mk(map[string][]byte{"pubkey-hash": mk([]any{2, make([]byte, 32)})})})),
		"pubkey-hash short":         tagged(mk([]any{quote, mk(map[string][]byte{"pubkey-hash": mk([]any{1, make([]byte, 31)})})})),
		"pubkey-hash three entries": tagged(mk([]any{quote, mk(map[string][]byte{"pubkey-hash": mk([]any{1, make([]byte, 32), 0})})})),
		"pubkey-hash trailing":      tagged(mk([]any{quote, mk(map[string][]byte{"pubkey-hash": append(phGood, 0)})})),
		"oversized claims buffer":   tagged(mk([]any{quote, mk(map[string][]byte{"x": make([]byte, maxClaimsBufferSize)})})),
		"oversized extension":       tagged(mk([]any{make([]byte, maxExtensionSize), claims})),
	}
	for name, v := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := parseExtension(FormCCC, pkix.Extension{Id: OIDCCCEvidence, Value: v})
			if err == nil {
				t.Fatalf("accepted % x", v[:min(len(v), 40)])
			}
			if r, ok := evidence.ReasonOf(err); !ok || (r != evidence.Malformed && r != evidence.Unsupported) {
				t.Errorf("reason %v %v: %v", r, ok, err)
			}
		})
	}
}

// No strict prefix of a valid extension parses.
func TestTruncationsRejected(t *testing.T) {
	ext := cccExt(t, readCert(t, "rats-tls-cert.pem"))
	for n := 0; n < len(ext); n++ {
		if _, err := parseExtension(FormCCC, pkix.Extension{Id: OIDCCCEvidence, Value: ext[:n]}); err == nil {
			t.Fatalf("prefix of %d/%d bytes parsed", n, len(ext))
		}
	}
}

// Gramine's OID in both encodings in one certificate is ambiguous.
func TestTwoExtensionsOfOneFormRejected(t *testing.T) {
	c := readCert(t, "gramine-cert.pem")
	var legacy pkix.Extension
	for _, e := range c.Extensions {
		if e.Id.Equal(OIDGramineQuoteMisencoded) {
			legacy = e
		}
	}
	c.Extensions = append(c.Extensions, pkix.Extension{Id: OIDGramineQuote, Value: legacy.Value})
	if _, err := ParseAll(c); err == nil {
		t.Fatal("two Gramine extensions accepted")
	}
	c.Extensions = nil
	if _, err := ParseAll(c); !errors.Is(err, ErrNoEvidence) {
		t.Fatalf("no extension: %v", err)
	}
}
