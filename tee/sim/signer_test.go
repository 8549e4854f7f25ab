package sim

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"testing"

	"github.com/cloister-dev/cloister/evidence"
)

// Collateral signed by any key that chains to the root but is not a direct
// TCB signing certificate, here the PCK key with its full chain, must not
// verify: otherwise one extracted PCK key could declare any TCB UpToDate.
func TestCollateralSignedByPCKKeyIsRejected(t *testing.T) {
	p := testPKI(t)
	quote, err := p.QuoteSGX(rand.Reader, SGXReport{MRENCLAVE: [32]byte{1}})
	if err != nil {
		t.Fatal(err)
	}
	col, err := p.Collateral(rand.Reader, testNow, false)
	if err != nil {
		t.Fatal(err)
	}
	forged := *col
	sig := make([]byte, 64)
	if err := rawSign(rand.Reader, p.pckKey, []byte(forged.TCBInfo), sig); err != nil {
		t.Fatal(err)
	}
	forged.TCBInfoSignature = hex.EncodeToString(sig)
	forged.TCBInfoIssuerChain = string(p.PCKChainPEM())
	opts := evidence.Options{Time: testNow, Collateral: &forged, TrustRoots: []*x509.Certificate{p.Root}}
	_, err = evidence.NewVerifier().Verify(context.Background(), quote, opts)
	if r, _ := evidence.ReasonOf(err); r != evidence.UntrustedRoot {
		t.Fatalf("TCB info signed by the PCK key: %v; want UntrustedRoot", err)
	}
	// The genuine collateral still verifies.
	opts.Collateral = col
	if _, err := evidence.NewVerifier().Verify(context.Background(), quote, opts); err != nil {
		t.Fatal(err)
	}
}
