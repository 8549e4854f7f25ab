package evidence

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/asn1"
	"encoding/pem"
	"testing"
	"time"

	"github.com/fxamacker/cbor/v2"
)

// RA-TLS certificate extension OIDs (testdata/README.md, ratls/).
var (
	oidIntelQuote   = asn1.ObjectIdentifier{1, 2, 840, 113741, 1, 13, 1}
	oidGramineQuote = asn1.ObjectIdentifier{0, 6, 9, 42, 840, 113741, 1337, 6}
	oidCCCEvidence  = asn1.ObjectIdentifier{2, 23, 133, 5, 4, 9}
)

type ratlsQuote struct {
	cert, ext string
	quote     []byte
	claims    []byte // CCC claims buffer, nil for raw-quote extensions
	spki      []byte
}

// ratlsQuotes pulls every quote out of the three RA-TLS certificates. The
// extraction here is deliberately minimal: it feeds the quote verifier;
// package ratls owns the real parsing.
func ratlsQuotes(t *testing.T) []ratlsQuote {
	t.Helper()
	var out []ratlsQuote
	for _, name := range []string{"gramine-cert.pem", "intel-sgxsdk-cert.pem", "rats-tls-cert.pem"} {
		block, _ := pem.Decode(readVector(t, "ratls/"+name))
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range cert.Extensions {
			q := ratlsQuote{cert: name, ext: e.Id.String(), spki: cert.RawSubjectPublicKeyInfo}
			switch {
			case e.Id.Equal(oidIntelQuote), e.Id.Equal(oidGramineQuote):
				q.quote = e.Value
			case e.Id.Equal(oidCCCEvidence):
				var tag cbor.RawTag
				if err := cbor.Unmarshal(e.Value, &tag); err != nil || tag.Number != 60000 {
					t.Fatalf("%s: CCC evidence is not tag 60000: %v", name, err)
				}
				var pair [][]byte
				if err := cbor.Unmarshal(tag.Content, &pair); err != nil || len(pair) != 2 {
					t.Fatalf("%s: CCC evidence is not [quote, claims]: %v", name, err)
				}
				q.quote, q.claims = pair[0], pair[1]
			default:
				continue
			}
			out = append(out, q)
		}
	}
	return out
}

// TestRATLSQuotes verifies, without collateral, the quotes inside the
// RA-TLS certificates of the CCC interoperability tests.
func TestRATLSQuotes(t *testing.T) {
	want := map[string][2]string{
		"gramine-cert.pem":      {"0866e7ca11b9f4efe4bf39b2607f4e1299f111920d96d95719080f01b62b7585", "adc53501f21ced9b998e37a7a18e061c63e00315045fa57a49c18ef0a30d02ca"},
		"intel-sgxsdk-cert.pem": {"09e218a4be9dadbf7cdc82c45497d6d4f676d3b75445fc37a376f0b65b47de6a", "e0c86c51e05ad8592673db348155bddf4bcad6131a5205ce4265c0d795803ba2"},
		"rats-tls-cert.pem":     {"38e1b40b8c68186f359c97ecb6a89965d9d8638f2df06fbe18e84d79a266c041", "83d719e77deaca1470f6baf62a4d774303c899db69020f9c70ee1dfc08c7ce9e"},
	}
	quotes := ratlsQuotes(t)
	if len(quotes) != 5 {
		t.Fatalf("found %d quotes in the certificates; want 5", len(quotes))
	}
	at := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, q := range quotes {
		t.Run(q.cert+"/"+q.ext, func(t *testing.T) {
			c, err := Verify(context.Background(), q.quote, Options{Time: at, SkipTCBEvaluation: true})
			if err != nil {
				t.Fatal(err)
			}
			if c.TEE != TEESGX || c.TCBStatus != StatusNotEvaluated || !c.Debug {
				t.Errorf("tee %q status %q debug %v; want sgx, NotEvaluated, debug", c.TEE, c.TCBStatus, c.Debug)
			}
			eq(t, "mrenclave", c.MRENCLAVE, unhex(want[q.cert][0]))
			eq(t, "mrsigner", c.MRSIGNER, unhex(want[q.cert][1]))
			// The binding each form promises (DESIGN.md, Attested TLS).
			var bound [32]byte
			if q.claims != nil {
				bound = sha256.Sum256(q.claims)
			} else if q.ext == oidGramineQuote.String() {
				bound = sha256.Sum256(q.spki)
			}
			if q.claims != nil || q.ext == oidGramineQuote.String() {
				eq(t, "report_data[0:32]", c.ReportData[:32], bound[:])
			}
		})
	}
}
