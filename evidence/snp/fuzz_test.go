package snp

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/cloister-dev/cloister/evidence/internal/verr"
	"github.com/google/go-sev-guest/abi"
)

func FuzzParse(f *testing.F) {
	report := readVector(f, "attestation.bin")
	f.Add(report)
	f.Add(report[:0x2A0])
	f.Fuzz(func(t *testing.T, raw []byte) {
		r, err := Parse(raw)
		if err != nil {
			var ve *verr.Error
			if !errors.As(err, &ve) || ve.Reason != verr.Malformed {
				t.Fatalf("Parse error %v is not a Malformed *verr.Error", err)
			}
			return
		}
		// What parses re-encodes to the same bytes: nothing is dropped.
		back, err := abi.ReportToAbiBytes(r)
		if err != nil {
			t.Fatalf("ReportToAbiBytes of a parsed report: %v", err)
		}
		if len(raw) != abi.ReportSize || !bytes.Equal(back[:0x2A0], raw[:0x2A0]) {
			t.Fatalf("parsed report does not re-encode to its signed bytes")
		}
	})
}

func FuzzVerify(f *testing.F) {
	report, vcek, _ := vectors(f)
	table := makeTable(f, map[string][]byte{abi.VcekGUID: vcek})
	f.Add(report, []byte(nil))
	f.Add(report, table)
	// Real Genoa evidence with the certificate table it came with.
	genoa, genoaTable := veraisonVector(f)
	f.Add(genoa, genoaTable)
	products := map[string]string{string(report[:0x2A0]): ProductMilan, string(genoa[:0x2A0]): ProductGenoa}
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, raw, certs []byte) {
		r, err := Verify(raw, Options{Time: at, CertTable: certs})
		if err != nil {
			var ve *verr.Error
			if !errors.As(err, &ve) || ve.Pkg != "snp" {
				t.Fatalf("error %v is not an snp *verr.Error", err)
			}
			return
		}
		// Only the real reports can verify: anything else is a forgery.
		want, ok := products[string(raw[:0x2A0])]
		if !ok {
			t.Fatalf("a changed report verified: %x", raw)
		}
		if r.Product != want {
			t.Fatalf("Product %q, want %q", r.Product, want)
		}
	})
}
