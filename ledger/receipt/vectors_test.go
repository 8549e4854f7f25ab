package receipt

import (
	"encoding/hex"
	"os"
	"path/filepath"
	"testing"
)

const vectorDir = "../../testdata/ledger"

// vector is one published ACL receipt with the service certificate that
// endorses its node (testdata/ledger/SOURCE.md).
type vector struct {
	name, receipt, serviceCert, claims string
	txid                               string
	claimsDigest                       string
}

var vectors = []vector{
	{"receipt 1 (snake_case)", "acl_receipt_1.json", "acl_receipt_1_service_cert.pem", "", "2.35", zeroDigest},
	{"receipt 2 (camelCase)", "acl_receipt_2.json", "acl_receipt_2_service_cert.pem", "", "16.7415", zeroDigest},
	{"receipt 3 (P-384, LedgerEntry claim)", "acl_receipt_3_p384.json", "acl_receipt_3_service_cert.pem", "acl_receipt_3_claims_ledger_entry.json", "2.13", receipt3ClaimsDigest},
	{"receipt 3 (P-384, ClaimDigest claim)", "acl_receipt_3_p384.json", "acl_receipt_3_service_cert.pem", "acl_receipt_3_claims_digest.json", "2.13", receipt3ClaimsDigest},
	{"GET receipt response 8.29569", "acl_get_receipt_8.29569.json", "acl_get_receipt_8.29569_service_cert.pem", "", "8.29569", zeroDigest},
}

const (
	zeroDigest           = "0000000000000000000000000000000000000000000000000000000000000000"
	receipt3ClaimsDigest = "d08d8764437d09b2d4d07d52293cddaf40f44a3ea2176a0528819a80002df9f6"
)

func readVector(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(vectorDir, name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func (v vector) opts(t testing.TB) Options {
	t.Helper()
	o := Options{ServiceCert: readVector(t, v.serviceCert)}
	if v.claims != "" {
		c, err := ParseClaims(readVector(t, v.claims))
		if err != nil {
			t.Fatalf("%s: %v", v.claims, err)
		}
		o.Claims = c
	}
	return o
}

func TestPublishedReceiptsVerify(t *testing.T) {
	for _, v := range vectors {
		t.Run(v.name, func(t *testing.T) {
			resp, err := Parse(readVector(t, v.receipt))
			if err != nil {
				t.Fatal(err)
			}
			res, err := Verify(resp, v.opts(t))
			if err != nil {
				t.Fatal(err)
			}
			if res.TransactionID != v.txid {
				t.Errorf("transaction id %q, want %q", res.TransactionID, v.txid)
			}
			if got := hex.EncodeToString(res.ClaimsDigest[:]); got != v.claimsDigest {
				t.Errorf("claims digest %s, want %s", got, v.claimsDigest)
			}
			if res.ClaimsChecked != (v.claims != "") {
				t.Errorf("ClaimsChecked %v with claims file %q", res.ClaimsChecked, v.claims)
			}
			if !res.NodeIDInReceipt || res.NodeID != *resp.Receipt.NodeID {
				t.Errorf("node id not checked: %+v", res)
			}
			if res.Endorsements != 0 {
				t.Errorf("endorsements %d, want 0", res.Endorsements)
			}
		})
	}
}
