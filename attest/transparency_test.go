package attest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/cloister-dev/cloister/ledger/ledgerclient"
	"github.com/cloister-dev/cloister/ledger/ledgertest"
)

// TestTransparencyRecordsEveryToken runs the service against a real
// ledger (in process, attested TLS): a token names its attestation record
// in x-cloister-ledger-txid; the audit finds that record with the digests
// of the token's claims and of the evidence, and a token record with the
// token's digest. With the ledger gone the service issues no token (503).
func TestTransparencyRecordsEveryToken(t *testing.T) {
	ctx := context.Background()
	f := getFixture(t)
	l := ledgertest.Start(t)
	lc, err := ledgerclient.New(l.Client)
	if err != nil {
		t.Fatal(err)
	}
	s := newService(t, f, "")
	s.cfg.Transparency = &ledgerclient.Transparency{Client: lc, Collection: ledgerclient.AttestCollection}
	srv := httptest.NewServer(s)
	defer srv.Close()

	// Numbers as the client wrote them, above 2^53 and not in Go's own
	// form: the digest covers them exactly as the token carries them.
	runtime := []byte(`{"k":1,"big":18446744073709551615,"f":1.0}`)
	q := quote(t, f, runtime, false)
	var tokens []string
	for i := 0; i < 3; i++ {
		resp, err := http.Post(srv.URL+"/attest/SgxEnclave"+av, "application/json", strings.NewReader(attestBody(q, runtime, "")))
		if err != nil {
			t.Fatal(err)
		}
		var out struct{ Token string }
		json.NewDecoder(resp.Body).Decode(&out)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("status %d", resp.StatusCode)
		}
		tokens = append(tokens, out.Token)
	}
	audit, err := ledgerclient.Audit(ctx, lc, ledgerclient.AttestCollection, "", "")
	if err != nil {
		t.Fatal(err)
	}
	if len(audit) != len(tokens) {
		t.Fatalf("%d attestations recorded, %d tokens issued", len(audit), len(tokens))
	}
	evDigest := sha256.Sum256(q)
	for i, tok := range tokens {
		payload, err := base64.RawURLEncoding.DecodeString(strings.Split(tok, ".")[1])
		if err != nil {
			t.Fatal(err)
		}
		// The audit's way (ClaimsDigest's doc): numbers as written.
		dec := json.NewDecoder(bytes.NewReader(payload))
		dec.UseNumber()
		var claims map[string]any
		if err := dec.Decode(&claims); err != nil {
			t.Fatal(err)
		}
		a := audit[i]
		if claims[ClaimLedgerTxID] != a.TxID {
			t.Fatalf("token %d names %v, record is %s", i, claims[ClaimLedgerTxID], a.TxID)
		}
		cd, _ := ClaimsDigest(claims)
		td := sha256.Sum256([]byte(tok))
		if a.ClaimsDigest != hex.EncodeToString(cd[:]) || a.EvidenceDigest != hex.EncodeToString(evDigest[:]) || a.TokenDigest != hex.EncodeToString(td[:]) || a.TokenTxID == "" {
			t.Fatalf("record %d does not match its token: %+v", i, a)
		}
	}

	// The ledger stops answering: fail closed.
	l.Server.Close()
	resp, err := http.Post(srv.URL+"/attest/SgxEnclave"+av, "application/json", strings.NewReader(attestBody(q, runtime, "")))
	if err != nil {
		t.Fatal(err)
	}
	var out map[string]any
	json.NewDecoder(resp.Body).Decode(&out)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || out["token"] != nil {
		t.Fatalf("without the ledger: %d %v", resp.StatusCode, out)
	}
}
