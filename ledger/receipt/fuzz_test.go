package receipt

import (
	"testing"
)

// FuzzParseVerify feeds receipt documents, seeded with the published ones,
// to Parse and then to Verify under every published service certificate:
// nothing panics, every error names its step, and anything that verifies
// proves exactly what one of the published receipts proves (no input
// verifies as another transaction, leaf or root).
func FuzzParseVerify(f *testing.F) {
	type proved struct {
		cert       string
		root, leaf [32]byte
		txid       string
	}
	known := map[proved]bool{}
	certs := map[string][]byte{}
	for _, v := range vectors {
		raw := readVector(f, v.receipt)
		f.Add(raw)
		certs[v.serviceCert] = readVector(f, v.serviceCert)
		resp, err := Parse(raw)
		if err != nil {
			f.Fatal(err)
		}
		res, err := Verify(resp, Options{ServiceCert: certs[v.serviceCert]})
		if err != nil {
			f.Fatal(err)
		}
		known[proved{v.serviceCert, res.Root, res.Leaf, res.TransactionID}] = true
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		resp, err := Parse(data)
		if err != nil {
			if _, ok := StepOf(err); !ok {
				t.Fatalf("error without a step: %v", err)
			}
			return
		}
		for name, cert := range certs {
			res, err := Verify(resp, Options{ServiceCert: cert})
			if err != nil {
				if _, ok := StepOf(err); !ok {
					t.Fatalf("error without a step: %v", err)
				}
				continue
			}
			if !known[proved{name, res.Root, res.Leaf, res.TransactionID}] {
				t.Fatalf("verified under %s as something no published receipt proves: %+v", name, res)
			}
		}
	})
}

// FuzzParseClaims: claims documents, seeded with the published ones, never
// panic; parsed claims digest or fail with a step.
func FuzzParseClaims(f *testing.F) {
	f.Add(readVector(f, "acl_receipt_3_claims_ledger_entry.json"))
	f.Add(readVector(f, "acl_receipt_3_claims_digest.json"))
	f.Fuzz(func(t *testing.T, data []byte) {
		claims, err := ParseClaims(data)
		if err != nil {
			if _, ok := StepOf(err); !ok {
				t.Fatalf("error without a step: %v", err)
			}
			return
		}
		if len(claims) == 0 {
			t.Fatal("parsed an empty claims list")
		}
		if _, err := ClaimsDigest(claims); err != nil {
			if _, ok := StepOf(err); !ok {
				t.Fatalf("error without a step: %v", err)
			}
		}
	})
}
