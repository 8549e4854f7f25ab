package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const (
	ledgerDir        = "../../testdata/ledger/"
	aclReceipt       = ledgerDir + "acl_get_receipt_8.29569.json"
	aclServiceCert   = ledgerDir + "acl_get_receipt_8.29569_service_cert.pem"
	aclReceipt3      = ledgerDir + "acl_receipt_3_p384.json"
	aclServiceCert3  = ledgerDir + "acl_receipt_3_service_cert.pem"
	aclClaims3       = ledgerDir + "acl_receipt_3_claims_ledger_entry.json"
	aclClaimsDigest3 = ledgerDir + "acl_receipt_3_claims_digest.json"
)

// Exit codes of ledger verify-receipt: 0 verified, 1 refused (bad receipt,
// wrong service, wrong claims, unreadable file), 2 usage. Stdout carries the
// result only on exit 0; the error names the step and the field.
func TestLedgerVerifyReceiptExitCodes(t *testing.T) {
	dir := t.TempDir()
	tampered := filepath.Join(dir, "tampered.json")
	raw, err := os.ReadFile(aclReceipt)
	if err != nil {
		t.Fatal(err)
	}
	// The last proof hash, one digit changed: the root changes, the signature fails.
	bad := bytes.Replace(raw, []byte("22f26d7be153"), []byte("22f26d7be154"), 1)
	if bytes.Equal(bad, raw) {
		t.Fatal("tamper did not apply")
	}
	if err := os.WriteFile(tampered, bad, 0o600); err != nil {
		t.Fatal(err)
	}
	junk := filepath.Join(dir, "junk.json")
	if err := os.WriteFile(junk, []byte(`{"cert": 5}`), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		args   []string
		code   int
		stdout string
		stderr string
	}{
		{"ACL response", []string{aclReceipt, "--service-cert", aclServiceCert}, 0, "receipt verified: transaction 8.29569", ""},
		{"bare receipt, LedgerEntryV1 claims", []string{aclReceipt3, "--service-cert", aclServiceCert3, "--claims", aclClaims3}, 0, "application claims checked, from --claims", ""},
		{"bare receipt, ClaimDigest claims", []string{"--claims", aclClaimsDigest3, aclReceipt3, "--service-cert", aclServiceCert3}, 0, "d08d8764437d09b2d4d07d52293cddaf40f44a3ea2176a0528819a80002df9f6", ""},
		{"other service certificate", []string{aclReceipt, "--service-cert", aclServiceCert3}, 1, "", "receipt: endorsement: service certificate: does not endorse cert"},
		{"tampered proof", []string{tampered, "--service-cert", aclServiceCert}, 1, "", "receipt: signature: signature:"},
		{"claims of another entry", []string{aclReceipt, "--service-cert", aclServiceCert, "--claims", aclClaims3}, 1, "", "receipt: application claims"},
		{"malformed receipt", []string{junk, "--service-cert", aclServiceCert}, 1, "", "junk.json: receipt: parse: cert: want a string"},
		{"malformed claims", []string{aclReceipt3, "--service-cert", aclServiceCert3, "--claims", junk}, 1, "", "--claims " + junk + ": receipt: application claims"},
		{"service certificate not PEM", []string{aclReceipt, "--service-cert", aclReceipt}, 1, "", "receipt: service certificate"},
		{"receipt file missing", []string{filepath.Join(dir, "nope.json"), "--service-cert", aclServiceCert}, 1, "", "reading the receipt"},
		{"service certificate missing", []string{aclReceipt, "--service-cert", filepath.Join(dir, "nope.pem")}, 1, "", "reading --service-cert"},
		{"no --service-cert", []string{aclReceipt}, 2, "", "missing --service-cert"},
		{"no receipt", []string{"--service-cert", aclServiceCert}, 2, "", "missing RECEIPT.json"},
		{"two receipts", []string{aclReceipt, aclReceipt3, "--service-cert", aclServiceCert}, 2, "", "want one RECEIPT.json"},
		{"bad flag", []string{aclReceipt, "--service-cert", aclServiceCert, "--bogus"}, 2, "", "-bogus"},
		{"both from stdin", []string{"-", "--service-cert", aclServiceCert, "--claims", "-"}, 2, "", "cannot both be standard input"},
		{"help", []string{"--help"}, 0, "--service-cert PEM", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := runCLI(t, append([]string{"ledger", "verify-receipt"}, tc.args...)...)
			if r.code != tc.code {
				t.Fatalf("exit %d, want %d\n%s", r.code, tc.code, r)
			}
			if tc.stdout == "" && r.stdout != "" || !strings.Contains(r.stdout, tc.stdout) {
				t.Errorf("stdout, want %q\n%s", tc.stdout, r)
			}
			if tc.stderr == "" && r.stderr != "" || !strings.Contains(r.stderr, tc.stderr) {
				t.Errorf("stderr, want %q\n%s", tc.stderr, r)
			}
		})
	}
}

// --json prints the result object (its field names are a contract), and
// claims carried in the response itself are checked when --claims is absent.
func TestLedgerVerifyReceiptJSON(t *testing.T) {
	claims, err := os.ReadFile(aclClaims3)
	if err != nil {
		t.Fatal(err)
	}
	inner, err := os.ReadFile(aclReceipt3)
	if err != nil {
		t.Fatal(err)
	}
	resp := `{"applicationClaims": ` + string(claims) + `, "receipt": ` + string(inner) + `, "state": "Ready", "transactionId": "2.13"}`
	r := runCLIStdin(t, fixedNow, strings.NewReader(resp), "ledger", "verify-receipt", "-", "--service-cert", aclServiceCert3, "--json")
	if r.code != 0 {
		t.Fatal(r)
	}
	var out map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &out); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"verified":                   true,
		"transaction_id":             "2.13",
		"node_id":                    "0db9a22e9301d1167a2a81596fa234642ad24bc742451a415b8d653af056795c",
		"node_id_in_receipt":         true,
		"claims_digest":              "d08d8764437d09b2d4d07d52293cddaf40f44a3ea2176a0528819a80002df9f6",
		"application_claims_checked": true,
		"application_claims_source":  "response",
		"service_endorsements":       float64(0),
	}
	for k, v := range want {
		if out[k] != v {
			t.Errorf("%s = %v, want %v", k, out[k], v)
		}
	}
	for _, k := range []string{"root", "leaf"} {
		if s, _ := out[k].(string); len(s) != 64 {
			t.Errorf("%s = %v, want 64 hex digits", k, out[k])
		}
	}
	// The response's claims, changed, are refused like --claims would be.
	bad := strings.Replace(resp, "Hello world", "Hello there", 1)
	r = runCLIStdin(t, fixedNow, strings.NewReader(bad), "ledger", "verify-receipt", "-", "--service-cert", aclServiceCert3)
	if r.code != 1 || !strings.Contains(r.stderr, "(stdin): receipt: application claims") {
		t.Errorf("tampered response claims: %s", r)
	}
}
