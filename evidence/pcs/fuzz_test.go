package pcs

import (
	"bytes"
	"encoding/json"
	"errors"
	"testing"

	"github.com/cloister-dev/cloister/evidence/internal/verr"
)

// bundleSeeds are the real bundles every fuzz target starts from.
var bundleSeeds = []string{sgxBundleFile, tdxBundleFile}

// FuzzParseBundle: ParseBundle never panics, fails only with a typed
// Malformed error, and whatever it accepts survives Marshal → ParseBundle
// unchanged (and DecodeUnverified does not panic on it).
func FuzzParseBundle(f *testing.F) {
	for _, name := range bundleSeeds {
		f.Add(readVector(f, name))
	}
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"tcb_info":"{}","tcb_info":"{}"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		b, err := ParseBundle(data)
		if err != nil {
			if r, ok := verr.ReasonOf(err); !ok || r != verr.Malformed {
				t.Fatalf("untyped error %q", err)
			}
			return
		}
		for _, fl := range b.fields() {
			if fl.required && *fl.value == "" {
				t.Fatalf("accepted a bundle with empty %s", fl.key)
			}
		}
		_, _ = b.DecodeUnverified()
		out, err := b.Marshal()
		if err != nil {
			// Marshal may escape a few characters the input wrote raw
			// (U+2028, U+2029) and so outgrow the size cap; nothing else.
			var e *verr.Error
			if errors.As(err, &e) && e.Step == "bundle" {
				return
			}
			t.Fatalf("Marshal of an accepted bundle: %v", err)
		}
		b2, err := ParseBundle(out)
		if err != nil {
			t.Fatalf("ParseBundle(Marshal()): %v", err)
		}
		if *b2 != *b {
			t.Fatal("round trip changed the bundle")
		}
	})
}

// FuzzDecodeUnverified: DecodeUnverified never panics, on any combination of field values, and
// what it accepts obeys its contract (signed text unchanged, 64-byte
// signatures, 1..maxChainCerts certificates, CRLs nil exactly when absent).
func FuzzDecodeUnverified(f *testing.F) {
	for _, name := range bundleSeeds {
		var m map[string]string
		if err := json.Unmarshal(readVector(f, name), &m); err != nil {
			f.Fatal(err)
		}
		f.Add(m["tcb_info"], m["tcb_info_signature"], m["tcb_info_issuer_chain"],
			m["qe_identity"], m["qe_identity_signature"], m["qe_identity_issuer_chain"],
			m["pck_crl"], m["pck_crl_issuer_chain"], m["root_ca_crl"])
	}
	f.Fuzz(func(t *testing.T, tcb, tcbSig, tcbChain, qe, qeSig, qeChain, pckCRL, pckChain, rootCRL string) {
		b := Bundle{tcb, tcbSig, tcbChain, qe, qeSig, qeChain, pckCRL, pckChain, rootCRL}
		d, err := b.DecodeUnverified()
		if err != nil {
			if r, ok := verr.ReasonOf(err); !ok || r != verr.Malformed {
				t.Fatalf("untyped error %q", err)
			}
			return
		}
		if !bytes.Equal(d.TCBInfo, []byte(tcb)) || !bytes.Equal(d.QEIdentity, []byte(qe)) {
			t.Fatal("signed text changed")
		}
		if len(d.TCBInfoSignature) != signatureSize || len(d.QEIdentitySignature) != signatureSize {
			t.Fatal("signature of the wrong size accepted")
		}
		for _, n := range []int{len(d.TCBInfoChain), len(d.QEIdentityChain)} {
			if n < 1 || n > maxChainCerts {
				t.Fatalf("chain of %d certificates accepted", n)
			}
		}
		if (d.PCKCRL == nil) != (pckCRL == "") || (d.RootCACRL == nil) != (rootCRL == "") {
			t.Fatal("CRL presence not preserved")
		}
		if d.PCKCRL != nil && d.PCKCRLChain == nil {
			t.Fatal("PCK CRL accepted without its chain")
		}
	})
}
