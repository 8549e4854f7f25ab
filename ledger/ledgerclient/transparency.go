package ledgerclient

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"

	"github.com/cloister-dev/cloister/ledger"
)

// AttestCollection is the collection the attestation service's records go to.
const AttestCollection = "cloister-attestations"

// Record is one transparency record (the contents of a ledger entry, JSON).
type Record struct {
	// Kind is "attestation" or "token".
	Kind string `json:"kind"`
	// ClaimsDigest and EvidenceDigest (attestation): hex SHA-256 of the
	// token's claims (attest.ClaimsDigest) and of the evidence.
	ClaimsDigest   string `json:"claimsDigest,omitempty"`
	EvidenceDigest string `json:"evidenceDigest,omitempty"`
	// Attestation (token): the transaction id of the attestation record,
	// which the token names in x-cloister-ledger-txid.
	Attestation string `json:"attestation,omitempty"`
	// TokenDigest (token): hex SHA-256 of the token as issued.
	TokenDigest string `json:"tokenDigest,omitempty"`
}

// Transparency is attest.Transparency over a ledger: each attestation and
// each token is one entry of Collection.
type Transparency struct {
	Client     *Client
	Collection string
}

func (t *Transparency) append(ctx context.Context, r Record) (string, error) {
	b, _ := json.Marshal(r)
	tx, err := t.Client.Append(ctx, t.Collection, string(b))
	if err != nil {
		return "", err
	}
	return tx.String(), nil
}

// RecordAttestation implements attest.Transparency.
func (t *Transparency) RecordAttestation(ctx context.Context, claimsDigest, evidenceDigest [32]byte) (string, error) {
	return t.append(ctx, Record{Kind: "attestation", ClaimsDigest: hex.EncodeToString(claimsDigest[:]), EvidenceDigest: hex.EncodeToString(evidenceDigest[:])})
}

// RecordToken implements attest.Transparency.
func (t *Transparency) RecordToken(ctx context.Context, txid string, tokenDigest [32]byte) error {
	_, err := t.append(ctx, Record{Kind: "token", Attestation: txid, TokenDigest: hex.EncodeToString(tokenDigest[:])})
	return err
}

// Attested is one attestation as the audit sees it.
type Attested struct {
	TxID           string `json:"transactionId"`
	ClaimsDigest   string `json:"claimsDigest"`
	EvidenceDigest string `json:"evidenceDigest"`
	// TokenTxID and TokenDigest are empty when no token record follows
	// (the service stopped between the two records: no token was returned).
	TokenTxID   string `json:"tokenTransactionId,omitempty"`
	TokenDigest string `json:"tokenDigest,omitempty"`
}

// check says whether r has exactly the fields the service writes for its
// kind, in the form it writes them (digests as 64 lowercase hex digits):
// anything else was written by someone else.
func (r *Record) check() error {
	var must, mustNot map[string]string
	switch r.Kind {
	case "attestation":
		must = map[string]string{"claimsDigest": r.ClaimsDigest, "evidenceDigest": r.EvidenceDigest}
		mustNot = map[string]string{"attestation": r.Attestation, "tokenDigest": r.TokenDigest}
	case "token":
		if _, err := ledger.ParseTxID(r.Attestation); err != nil {
			return fmt.Errorf("attestation: %w", err)
		}
		must = map[string]string{"tokenDigest": r.TokenDigest}
		mustNot = map[string]string{"claimsDigest": r.ClaimsDigest, "evidenceDigest": r.EvidenceDigest}
	default:
		return fmt.Errorf("unknown record kind %q", r.Kind)
	}
	for name, v := range must {
		if !isDigest(v) {
			return fmt.Errorf("%s %q: want 64 lowercase hex digits", name, v)
		}
	}
	for name, v := range mustNot {
		if v != "" {
			return fmt.Errorf("a %s record has a %s", r.Kind, name)
		}
	}
	return nil
}

func isDigest(s string) bool {
	if len(s) != 64 {
		return false
	}
	for _, c := range s {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// Audit lists the attestations recorded in collection with ids in
// [from, to] (empty: no bound), each with its token. A record that does
// not parse, or a token record naming no attestation of the range, is an
// error: the ledger holds something the service did not write.
func Audit(ctx context.Context, c *Client, collection, from, to string) ([]Attested, error) {
	entries, err := c.List(ctx, collection, from, to)
	if err != nil {
		return nil, err
	}
	var out []Attested
	index := map[string]int{}
	for _, e := range entries {
		var r Record
		if err := json.Unmarshal([]byte(e.Contents), &r); err != nil {
			return nil, fmt.Errorf("ledgerclient: audit: %s is not a transparency record: %w", e.TransactionID, err)
		}
		if err := r.check(); err != nil {
			return nil, fmt.Errorf("ledgerclient: audit: %s is not a record the service writes: %w", e.TransactionID, err)
		}
		switch r.Kind {
		case "attestation":
			index[e.TransactionID] = len(out)
			out = append(out, Attested{TxID: e.TransactionID, ClaimsDigest: r.ClaimsDigest, EvidenceDigest: r.EvidenceDigest})
		case "token":
			i, ok := index[r.Attestation]
			if !ok {
				if from == "" {
					return nil, fmt.Errorf("ledgerclient: audit: token record %s names attestation %q, which is not recorded", e.TransactionID, r.Attestation)
				}
				continue // its attestation precedes the range
			}
			if out[i].TokenTxID != "" {
				return nil, fmt.Errorf("ledgerclient: audit: attestation %s has two token records (%s, %s)", r.Attestation, out[i].TokenTxID, e.TransactionID)
			}
			out[i].TokenTxID, out[i].TokenDigest = e.TransactionID, r.TokenDigest
		default:
			return nil, fmt.Errorf("ledgerclient: audit: %s: unknown record kind %q", e.TransactionID, r.Kind)
		}
	}
	return out, nil
}
