package ledgerclient_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/cloister-dev/cloister/ledger/ledgerclient"
	"github.com/cloister-dev/cloister/ledger/ledgertest"
)

// TestListFollowsPages: 250 entries come back in order across pages.
func TestListFollowsPages(t *testing.T) {
	ctx := context.Background()
	c, err := ledgerclient.New(ledgertest.Start(t).Client)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for i := 0; i < 250; i++ {
		tx, err := c.Append(ctx, "p", fmt.Sprint(i))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, tx.String())
	}
	got, err := c.List(ctx, "p", "", "")
	if err != nil || len(got) != len(ids) {
		t.Fatalf("%d entries, %v", len(got), err)
	}
	for i, e := range got {
		if e.TransactionID != ids[i] || e.Contents != fmt.Sprint(i) {
			t.Fatalf("entry %d: %+v", i, e)
		}
	}
	var se *ledgerclient.StatusError
	if _, err := c.Do(ctx, "GET", "/app/transactions/2.999999/status", nil, nil); !errors.As(err, &se) || se.Status != 404 || se.Code == "" {
		t.Fatalf("missing transaction: %v", err)
	}
}

// TestAuditRefusesForeignRecords: a record the service did not write
// (not JSON, an unknown kind, a token naming no attestation) fails the
// audit, naming the transaction.
func TestAuditRefusesForeignRecords(t *testing.T) {
	ctx := context.Background()
	for _, bad := range []string{
		`not json`,
		`{"kind":"other"}`,
		`{"kind":"token","attestation":"2.9999","tokenDigest":"00"}`,
	} {
		c, err := ledgerclient.New(ledgertest.Start(t).Client)
		if err != nil {
			t.Fatal(err)
		}
		tr := &ledgerclient.Transparency{Client: c, Collection: ledgerclient.AttestCollection}
		tx, err := tr.RecordAttestation(ctx, [32]byte{1}, [32]byte{2})
		if err != nil {
			t.Fatal(err)
		}
		if err := tr.RecordToken(ctx, tx, [32]byte{3}); err != nil {
			t.Fatal(err)
		}
		if got, err := ledgerclient.Audit(ctx, c, ledgerclient.AttestCollection, "", ""); err != nil || len(got) != 1 || got[0].TokenTxID == "" {
			t.Fatalf("clean audit: %v %v", got, err)
		}
		btx, err := c.Append(ctx, ledgerclient.AttestCollection, bad)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ledgerclient.Audit(ctx, c, ledgerclient.AttestCollection, "", ""); err == nil || !strings.Contains(err.Error(), btx.String()) && !strings.Contains(err.Error(), "2.9999") {
			t.Fatalf("%s: audit: %v", bad, err)
		}
	}
}

// TestAuditRefusesMalformedRecords: records of a known kind whose fields
// are not what the service writes (digests that are not 64 lowercase hex
// digits, a token without its digest, fields of the other kind) fail the
// audit too, naming the transaction: they are not listed as attestations.
func TestAuditRefusesMalformedRecords(t *testing.T) {
	ctx := context.Background()
	c, err := ledgerclient.New(ledgertest.Start(t).Client)
	if err != nil {
		t.Fatal(err)
	}
	hex64 := strings.Repeat("ab", 32)
	for i, bad := range []string{
		`{"kind":"attestation"}`,
		`{"kind":"attestation","claimsDigest":"` + hex64 + `"}`,
		`{"kind":"attestation","claimsDigest":"xyz","evidenceDigest":"` + hex64 + `"}`,
		`{"kind":"attestation","claimsDigest":"` + strings.ToUpper(hex64) + `","evidenceDigest":"` + hex64 + `"}`,
		`{"kind":"attestation","claimsDigest":"` + hex64 + `","evidenceDigest":"` + hex64 + `","tokenDigest":"` + hex64 + `"}`,
		`{"kind":"token","attestation":"ATT"}`,
		`{"kind":"token","attestation":"ATT","tokenDigest":"00"}`,
		`{"kind":"token","attestation":"ATT","tokenDigest":"` + hex64 + `","claimsDigest":"` + hex64 + `"}`,
	} {
		// Each in its own collection, after a well-formed attestation
		// (which a token record names as ATT).
		col := fmt.Sprintf("audit-%d", i)
		tr := &ledgerclient.Transparency{Client: c, Collection: col}
		att, err := tr.RecordAttestation(ctx, [32]byte{1}, [32]byte{2})
		if err != nil {
			t.Fatal(err)
		}
		if got, err := ledgerclient.Audit(ctx, c, col, "", ""); err != nil || len(got) != 1 {
			t.Fatalf("clean audit: %v %v", got, err)
		}
		bad = strings.ReplaceAll(bad, "ATT", att)
		btx, err := c.Append(ctx, col, bad)
		if err != nil {
			t.Fatal(err)
		}
		if got, err := ledgerclient.Audit(ctx, c, col, "", ""); err == nil || !strings.Contains(err.Error(), btx.String()) {
			t.Errorf("%s: audit accepted it (%v) or did not name %s: %v", bad, got, btx, err)
		}
	}
}
