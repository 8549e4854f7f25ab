package sim

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/x509"
	"testing"
	"time"

	"github.com/cloister-dev/cloister/evidence"
)

// A sim SGX quote with Key Separation and Sharing fields verifies, and the
// claims report them; without them the enclave is a pre-KSS one and the
// claims have no KSS part.
func TestSimSGXKSS(t *testing.T) {
	p := testPKI(t)
	col, err := p.Collateral(rand.Reader, testNow, false)
	if err != nil {
		t.Fatal(err)
	}
	opts := evidence.Options{Time: testNow.Add(time.Hour), Collateral: col, TrustRoots: []*x509.Certificate{p.Root}}
	var id [64]byte
	copy(id[:], "init-time configuration digest")
	q, err := p.QuoteSGX(rand.Reader, SGXReport{MRENCLAVE: [32]byte{1}, ConfigID: id, ConfigSVN: 9,
		ISVExtProdID: [16]byte{0xe1}, ISVFamilyID: [16]byte{0xf1}})
	if err != nil {
		t.Fatal(err)
	}
	c, err := evidence.NewVerifier().Verify(context.Background(), q, opts)
	if err != nil {
		t.Fatal(err)
	}
	k := c.SGXKSSClaims
	if k == nil {
		t.Fatal("no KSS claims for a quote with a config ID")
	}
	if !bytes.Equal(k.ConfigID, id[:]) || k.ConfigSVN != 9 || k.ISVExtProdID[0] != 0xe1 || k.ISVFamilyID[0] != 0xf1 || c.Attributes[0]&0x80 == 0 {
		t.Errorf("KSS claims %+v attributes %s", k, c.Attributes)
	}

	q, err = p.QuoteSGX(rand.Reader, SGXReport{MRENCLAVE: [32]byte{1}})
	if err != nil {
		t.Fatal(err)
	}
	if c, err = evidence.NewVerifier().Verify(context.Background(), q, opts); err != nil {
		t.Fatal(err)
	}
	if c.SGXKSSClaims != nil || c.Attributes[0]&0x80 != 0 {
		t.Errorf("pre-KSS quote: KSS claims %+v attributes %s", c.SGXKSSClaims, c.Attributes)
	}
}
