package pcs

import (
	"encoding/hex"
	"encoding/pem"
	"strings"
	"testing"
)

// TestDecodeMalformed breaks one field of a real bundle at a time and checks
// that DecodeUnverified names the field and the fault.
func TestDecodeMalformed(t *testing.T) {
	valid, err := ParseBundle(readVector(t, sgxBundleFile))
	if err != nil {
		t.Fatal(err)
	}
	chain := valid.TCBInfoIssuerChain
	certs := strings.SplitAfter(strings.TrimSpace(chain), "-----END CERTIFICATE-----")[:2]
	crlDERBytes, err := hex.DecodeString(valid.PCKCRL)
	if err != nil {
		t.Fatal(err)
	}
	crlPEM := string(pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: crlDERBytes}))
	certDER, _ := pem.Decode([]byte(chain))

	tests := []struct {
		name string
		edit func(b *Bundle)
		want string // "" means Decode must succeed
	}{
		{"valid", func(b *Bundle) {}, ""},
		// Signatures.
		{"signature too long", func(b *Bundle) { b.TCBInfoSignature += "00" }, "pcs: tcb_info_signature: want 128 hex characters, got 130"},
		{"signature too short", func(b *Bundle) { b.QEIdentitySignature = b.QEIdentitySignature[:126] }, "pcs: qe_identity_signature: want 128 hex characters, got 126"},
		{"signature not hex", func(b *Bundle) { b.TCBInfoSignature = "zz" + b.TCBInfoSignature[2:] }, "pcs: tcb_info_signature: not hex"},
		{"signature with newline", func(b *Bundle) { b.TCBInfoSignature = b.TCBInfoSignature[:127] + "\n" }, "pcs: tcb_info_signature: not hex"},
		{"signature uppercase", func(b *Bundle) { b.TCBInfoSignature = strings.ToUpper(b.TCBInfoSignature) }, ""},
		{"signature missing", func(b *Bundle) { b.QEIdentitySignature = "" }, "pcs: qe_identity_signature: want 128 hex characters, got 0"},
		// Signed text.
		{"tcb_info missing", func(b *Bundle) { b.TCBInfo = "" }, "pcs: tcb_info: missing"},
		{"tcb_info leading space", func(b *Bundle) { b.TCBInfo = " " + b.TCBInfo }, "pcs: tcb_info: want a JSON object with nothing before or after it"},
		{"tcb_info trailing newline", func(b *Bundle) { b.TCBInfo += "\n" }, "pcs: tcb_info: want a JSON object"},
		{"tcb_info array", func(b *Bundle) { b.TCBInfo = "[]" }, "pcs: tcb_info: want a JSON object"},
		{"qe_identity invalid JSON", func(b *Bundle) { b.QEIdentity = `{"id":}` }, "pcs: qe_identity: not valid JSON"},
		{"tcb_info oversized", func(b *Bundle) { b.TCBInfo = "{" + strings.Repeat(" ", maxSignedTextSize) + "}" }, "pcs: tcb_info: 262146 bytes, larger than the 262144-byte limit"},
		// PEM chains.
		{"chain missing", func(b *Bundle) { b.TCBInfoIssuerChain = "" }, "pcs: tcb_info_issuer_chain: missing"},
		{"chain only whitespace", func(b *Bundle) { b.TCBInfoIssuerChain = "\n \n" }, "pcs: tcb_info_issuer_chain: no certificates"},
		{"chain junk before", func(b *Bundle) { b.TCBInfoIssuerChain = "junk\n" + chain }, "pcs: tcb_info_issuer_chain: unexpected data at byte 0, want a PEM block"},
		{"chain junk between", func(b *Bundle) { b.QEIdentityIssuerChain = certs[0] + "\njunk\n" + certs[1] }, "pcs: qe_identity_issuer_chain: unexpected data at byte"},
		{"chain junk after", func(b *Bundle) { b.TCBInfoIssuerChain = chain + "junk" }, "pcs: tcb_info_issuer_chain: unexpected data at byte 1892"},
		{"chain trailing NUL", func(b *Bundle) { b.TCBInfoIssuerChain = chain + "\x00" }, ""},
		{"chain trailing NUL and newline", func(b *Bundle) { b.TCBInfoIssuerChain = chain + "\x00\n" }, ""},
		{"chain NUL then junk", func(b *Bundle) { b.TCBInfoIssuerChain = chain + "\x00x" }, "pcs: tcb_info_issuer_chain: unexpected data at byte 1892"},
		{"chain NUL only", func(b *Bundle) { b.TCBInfoIssuerChain = "\x00" }, "pcs: tcb_info_issuer_chain: unexpected data at byte 0"},
		{"chain CRLF", func(b *Bundle) { b.TCBInfoIssuerChain = strings.ReplaceAll(chain, "\n", "\r\n") }, ""},
		{"chain wrong block type", func(b *Bundle) {
			b.TCBInfoIssuerChain = string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: certDER.Bytes}))
		}, `pcs: tcb_info_issuer_chain: PEM block 0 is "PRIVATE KEY", want CERTIFICATE`},
		{"chain CRL block", func(b *Bundle) { b.PCKCRLIssuerChain = certs[0] + "\n" + crlPEM }, `pcs: pck_crl_issuer_chain: PEM block 1 is "X509 CRL", want CERTIFICATE`},
		{"chain PEM headers", func(b *Bundle) {
			b.TCBInfoIssuerChain = string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Headers: map[string]string{"Proc-Type": "4,ENCRYPTED"}, Bytes: certDER.Bytes}))
		}, "pcs: tcb_info_issuer_chain: PEM block 0 has headers"},
		{"chain too many certificates", func(b *Bundle) { b.TCBInfoIssuerChain = strings.Repeat(chain, 3) }, "pcs: tcb_info_issuer_chain: more than 4 certificates"},
		{"chain four certificates", func(b *Bundle) { b.TCBInfoIssuerChain = strings.Repeat(chain, 2) }, ""},
		{"chain broken base64", func(b *Bundle) { b.TCBInfoIssuerChain = strings.Replace(chain, "MII", "M!I", 1) }, "pcs: tcb_info_issuer_chain: PEM block 0 at byte 0 is malformed"},
		{"chain unterminated block", func(b *Bundle) {
			b.TCBInfoIssuerChain = strings.TrimSuffix(strings.TrimSpace(chain), "-----END CERTIFICATE-----")
		}, "pcs: tcb_info_issuer_chain: PEM block 1 at byte"},
		{"chain not a certificate", func(b *Bundle) {
			b.TCBInfoIssuerChain = string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte{0x30, 0x00}}))
		}, "pcs: tcb_info_issuer_chain: certificate 0: x509: "},
		// CRLs.
		{"crl odd hex", func(b *Bundle) { b.PCKCRL += "0" }, "pcs: pck_crl: odd number of hex characters (605)"},
		{"crl not hex", func(b *Bundle) { b.RootCACRL = "g" + b.RootCACRL[1:] }, "pcs: root_ca_crl: not hex"},
		{"crl uppercase hex", func(b *Bundle) { b.PCKCRL = strings.ToUpper(b.PCKCRL) }, ""},
		{"crl trailing bytes", func(b *Bundle) { b.PCKCRL += "00" }, "pcs: pck_crl: 1 bytes of trailing data after the DER CRL"},
		{"crl not DER", func(b *Bundle) { b.RootCACRL = "0102" }, "pcs: root_ca_crl: not a DER CRL"},
		{"crl certificate instead", func(b *Bundle) { b.RootCACRL = hex.EncodeToString(certDER.Bytes) }, "pcs: root_ca_crl: not a DER CRL"},
		{"crl PEM", func(b *Bundle) { b.PCKCRL = crlPEM }, ""},
		{"crl PEM wrong type", func(b *Bundle) { b.PCKCRL = strings.ReplaceAll(crlPEM, "X509 CRL", "CRL") }, `pcs: pck_crl: PEM block is "CRL", want X509 CRL`},
		{"crl PEM junk after", func(b *Bundle) { b.PCKCRL = crlPEM + "x" }, "pcs: pck_crl: unexpected data after the PEM block"},
		{"crl two PEM blocks", func(b *Bundle) { b.PCKCRL = crlPEM + crlPEM }, "pcs: pck_crl: want exactly one well-formed PEM block"},
		{"crl oversized", func(b *Bundle) { b.PCKCRL = strings.Repeat("00", maxCRLSize+1) }, "pcs: pck_crl: 524290 hex characters, more than the 262144-byte limit"},
		{"pck crl without chain", func(b *Bundle) { b.PCKCRLIssuerChain = "" }, "pcs: pck_crl_issuer_chain: missing (required when pck_crl is set)"},
		{"no CRLs at all", func(b *Bundle) { b.PCKCRL, b.PCKCRLIssuerChain, b.RootCACRL = "", "", "" }, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := *valid
			tt.edit(&b)
			d, err := b.DecodeUnverified()
			if tt.want == "" {
				if err != nil {
					t.Fatalf("DecodeUnverified: %v", err)
				}
				return
			}
			if d != nil {
				t.Error("got UnverifiedCollateral with an error")
			}
			wantMalformed(t, err, tt.want)
		})
	}
}

// TestDecodeCopies checks that UnverifiedCollateral does not alias the bundle: callers
// may keep the bytes while the bundle is reused.
func TestDecodeCopies(t *testing.T) {
	b, err := ParseBundle(readVector(t, tdxBundleFile))
	if err != nil {
		t.Fatal(err)
	}
	d, err := b.DecodeUnverified()
	if err != nil {
		t.Fatal(err)
	}
	d.TCBInfo[0] = 'X'
	if b.TCBInfo[0] != '{' {
		t.Error("UnverifiedCollateral.TCBInfo aliases the bundle")
	}
}
