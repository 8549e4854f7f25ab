package ratls

import (
	"context"
	"crypto/x509/pkix"
	"fmt"

	"github.com/cloister-dev/cloister/tee"
)

// Extension returns the CCC RA-TLS extension for a certificate whose key
// the caller holds and issues itself (the ledger's service certificate):
// fresh evidence from p whose report_data binds the claims buffer, which
// holds pubkey-hash = SHA-256(spki) and the caller's extra claims.
// The certificate must be self-signed, as Verify checks it with its own key.
func Extension(ctx context.Context, p tee.Platform, spki []byte, claims map[string][]byte) (pkix.Extension, error) {
	if _, ok := claims[ClaimPubKeyHash]; ok {
		return pkix.Extension{}, fmt.Errorf("ratls: extension: %s is set from the key, not by the caller", ClaimPubKeyHash)
	}
	buf, err := encodeClaims(spki, claims)
	if err != nil {
		return pkix.Extension{}, err
	}
	quote, err := p.Evidence(ctx, cccReportData(buf))
	if err != nil {
		return pkix.Extension{}, fmt.Errorf("ratls: evidence for the certificate: %w", err)
	}
	v, err := encodeCCC(quote, buf)
	if err != nil {
		return pkix.Extension{}, err
	}
	if len(v) > maxExtensionSize {
		return pkix.Extension{}, fmt.Errorf("ratls: ccc extension of %d bytes exceeds %d", len(v), maxExtensionSize)
	}
	return pkix.Extension{Id: FormCCC.writeOID(), Value: v}, nil
}
