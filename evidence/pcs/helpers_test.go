package pcs

import (
	"crypto/ecdsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cloister-dev/cloister/evidence/internal/verr"
)

// testdataDir is the shared vector folder (see its README.md).
const testdataDir = "../../testdata"

// Vector files used by the tests.
const (
	sgxBundleFile     = "sgx/dcap-qvl_sgx_quote_v3_collateral.json"
	tdxBundleFile     = "tdx/dcap-qvl_tdx_quote_v4_collateral.json"
	tdxTCBInfoFile    = "tdx/sample_tcbInfo_response"
	tdxQEIdentityFile = "tdx/sample_qeIdentity_response"
	tdxPCKCRLFile     = "tdx/pckcrl"
	tdxRootCRLFile    = "tdx/rootcrl.der"
	tdxTCBChainFile   = "tdx/sample_tcbInfo_issuer_chain.pem"
	tdxPCKChainFile   = "tdx/pckcrl_issuer_chain.pem"
)

// Sizes of the signed objects in the go-tdx-guest responses, from
// testdata/README.md.
const (
	tdxSignedTCBInfoLen    = 2245
	tdxSignedQEIdentityLen = 461
)

// readVector returns the content of a file under testdata.
func readVector(tb testing.TB, name string) []byte {
	tb.Helper()
	data, err := os.ReadFile(filepath.Join(testdataDir, name))
	if err != nil {
		tb.Fatal(err)
	}
	return data
}

// wantMalformed fails unless err is a Malformed verr.Error whose message
// contains want.
func wantMalformed(t *testing.T, err error, want string) {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want one containing %q", want)
	}
	if r, ok := verr.ReasonOf(err); !ok || r != verr.Malformed {
		t.Errorf("error %q: reason %v (typed: %v), want %v", err, r, ok, verr.Malformed)
	}
	if !strings.Contains(err.Error(), want) {
		t.Errorf("error %q does not contain %q", err, want)
	}
}

// verifyRS checks a raw r||s P-256 signature over msg with cert's key, the
// way evidence/dcap does. It proves that signed text was cut byte-exact.
func verifyRS(t *testing.T, what string, cert *x509.Certificate, msg, sig []byte) {
	t.Helper()
	pub, ok := cert.PublicKey.(*ecdsa.PublicKey)
	if !ok {
		t.Fatalf("%s: signer key is %T, want ECDSA", what, cert.PublicKey)
	}
	if len(sig) != signatureSize {
		t.Fatalf("%s: signature is %d bytes, want %d", what, len(sig), signatureSize)
	}
	digest := sha256.Sum256(msg)
	r := new(big.Int).SetBytes(sig[:32])
	s := new(big.Int).SetBytes(sig[32:])
	if !ecdsa.Verify(pub, digest[:], r, s) {
		t.Errorf("%s: signature does not verify with %q", what, cert.Subject.CommonName)
	}
}

// subjects returns the common names of a chain.
func subjects(chain []*x509.Certificate) []string {
	var out []string
	for _, c := range chain {
		out = append(out, c.Subject.CommonName)
	}
	return out
}

// parseCRL parses der and fails the test if it is not a CRL.
func parseCRL(t *testing.T, what string, der []byte) *x509.RevocationList {
	t.Helper()
	crl, err := x509.ParseRevocationList(der)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	return crl
}

// wrap64 returns the base64 of data in 64-character PEM lines.
func wrap64(data []byte) string {
	s := base64.StdEncoding.EncodeToString(data)
	var b strings.Builder
	for len(s) > 64 {
		b.WriteString(s[:64] + "\n")
		s = s[64:]
	}
	b.WriteString(s + "\n")
	return b.String()
}
