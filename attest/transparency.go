package attest

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"

	"github.com/golang-jwt/jwt/v5"
)

// ClaimLedgerTxID is the token claim that names the ledger transaction
// recording the token's attestation (issue 17, item 6).
const ClaimLedgerTxID = "x-cloister-ledger-txid"

// Transparency records what the service attests in an append-only ledger
// (ledger/ledgerclient.Transparency over `cloister ledger serve`), so that
// an auditor can list every token issued (`cloister ledger audit`). A
// token names its record in ClaimLedgerTxID, and is returned only after
// both of its records are durable: the service fails closed (503) when the
// ledger does not answer.
type Transparency interface {
	// RecordAttestation durably records an attestation: the SHA-256 of
	// the token's claims (JSON, keys sorted, without ClaimLedgerTxID) and
	// of the evidence; it returns the record's transaction id.
	RecordAttestation(ctx context.Context, claimsDigest, evidenceDigest [32]byte) (txid string, err error)
	// RecordToken durably records the SHA-256 of the token issued for the
	// attestation recorded at txid (the token holds txid, so its digest
	// can only be a second record).
	RecordToken(ctx context.Context, txid string, tokenDigest [32]byte) error
}

// ClaimsDigest is what RecordAttestation gets for claims: SHA-256 of their
// JSON (encoding/json sorts map keys) without ClaimLedgerTxID. An auditor
// holding a token recomputes it from the token's payload decoded with
// numbers as written (encoding/json's UseNumber): x-ms-runtime and
// x-ms-inittime keep the client's numbers exactly, which float64 would
// round above 2^53 and rewrite (1.0 as 1).
func ClaimsDigest(claims map[string]any) ([32]byte, error) {
	c := make(map[string]any, len(claims))
	for k, v := range claims {
		if k != ClaimLedgerTxID {
			c[k] = v
		}
	}
	b, err := json.Marshal(c)
	if err != nil {
		return [32]byte{}, fmt.Errorf("attest: claims digest: %w", err)
	}
	return sha256.Sum256(b), nil
}

// signAttested signs an attestation token; with Transparency it records
// the attestation first, puts its transaction id in the token, and
// records the token's digest before returning it.
func (s *Service) signAttested(ctx context.Context, claims jwt.MapClaims, evidence []byte) (string, error) {
	t := s.cfg.Transparency
	if t == nil {
		return s.sign(claims)
	}
	cd, err := ClaimsDigest(claims)
	if err != nil {
		return "", err
	}
	txid, err := t.RecordAttestation(ctx, cd, sha256.Sum256(evidence))
	if err != nil {
		return "", fmt.Errorf("recording the attestation in the ledger: %w", err)
	}
	claims[ClaimLedgerTxID] = txid
	tok, err := s.sign(claims)
	if err != nil {
		return "", err
	}
	if err := t.RecordToken(ctx, txid, sha256.Sum256([]byte(tok))); err != nil {
		return "", fmt.Errorf("recording the token in the ledger: %w", err)
	}
	return tok, nil
}
