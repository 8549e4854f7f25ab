package attest

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"fmt"

	"github.com/cloister-dev/cloister/evidence/pcs"
)

// sgxCollateralClaim builds MAA's x-ms-sgx-collateral object: lowercase hex
// SHA-256 digests identifying the evidence and the DCAP collateral the
// verdict rests on (docs/maa-contract.md §6 defines each member). submitted
// is the decoded quote / report member exactly as the client sent it, so a
// client can recompute quotehash from its own bytes. b is the bundle
// evidence.Verify accepted for this quote, or nil when no collateral was
// used (TCB evaluation skipped), in which case only quotehash is stated:
// naming collateral that played no part would be a false statement.
func sgxCollateralClaim(submitted []byte, b *pcs.Bundle) (map[string]any, error) {
	out := map[string]any{"quotehash": digest(submitted)}
	if b == nil {
		return out, nil
	}
	// The bundle has just passed verification; decoding it again gives
	// the exact bytes that were checked (signed texts byte-exact, DER).
	d, err := b.DecodeUnverified()
	if err != nil {
		return nil, fmt.Errorf("collateral digests: %w", err)
	}
	out["tcbinfohash"] = digest(d.TCBInfo)
	out["tcbinfocertshash"] = digest(chainDER(d.TCBInfoChain))
	out["qeidhash"] = digest(d.QEIdentity)
	out["qeidcertshash"] = digest(chainDER(d.QEIdentityChain))
	// Both issuing chains end in the Intel SGX Root CA, and the CRL that
	// covers their certificates is the Root CA CRL; without one (an
	// AllowMissingCRL verdict) no CRL was used and none is named.
	if d.RootCACRL != nil {
		out["tcbinfocrlhash"] = digest(d.RootCACRL)
		out["qeidcrlhash"] = digest(d.RootCACRL)
	}
	return out, nil
}

func digest(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// chainDER is the certificates' DER encodings concatenated in chain order:
// a canonical form of an issuer chain, unlike its PEM text, whose line
// breaks and headers vary between tools.
func chainDER(certs []*x509.Certificate) []byte {
	var out []byte
	for _, c := range certs {
		out = append(out, c.Raw...)
	}
	return out
}
