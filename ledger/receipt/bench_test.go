package receipt

import (
	"testing"
)

// BenchmarkVerify measures receipts verified per second, parsing included
// (what `cloister ledger verify-receipt` and `cloister bench ledger`'s
// verify_receipts_per_s do per receipt): a published P-256 receipt with a
// 10-step proof, one ECDSA verification for the endorsement and one for the
// root signature.
func BenchmarkVerify(b *testing.B) {
	raw := readVector(b, "acl_receipt_2.json")
	opts := Options{ServiceCert: readVector(b, "acl_receipt_2_service_cert.pem")}
	b.ReportAllocs()
	for b.Loop() {
		resp, err := Parse(raw)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := Verify(resp, opts); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "receipts/s")
}
