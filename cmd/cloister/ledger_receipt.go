package main

import (
	"encoding/hex"
	"fmt"
	"strings"

	"github.com/cloister-dev/cloister/ledger/receipt"
)

const ledgerVerifyReceiptHelp = `Verify a ledger write transaction receipt offline: an Azure Confidential
Ledger (CCF) receipt, or one from Cloister's ledger, exactly as Microsoft's
"Verify Azure Confidential Ledger write transaction receipts" and CCF's
receipt documentation describe it (the azure-confidentialledger Python SDK is
the reference):

  leaf = SHA-256(writeSetDigest || SHA-256(commitEvidence) || claimsDigest),
  folded with the proof up to the Merkle root; the root's signature by the
  node certificate's key; nodeId = SHA-256 of that key; the node certificate
  endorsed by the service certificate, directly or through the receipt's
  serviceEndorsements (previous service identities).

RECEIPT.json is the body of GET /app/transactions/{id}/receipt ({"receipt":
{...}, "state", "transactionId"}) or the bare receipt object; "-" reads it
from standard input. --service-cert is the ledger's service identity
certificate (for ACL, the identity service's ledgerTlsCertificate): the one
thing trusted. --claims checks the application claims (the applicationClaims
array ACL returns, e.g. a LedgerEntryV1 claim with the entry's collectionId,
contents and secret key) against the receipt's claims digest; without it,
claims carried in the response itself are checked. Certificate validity
periods are not checked, as by the reference: a receipt proves a past
signature.

Prints what the receipt proves (exit 0), or the step that failed and where
(exit 1).
`

// Output of 'cloister ledger verify-receipt --json' (field names are a contract).
type receiptOutput struct {
	Verified        bool   `json:"verified"`
	TransactionID   string `json:"transaction_id"`
	Root            string `json:"root"`
	Leaf            string `json:"leaf"`
	NodeID          string `json:"node_id"`
	NodeIDInReceipt bool   `json:"node_id_in_receipt"`
	ClaimsDigest    string `json:"claims_digest"`
	ClaimsChecked   bool   `json:"application_claims_checked"`
	ClaimsSource    string `json:"application_claims_source,omitempty"`
	Endorsements    int    `json:"service_endorsements"`
}

func runLedgerVerifyReceipt(e *env, args []string) error {
	fs := newFlagSet("ledger verify-receipt", "RECEIPT.json --service-cert PEM [--claims FILE] [--json]", ledgerVerifyReceiptHelp)
	serviceCert := fs.String("service-cert", "", "the ledger's service identity certificate, a `PEM` file (the trust anchor)")
	claimsFile := fs.String("claims", "", "application claims `FILE`: a JSON array, or an object with applicationClaims")
	asJSON := fs.Bool("json", false, "print the result as JSON")
	name, err := parseOneArg(e, fs, args, "RECEIPT.json")
	if err != nil {
		return err
	}
	if *serviceCert == "" {
		return usagef("missing --service-cert PEM: the service certificate is what the receipt is verified against")
	}
	if name == "-" && *claimsFile == "-" {
		return usagef("RECEIPT.json and --claims cannot both be standard input")
	}
	raw, err := readBounded(e, name, receipt.MaxReceiptSize)
	if err != nil {
		return fmt.Errorf("reading the receipt: %w", err)
	}
	certPEM, err := readBounded(e, *serviceCert, 1<<20)
	if err != nil {
		return fmt.Errorf("reading --service-cert: %w", err)
	}
	where := name
	if name == "-" {
		where = "(stdin)"
	}
	resp, err := receipt.Parse(raw)
	if err != nil {
		return fmt.Errorf("%s: %w", where, err)
	}
	opts := receipt.Options{ServiceCert: certPEM}
	source := ""
	switch {
	case *claimsFile != "":
		data, err := readBounded(e, *claimsFile, receipt.MaxClaimsSize)
		if err != nil {
			return fmt.Errorf("reading --claims: %w", err)
		}
		if opts.Claims, err = receipt.ParseClaims(data); err != nil {
			return fmt.Errorf("--claims %s: %w", *claimsFile, err)
		}
		source = "--claims"
	case resp.ApplicationClaims != nil:
		opts.Claims, source = resp.ApplicationClaims, "response"
	}
	res, err := receipt.Verify(resp, opts)
	if err != nil {
		return fmt.Errorf("%s: %w", where, err)
	}
	out := receiptOutput{
		Verified:        true,
		TransactionID:   res.TransactionID,
		Root:            hex.EncodeToString(res.Root[:]),
		Leaf:            hex.EncodeToString(res.Leaf[:]),
		NodeID:          hex.EncodeToString(res.NodeID[:]),
		NodeIDInReceipt: res.NodeIDInReceipt,
		ClaimsDigest:    hex.EncodeToString(res.ClaimsDigest[:]),
		ClaimsChecked:   res.ClaimsChecked,
		ClaimsSource:    source,
		Endorsements:    res.Endorsements,
	}
	if *asJSON {
		return printJSON(e.stdout, out)
	}
	var b strings.Builder
	txid := out.TransactionID
	if txid == "" {
		txid = "(commit evidence not in CCF's form)"
	}
	fmt.Fprintf(&b, "receipt verified: transaction %s\n", txid)
	fmt.Fprintf(&b, "  root           %s\n", out.Root)
	fmt.Fprintf(&b, "  leaf           %s\n", out.Leaf)
	nodeNote := "the receipt names no nodeId"
	if out.NodeIDInReceipt {
		nodeNote = "matches the receipt's nodeId"
	}
	fmt.Fprintf(&b, "  node id        %s (%s)\n", out.NodeID, nodeNote)
	claimsNote := "no application claims given: not checked"
	if out.ClaimsChecked {
		claimsNote = "application claims checked, from " + source
	}
	fmt.Fprintf(&b, "  claims digest  %s (%s)\n", out.ClaimsDigest, claimsNote)
	fmt.Fprintf(&b, "  endorsed by    the service certificate, through %d previous service identities\n", out.Endorsements)
	_, err = fmt.Fprint(e.stdout, b.String())
	return err
}
