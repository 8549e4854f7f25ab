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
