package ledger

import (
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
)

// TransactionReceipt is the body of GET /app/transactions/{id}/receipt in
// ACL's shape (api-version 2022-05-13): the receipt, its state and id,
// and the application claims (LedgerEntryV1) of an entry.
type TransactionReceipt struct {
	ApplicationClaims []ApplicationClaim `json:"applicationClaims,omitempty"`
	Receipt           *ReceiptContents   `json:"receipt,omitempty"`
	State             string             `json:"state"`
	TransactionID     string             `json:"transactionId"`
}

// ReceiptContents is ACL's receipt: hex digests, base64 DER signature,
// PEM node certificate.
type ReceiptContents struct {
	Cert                string             `json:"cert"`
	LeafComponents      ReceiptLeaf        `json:"leafComponents"`
	NodeID              string             `json:"nodeId"`
	Proof               []ReceiptProofStep `json:"proof"`
	ServiceEndorsements []string           `json:"serviceEndorsements"`
	Signature           string             `json:"signature"`
}

// ReceiptLeaf holds the leaf components, hex (commit evidence as text).
type ReceiptLeaf struct {
	ClaimsDigest   string `json:"claimsDigest"`
	CommitEvidence string `json:"commitEvidence"`
	WriteSetDigest string `json:"writeSetDigest"`
}

// ReceiptProofStep is one proof element: exactly one of Left and Right.
type ReceiptProofStep struct {
	Left  string `json:"left,omitempty"`
	Right string `json:"right,omitempty"`
}

// ApplicationClaim is ACL's application claim of kind LedgerEntry.
type ApplicationClaim struct {
	Kind        string            `json:"kind"`
	LedgerEntry *LedgerEntryClaim `json:"ledgerEntry,omitempty"`
}

// LedgerEntryClaim is a LedgerEntryV1 claim: with SecretKey (base64), a
// reader recomputes the claims digest from the entry.
type LedgerEntryClaim struct {
	CollectionID string `json:"collectionId"`
	Contents     string `json:"contents"`
	Protocol     string `json:"protocol"`
	SecretKey    string `json:"secretKey"`
}

// buildReceipt writes receipt parts in ACL's shape.
func buildReceipt(id *Identity, p ReceiptParts) *TransactionReceipt {
	proof := make([]ReceiptProofStep, len(p.Proof))
	for i, s := range p.Proof {
		if s.Left {
			proof[i].Left = hex.EncodeToString(s.Hash[:])
		} else {
			proof[i].Right = hex.EncodeToString(s.Hash[:])
		}
	}
	tr := &TransactionReceipt{
		Receipt: &ReceiptContents{
			Cert: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: id.NodeCert.Raw})),
			LeafComponents: ReceiptLeaf{
				ClaimsDigest:   hex.EncodeToString(p.Components.ClaimsDigest[:]),
				CommitEvidence: p.Components.CommitEvidence,
				WriteSetDigest: hex.EncodeToString(p.Components.WriteSetDigest[:]),
			},
			NodeID:              id.NodeID(),
			Proof:               proof,
			ServiceEndorsements: []string{},
			Signature:           base64.StdEncoding.EncodeToString(p.Signature.Signature),
		},
		State:         "Ready",
		TransactionID: p.Tx.String(),
	}
	if p.Entry.Kind == KindEntry {
		tr.ApplicationClaims = []ApplicationClaim{{
			Kind: "LedgerEntry",
			LedgerEntry: &LedgerEntryClaim{
				CollectionID: p.Entry.Collection, Contents: p.Entry.Contents,
				Protocol: ProtocolLedgerEntryV1, SecretKey: base64.StdEncoding.EncodeToString(p.ClaimKey[:]),
			},
		}}
	}
	return tr
}
