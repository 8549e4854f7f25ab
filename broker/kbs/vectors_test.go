package kbs

import (
	"context"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
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

// Policies see claim numbers exactly. SEV-SNP's TCB versions are packed
// uint64s (microcode in the top byte, bootloader in the lowest): as a
// float64 the real Milan report's reported_tcb 0x4405000000000002 loses
// its bootloader SVN, so a policy pinning or bounding it judged another
// TCB than the one attested. Through a session grant and through the
// bearer token made from it, the policy must see the exact value.
func TestPolicySeesExactSNPTCB(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	c, err := e.srv.verify(ctx, &decodedEvidence{raw: readVector(t, "snp/attestation.bin"), vcek: readVector(t, "snp/vcek.testcer")})
	if err != nil {
		t.Fatal(err)
	}
	exact := strconv.FormatUint(c.ReportedTCB, 10)
	if c.ReportedTCB != 0x4405000000000002 {
		t.Fatalf("the vector's reported_tcb is %#x; this test is about 0x4405000000000002", c.ReportedTCB)
	}
	e.setPolicy("", "package cloister\n\nallow if input.claims.reported_tcb == "+exact+"\n")
	m, err := claimsMap(c)
	if err != nil {
		t.Fatal(err)
	}
	_, pub := newECKey(t, elliptic.P256())
	teeKey, _ := pub.Parse()
	g, err := newGrant(TeeSNP, m, teeKey)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := e.srv.signer.issue(rand.Reader, e.srv.cfg.Issuer, e.clock.now(), time.Minute, TeeSNP, pub, g.claimsJSON)
	if err != nil {
		t.Fatal(err)
	}
	bg, err := e.srv.signer.check(tok, e.srv.cfg.Issuer, e.clock.now())
	if err != nil {
		t.Fatal(err)
	}
	for name, gr := range map[string]*grant{"session": g, "bearer token": bg} {
		allow, _, err := e.srv.decide(ctx, gr, "r/t/x")
		if err != nil || !allow {
			t.Errorf("%s: reported_tcb == %s: allow %v, %v (the policy saw %v)", name, exact, allow, err, gr.claims["reported_tcb"])
		}
	}
	if g.input != bg.input {
		t.Error("the session and its token do not share policy decisions")
	}
}
