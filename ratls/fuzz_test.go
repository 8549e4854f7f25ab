package ratls

import (
	"crypto/x509/pkix"
	"testing"
)

// FuzzParseExtension feeds the CCC and legacy extension parser arbitrary
// values, seeded with the extensions of the three interop certificates.
// Whatever parses must respect the caps, and the binding check must never
// panic on it.
func FuzzParseExtension(f *testing.F) {
	for _, tc := range interop {
		for _, e := range readCert(f, tc.file).Extensions {
			if formOf(e.Id) == FormCCC {
				f.Add(e.Value)
			}
		}
	}
	f.Fuzz(func(t *testing.T, v []byte) {
		ev, err := parseExtension(FormCCC, pkix.Extension{Id: OIDCCCEvidence, Value: v})
		if err != nil {
			return
		}
		if len(ev.UnverifiedEvidence) == 0 || len(ev.UnverifiedEvidence) > maxExtensionSize ||
			len(ev.UnverifiedClaimsBuffer) > maxClaimsBufferSize || len(ev.UnverifiedClaims) > maxClaims {
			t.Fatalf("caps exceeded: evidence %d, claims buffer %d, claims %d", len(ev.UnverifiedEvidence), len(ev.UnverifiedClaimsBuffer), len(ev.UnverifiedClaims))
		}
		ev.spki = []byte("spki")
		_ = ev.CheckKeyBinding(make([]byte, 64))
		// Re-encoding what was decoded must parse back to the same parts.
		re, err := encodeCCC(ev.UnverifiedEvidence, ev.UnverifiedClaimsBuffer)
		if err != nil {
			t.Fatal(err)
		}
		ev2, err := parseExtension(FormCCC, pkix.Extension{Id: OIDCCCEvidence, Value: re})
		if err != nil || string(ev2.UnverifiedEvidence) != string(ev.UnverifiedEvidence) || string(ev2.UnverifiedClaimsBuffer) != string(ev.UnverifiedClaimsBuffer) {
			t.Fatalf("re-encoded extension does not round-trip: %v", err)
		}
	})
}
