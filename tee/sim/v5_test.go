package sim

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/binary"
	"testing"

	"github.com/cloister-dev/cloister/evidence"
	"github.com/cloister-dev/cloister/evidence/dcap"
	"github.com/cloister-dev/cloister/evidence/tdx"
)

// TDX quote v5 (body types 2 and 3) verifies end to end: the signed region
// is header ‖ body descriptor ‖ body. No real v5 vector is public, so the
// sim PKI signs one.
func TestQuoteV5Verifies(t *testing.T) {
	p := testPKI(t)
	col, err := p.Collateral(rand.Reader, testNow, true)
	if err != nil {
		t.Fatal(err)
	}
	for _, typ := range []uint16{tdx.BodyType10, tdx.BodyType15} {
		b := tdx.Body{TEETCBSVN: TEETCBSVN}
		b.MRTD[0], b.ReportData[0] = 0x55, 0x66
		if typ == tdx.BodyType15 {
			b.TEETCBSVN2, b.MRServiceTD = &[16]byte{1}, &[48]byte{2}
		}
		body := b.Marshal()
		signed := p.header(5, dcap.TEETypeTDX).Marshal()
		signed = binary.LittleEndian.AppendUint16(signed, typ)
		signed = binary.LittleEndian.AppendUint32(signed, uint32(len(body)))
		signed = append(signed, body...)
		quote, err := p.finish(rand.Reader, signed, true, qeProdIDTDX)
		if err != nil {
			t.Fatal(err)
		}
		opts := evidence.Options{Time: testNow, Collateral: col, TrustRoots: []*x509.Certificate{p.Root}}
		c, err := evidence.NewVerifier().Verify(context.Background(), quote, opts)
		if err != nil {
			t.Fatalf("body type %d: %v", typ, err)
		}
		if c.TEE != evidence.TEESimTDX || c.MRTD[0] != 0x55 || c.ReportData[0] != 0x66 || (typ == tdx.BodyType15) != (c.MRServiceTD != nil) {
			t.Errorf("body type %d: %+v", typ, c.TDXClaims)
		}
		// Every byte of the signed region, descriptor included, is covered.
		for i := range len(signed) {
			bad := append([]byte{}, quote...)
			bad[i] ^= 0x01
			if _, err := evidence.NewVerifier().Verify(context.Background(), bad, opts); err == nil {
				t.Fatalf("body type %d: flipping signed byte %d still verifies", typ, i)
			}
		}
	}
}
