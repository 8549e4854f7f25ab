package kbs

import (
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func readVector(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Real SEV-SNP evidence (go-sev-guest's Milan report, raw with its VCEK and
// ASK/ARK, and the same report as a configfs-tsm report) goes through
// evidence/ in an snp session: it verifies, and is then refused only
// because its report data (0102030405…, from before this session) does
// not bind this session's nonce and key. Garbled, it is refused at
// verification instead.
func TestSNPEvidenceForms(t *testing.T) {
	e := newEnv(t)
	report := readVector(t, "snp/attestation.bin")
	vcek := readVector(t, "snp/vcek.testcer")
	chain := readVector(t, "snp/ask_ark_milan.pem")
	tsm := readVector(t, "snp/veraison-sevsnp-tsm-report.json")
	b64 := base64.StdEncoding.EncodeToString
	garbled := append([]byte(nil), report...)
	garbled[0x90] ^= 1 // a measurement byte: the signature no longer holds
	for _, tc := range []struct {
		name    string
		primary map[string]any
		detail  string
	}{
		{"raw report with VCEK", map[string]any{"report": b64(report), "vcek": b64(vcek)}, "does not bind"},
		{"raw report with VCEK and chain", map[string]any{"report": b64(report), "vcek": b64(vcek), "cert_chain": string(chain)}, "does not bind"},
		{"configfs-tsm report", map[string]any{"tsm": b64(tsm)}, "does not bind"},
		{"garbled raw report", map[string]any{"report": b64(garbled), "vcek": b64(vcek)}, "evidence rejected"},
	} {
		c := e.client(TeeSNP)
		c.auth()
		code, body := c.attest(attestationJSON(RuntimeData{Nonce: c.nonce, TeePubKey: c.pub}, tc.primary, ""))
		wantError(t, tc.name, code, body, 401, "AttestationError")
		if !strings.Contains(string(body), tc.detail) {
			t.Errorf("%s: %s, want %q", tc.name, body, tc.detail)
		}
	}
}
