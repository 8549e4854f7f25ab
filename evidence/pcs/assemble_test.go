package pcs

import (
	"bytes"
	"encoding/hex"
	"encoding/pem"
	"net/url"
	"testing"
)

// tdxFiles returns go-tdx-guest's saved PCS responses as BundleFiles.
func tdxFiles(t *testing.T) BundleFiles {
	return BundleFiles{
		TCBInfoResponse:       readVector(t, tdxTCBInfoFile),
		TCBInfoIssuerChain:    readVector(t, tdxTCBChainFile),
		QEIdentityResponse:    readVector(t, tdxQEIdentityFile),
		QEIdentityIssuerChain: readVector(t, tdxTCBChainFile),
		PCKCRL:                readVector(t, tdxPCKCRLFile),
		PCKCRLIssuerChain:     readVector(t, tdxPCKChainFile),
		RootCACRL:             readVector(t, tdxRootCRLFile),
	}
}

// TestAssembleBundleTDX builds a bundle from go-tdx-guest's files, in every
// accepted encoding of chains and CRLs, and checks that it is the bundle
// Fetch builds from the same responses: signed text byte-exact (the
// signatures verify), chains as PEM, CRLs as lowercase hex of the DER.
func TestAssembleBundleTDX(t *testing.T) {
	base := tdxFiles(t)
	pckDER := base.PCKCRL
	rootPEM := pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: base.RootCACRL})
	tests := []struct {
		name string
		edit func(f *BundleFiles)
	}{
		{"as saved", func(f *BundleFiles) {}},
		{"URL-encoded chains", func(f *BundleFiles) {
			f.TCBInfoIssuerChain = []byte(pcsEscape(string(f.TCBInfoIssuerChain)))
			f.QEIdentityIssuerChain = []byte(url.PathEscape(string(f.QEIdentityIssuerChain)) + "\n")
			f.PCKCRLIssuerChain = []byte(pcsEscape(string(f.PCKCRLIssuerChain)))
		}},
		{"PEM CRLs", func(f *BundleFiles) {
			f.PCKCRL = pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: pckDER})
			f.RootCACRL = rootPEM
		}},
		{"hex CRLs", func(f *BundleFiles) {
			f.PCKCRL = []byte(hex.EncodeToString(pckDER) + "\n")
			f.RootCACRL = bytes.ToUpper([]byte(hex.EncodeToString(f.RootCACRL)))
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			files := tdxFiles(t)
			tt.edit(&files)
			b, err := AssembleBundle(files)
			if err != nil {
				t.Fatal(err)
			}
			if got, want := b.TCBInfo, signedSlice(t, base.TCBInfoResponse, tcbInfoKey); got != string(want) || len(got) != tdxSignedTCBInfoLen {
				t.Errorf("tcb_info is %d bytes and not the signed slice", len(got))
			}
			if got, want := b.QEIdentity, signedSlice(t, base.QEIdentityResponse, enclaveIdentityKey); got != string(want) || len(got) != tdxSignedQEIdentityLen {
				t.Errorf("qe_identity is %d bytes and not the signed slice", len(got))
			}
			if b.TCBInfoIssuerChain != string(base.TCBInfoIssuerChain) || b.PCKCRLIssuerChain != string(base.PCKCRLIssuerChain) {
				t.Error("chains differ from the PEM files")
			}
			if b.PCKCRL != hex.EncodeToString(pckDER) || b.RootCACRL != hex.EncodeToString(base.RootCACRL) {
				t.Error("CRLs are not the lowercase hex of the DER")
			}
			d, err := b.DecodeUnverified()
			if err != nil {
				t.Fatal(err)
			}
			verifyRS(t, "tcb_info", d.TCBInfoChain[0], d.TCBInfo, d.TCBInfoSignature)
			verifyRS(t, "qe_identity", d.QEIdentityChain[0], d.QEIdentity, d.QEIdentitySignature)
			if err := parseCRL(t, "pck_crl", d.PCKCRL).CheckSignatureFrom(d.PCKCRLChain[0]); err != nil {
				t.Errorf("PCK CRL signature: %v", err)
			}
			if err := parseCRL(t, "root_ca_crl", d.RootCACRL).CheckSignatureFrom(d.PCKCRLChain[1]); err != nil {
				t.Errorf("root CRL signature: %v", err)
			}
			out, err := b.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			if b2, err := ParseBundle(out); err != nil || *b2 != *b {
				t.Errorf("ParseBundle(Marshal()) round trip failed: %v", err)
			}
		})
	}
}

// TestAssembleBundleOptionalCRLs: without CRL files the bundle has no CRL
// fields and still decodes.
func TestAssembleBundleOptionalCRLs(t *testing.T) {
	files := tdxFiles(t)
	files.PCKCRL, files.PCKCRLIssuerChain, files.RootCACRL = nil, nil, nil
	b, err := AssembleBundle(files)
	if err != nil {
		t.Fatal(err)
	}
	if b.PCKCRL != "" || b.PCKCRLIssuerChain != "" || b.RootCACRL != "" {
		t.Error("CRL fields set without CRL files")
	}
	if _, err := b.DecodeUnverified(); err != nil {
		t.Fatal(err)
	}
}

// TestAssembleBundleErrors: each broken file gives a typed error naming it.
func TestAssembleBundleErrors(t *testing.T) {
	tests := []struct {
		name string
		edit func(f *BundleFiles)
		want string
	}{
		{"tcb response missing", func(f *BundleFiles) { f.TCBInfoResponse = nil }, "pcs: tcbInfo response: truncated JSON"},
		{"responses swapped", func(f *BundleFiles) { f.TCBInfoResponse = f.QEIdentityResponse }, `pcs: tcbInfo response: unknown key "enclaveIdentity"`},
		{"qe response truncated", func(f *BundleFiles) { f.QEIdentityResponse = f.QEIdentityResponse[:300] }, "pcs: enclaveIdentity response: truncated JSON"},
		{"chain missing", func(f *BundleFiles) { f.QEIdentityIssuerChain = nil }, "pcs: qe_identity_issuer_chain: missing"},
		{"chain bad escape", func(f *BundleFiles) { f.TCBInfoIssuerChain = []byte("%2-") }, "pcs: tcb_info_issuer_chain: neither PEM nor URL-encoded PEM"},
		{"chain junk", func(f *BundleFiles) { f.TCBInfoIssuerChain = append([]byte("junk"), f.TCBInfoIssuerChain...) }, "pcs: tcb_info_issuer_chain: unexpected data at byte 0"},
		{"pck crl without chain", func(f *BundleFiles) { f.PCKCRLIssuerChain = nil }, "pcs: pck_crl_issuer_chain: missing (required when pck_crl is set)"},
		{"pck crl empty", func(f *BundleFiles) { f.PCKCRL = []byte{} }, "pcs: pck_crl: empty"},
		{"pck crl truncated DER", func(f *BundleFiles) { f.PCKCRL = f.PCKCRL[:1000] }, "pcs: pck_crl: not a DER CRL"},
		{"root crl bad hex", func(f *BundleFiles) { f.RootCACRL = []byte("3082zz") }, "pcs: root_ca_crl: not hex"},
		{"root crl oversized", func(f *BundleFiles) { f.RootCACRL = make([]byte, maxResponseSize+1) }, "pcs: root_ca_crl: 524289 bytes, larger than"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			files := tdxFiles(t)
			tt.edit(&files)
			b, err := AssembleBundle(files)
			if b != nil {
				t.Error("got a bundle with an error")
			}
			wantMalformed(t, err, tt.want)
		})
	}
}
