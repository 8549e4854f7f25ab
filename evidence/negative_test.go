package evidence

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"encoding/pem"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/cloister-dev/cloister/evidence/dcap"
	"github.com/cloister-dev/cloister/evidence/pcs"
	"github.com/cloister-dev/cloister/evidence/sgx"
	"github.com/cloister-dev/cloister/evidence/tdx"
)

// region is a named byte range of a quote whose every byte is covered by a
// signature (directly, or through a hash another signature covers).
type region struct {
	name     string
	off, len int
}

func sigRegions(t *testing.T, raw []byte, signed int, s *dcap.SignatureData) []region {
	t.Helper()
	at := func(b []byte) int {
		i := bytes.Index(raw[signed:], b)
		if i < 0 {
			t.Fatal("sub-slice not found")
		}
		return signed + i
	}
	return []region{
		{"header and body", 0, signed},
		{"quote signature", at(s.Signature[:]), dcap.SignatureSize},
		{"attestation key", at(s.AttestationKey[:]), dcap.AttestationKeySize},
		{"QE report", at(s.QEReport), dcap.EnclaveReportSize},
		{"QE report signature", at(s.QEReportSignature[:]), dcap.SignatureSize},
		{"QE auth data", at(s.QEAuthData), len(s.QEAuthData)},
	}
}

// TestFlipEverySignedByte flips each byte of every signed region of the SGX
// and TDX vectors; every flip must be rejected. The verifier is warm (it has
// verified the untouched vector), so this also covers its caches: a flipped
// QE report or QE report signature must miss the last-verified-QE-report
// fast path, not ride it.
func TestFlipEverySignedByte(t *testing.T) {
	sgxRaw := readVector(t, "sgx/dcap-qvl_sgx_quote_v3.bin")
	sq, err := sgx.Parse(sgxRaw)
	if err != nil {
		t.Fatal(err)
	}
	tdxRaw := readVector(t, "tdx/dcap-qvl_tdx_quote_v4.bin")
	tq, err := tdx.Parse(tdxRaw)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		raw     []byte
		regions []region
		col     *pcs.Bundle
	}{
		{"sgx", sgxRaw, sigRegions(t, sgxRaw, len(sgx.SignedRegion(sgxRaw)), sq.Sig), bundleVector(t, "sgx/dcap-qvl_sgx_quote_v3_collateral.json")},
		{"tdx", tdxRaw, sigRegions(t, tdxRaw, len(tdx.SignedRegion(tdxRaw)), tq.Sig), bundleVector(t, "tdx/dcap-qvl_tdx_quote_v4_collateral.json")},
	} {
		v := NewVerifier()
		opts := Options{Time: dcapQVLTime, Collateral: tc.col}
		if _, err := v.Verify(context.Background(), tc.raw, opts); err != nil {
			t.Fatalf("%s: the untouched vector fails: %v", tc.name, err)
		}
		for _, r := range tc.regions {
			for i := r.off; i < r.off+r.len; i++ {
				mut := bytes.Clone(tc.raw)
				mut[i] ^= 0x01
				if c, err := v.Verify(context.Background(), mut, opts); err == nil {
					t.Fatalf("%s: flipping byte %d (%s) still verifies: %+v", tc.name, i, r.name, c)
				}
			}
		}
	}
}

// TestFlipEveryCollateralByte flips each byte of the signed TCB info and QE
// identity texts and of their signatures.
func TestFlipEveryCollateralByte(t *testing.T) {
	raw := readVector(t, "tdx/dcap-qvl_tdx_quote_v4.bin")
	col := bundleVector(t, "tdx/dcap-qvl_tdx_quote_v4_collateral.json")
	v := NewVerifier()
	fields := []struct {
		name string
		get  func(*pcs.Bundle) *string
	}{
		{"tcb_info", func(b *pcs.Bundle) *string { return &b.TCBInfo }},
		{"qe_identity", func(b *pcs.Bundle) *string { return &b.QEIdentity }},
		{"tcb_info_signature", func(b *pcs.Bundle) *string { return &b.TCBInfoSignature }},
		{"qe_identity_signature", func(b *pcs.Bundle) *string { return &b.QEIdentitySignature }},
	}
	for _, f := range fields {
		orig := *f.get(col)
		for i := range len(orig) {
			mut := *col
			b := []byte(orig)
			if strings.HasSuffix(f.name, "signature") {
				// Keep it hex so the signature check, not the decoder, rejects it.
				b[i] = "0123456789abcdef"[(strings.IndexByte("0123456789abcdef", b[i])+1)%16]
			} else {
				b[i] ^= 0x01
			}
			*f.get(&mut) = string(b)
			if _, err := v.Verify(context.Background(), raw, Options{Time: dcapQVLTime, Collateral: &mut}); err == nil {
				t.Fatalf("flipping byte %d of %s still verifies", i, f.name)
			} else if r, _ := ReasonOf(err); r != BadSignature && r != Malformed {
				t.Fatalf("flipping byte %d of %s: reason %v (%v); want BadSignature", i, f.name, r, err)
			}
		}
	}
}

// TestTruncatedAndOversized checks that every strict prefix of a quote
// (up to its declared end) is rejected, as are oversized inputs.
func TestTruncatedAndOversized(t *testing.T) {
	for _, tc := range []struct {
		path  string
		parse func([]byte) error
		end   int
	}{
		{"sgx/dcap-qvl_sgx_quote_v3.bin", func(b []byte) error { _, err := sgx.Parse(b); return err }, 4600},
		{"tdx/dcap-qvl_tdx_quote_v4.bin", func(b []byte) error { _, err := tdx.Parse(b); return err }, 4936},
		{"tdx/tdx_prod_quote_SPR_E4.dat", func(b []byte) error { _, err := tdx.Parse(b); return err }, 4935},
	} {
		raw := readVector(t, tc.path)
		for n := range tc.end {
			if err := tc.parse(raw[:n]); err == nil {
				t.Fatalf("%s: prefix of %d bytes parses", tc.path, n)
			}
		}
		if err := tc.parse(raw[:tc.end]); err != nil {
			t.Fatalf("%s: the quote without its padding fails: %v", tc.path, err)
		}
		big := append(bytes.Clone(raw), make([]byte, dcap.MaxQuoteSize)...)
		if err := tc.parse(big); err == nil || !strings.Contains(err.Error(), "cap") {
			t.Fatalf("%s: oversized input: %v", tc.path, err)
		}
	}
}

func TestWrongVersionAndTypes(t *testing.T) {
	sgxRaw := readVector(t, "sgx/dcap-qvl_sgx_quote_v3.bin")
	tdxRaw := readVector(t, "tdx/dcap-qvl_tdx_quote_v4.bin")
	set16 := func(b []byte, off int, v uint16) []byte {
		b = bytes.Clone(b)
		binary.LittleEndian.PutUint16(b[off:], v)
		return b
	}
	certTypeOff := len(sgx.SignedRegion(sgxRaw)) + 4 + 64 + 64 + 384 + 64 + 2 + 32
	for _, tc := range []struct {
		name  string
		err   error
		wantR Reason
		want  string
	}{
		{"sgx version 2", parseErr(sgx.Parse(set16(sgxRaw, 0, 2))), Unsupported, "version 2"},
		{"tdx version 6", parseErr(tdx.Parse(set16(tdxRaw, 0, 6))), Unsupported, "version 6"},
		{"sgx key type 3 (P-384)", parseErr(sgx.Parse(set16(sgxRaw, 2, 3))), Unsupported, "attestation key type 3"},
		{"sgx certification data type 3", parseErr(sgx.Parse(set16(sgxRaw, certTypeOff, 3))), Unsupported, "unsupported certification data type 3"},
		{"tdx v5 unknown body type", parseErr(tdx.Parse(set16(set16(tdxRaw, 0, 5), 48, 9))), Malformed, "body type 9"},
	} {
		if r, _ := ReasonOf(tc.err); r != tc.wantR || !strings.Contains(tc.err.Error(), tc.want) {
			t.Errorf("%s: %v; want %v mentioning %q", tc.name, tc.err, tc.wantR, tc.want)
		}
	}
}

func parseErr[T any](_ T, err error) error { return err }

// fakeCA is a self-made CA: the "attacker's" PKI.
type fakeCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func newFakeCert(t *testing.T, tmpl *x509.Certificate, parent *fakeCA) *fakeCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	// The extensions Intel's parser requires of every certificate.
	if tmpl.CRLDistributionPoints == nil {
		tmpl.CRLDistributionPoints = []string{"https://crl.invalid/fake"}
	}
	if tmpl.SubjectKeyId == nil {
		tmpl.SubjectKeyId = tmpl.SerialNumber.Bytes()
	}
	if tmpl.KeyUsage == 0 {
		tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	}
	tmpl.BasicConstraintsValid = true
	if parent == nil {
		tmpl.AuthorityKeyId = tmpl.SubjectKeyId
	}
	signer, parentCert := key, tmpl
	if parent != nil {
		signer, parentCert = parent.key, parent.cert
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parentCert, &key.PublicKey, signer)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &fakeCA{cert: c, key: key}
}

func rawSig(t *testing.T, key *ecdsa.PrivateKey, msg []byte) []byte {
	t.Helper()
	h := sha256.Sum256(msg)
	r, s, err := ecdsa.Sign(rand.Reader, key, h[:])
	if err != nil {
		t.Fatal(err)
	}
	out := make([]byte, 64)
	r.FillBytes(out[:32])
	s.FillBytes(out[32:])
	return out
}

// rerootSGX rebuilds the SGX vector under a self-made PKI: a new PCK chain
// (leaf with the real SGX extensions, a CA, and chainRoot as the chain's
// last certificate) and a new attestation key, with every signature valid.
func rerootSGX(t *testing.T, raw []byte, root *fakeCA, chainRoot *x509.Certificate) []byte {
	t.Helper()
	q, err := sgx.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	realLeaf, err := dcap.ParsePEMChain(q.Sig.PCKChainPEM, "chain")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)
	ca := newFakeCert(t, &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "Fake SGX PCK Processor CA"},
		NotBefore: now, NotAfter: now.AddDate(30, 0, 0), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign}, root)
	leaf := newFakeCert(t, &x509.Certificate{SerialNumber: big.NewInt(3), Subject: pkix.Name{CommonName: "Intel SGX PCK Certificate"},
		NotBefore: now, NotAfter: now.AddDate(20, 0, 0), ExtraExtensions: realLeaf[0].Extensions[len(realLeaf[0].Extensions)-1:]}, ca)
	if _, err := dcap.ParsePCKExtensions(leaf.cert); err != nil {
		t.Fatalf("the fake leaf lacks the SGX extensions: %v", err)
	}
	var chain []byte
	for _, c := range []*x509.Certificate{leaf.cert, ca.cert, chainRoot} {
		chain = append(chain, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	att, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	attRaw := att.PublicKey.Bytes
	pub, _ := attRaw()
	attKey := pub[1:]
	qe := bytes.Clone(q.Sig.QEReport)
	bind := sha256.Sum256(append(bytes.Clone(attKey), q.Sig.QEAuthData...))
	copy(qe[0x140:], bind[:])
	signed := sgx.SignedRegion(raw)

	var sd []byte
	sd = append(sd, rawSig(t, att, signed)...)
	sd = append(sd, attKey...)
	sd = append(sd, qe...)
	sd = append(sd, rawSig(t, leaf.key, qe)...)
	sd = binary.LittleEndian.AppendUint16(sd, uint16(len(q.Sig.QEAuthData)))
	sd = append(sd, q.Sig.QEAuthData...)
	sd = binary.LittleEndian.AppendUint16(sd, dcap.CertDataPCKChain)
	sd = binary.LittleEndian.AppendUint32(sd, uint32(len(chain)))
	sd = append(sd, chain...)
	out := bytes.Clone(signed)
	out = binary.LittleEndian.AppendUint32(out, uint32(len(sd)))
	return append(out, sd...)
}

// TestReRootedChain: a quote whose every signature is valid but whose PCK
// chain ends at a self-made CA must fail under the built-in Intel root, even
// when the chain carries a copy of the Intel root; it verifies only when the
// caller names that CA, and then as a simulated TEE.
func TestReRootedChain(t *testing.T) {
	raw := readVector(t, "sgx/dcap-qvl_sgx_quote_v3.bin")
	now := time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)
	root := newFakeCert(t, &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "Intel SGX Root CA"},
		NotBefore: now, NotAfter: now.AddDate(40, 0, 0), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign}, nil)
	fake := rerootSGX(t, raw, root, root.cert)
	withIntelCopy := rerootSGX(t, raw, root, dcap.IntelRoot())
	opts := Options{Time: dcapQVLTime, SkipTCBEvaluation: true}

	for name, q := range map[string][]byte{"self-made root": fake, "Intel root copy at the end": withIntelCopy} {
		if _, err := NewVerifier().Verify(context.Background(), q, opts); err == nil {
			t.Errorf("%s: verifies under the built-in root", name)
		} else if r, _ := ReasonOf(err); r != UntrustedRoot {
			t.Errorf("%s: reason %v (%v); want UntrustedRoot", name, r, err)
		}
	}
	withCollateral := Options{Time: dcapQVLTime, Collateral: bundleVector(t, "sgx/dcap-qvl_sgx_quote_v3_collateral.json")}
	if _, err := NewVerifier().Verify(context.Background(), fake, withCollateral); err == nil {
		t.Error("self-made chain verifies with Intel collateral")
	}

	trusting := opts
	trusting.TrustRoots = []*x509.Certificate{root.cert}
	c, err := NewVerifier().Verify(context.Background(), fake, trusting)
	if err != nil {
		t.Fatalf("with the self-made root trusted explicitly: %v", err)
	}
	if c.TEE != TEESimSGX {
		t.Errorf("tee %q under a caller-named root; want %q", c.TEE, TEESimSGX)
	}
}

// QVL PckCertVerifier: the PCK chain's root names itself "SGX Root CA"; a
// caller-named root that does not is refused, as Intel's library refuses it.
func TestPCKChainRootName(t *testing.T) {
	raw := readVector(t, "sgx/dcap-qvl_sgx_quote_v3.bin")
	now := time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)
	root := newFakeCert(t, &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "Some Root"},
		NotBefore: now, NotAfter: now.AddDate(40, 0, 0), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign}, nil)
	opts := Options{Time: dcapQVLTime, SkipTCBEvaluation: true, TrustRoots: []*x509.Certificate{root.cert}}
	_, err := NewVerifier().Verify(context.Background(), rerootSGX(t, raw, root, root.cert), opts)
	if err == nil || !strings.Contains(err.Error(), "SGX Root CA") {
		t.Errorf("root named %q: %v; want refused for its name", root.cert.Subject.CommonName, err)
	}
}

// TestTSMParseErrorHasReason: a document Detect takes for a configfs-tsm
// report (first byte '{' or a CBOR map, 0xA0..0xBF) that does not parse as
// one must still be a VerifyError with a Reason, like every other rejection.
// A DCAP quote whose version's low byte is in that range is such a document
// (found by the Intel QVL differential, evidence/qvldiff).
func TestTSMParseErrorHasReason(t *testing.T) {
	quote := readVector(t, "tdx/dcap-qvl_tdx_quote_v4.bin")
	for _, tc := range []struct {
		name string
		raw  []byte
	}{
		{"quote with version byte 0xA0", append([]byte{0xA0}, quote[1:]...)},
		{"quote with version byte 0xBF", append([]byte{0xBF}, quote[1:]...)},
		{"empty CBOR map", []byte{0xA0}},
		{"truncated JSON", []byte(`{"provider":`)},
	} {
		if Detect(tc.raw) != KindTSMReport {
			t.Fatalf("%s: Detect = %v, want a configfs-tsm report", tc.name, Detect(tc.raw))
		}
		_, err := NewVerifier().Verify(context.Background(), tc.raw, Options{Time: dcapQVLTime})
		if err == nil {
			t.Fatalf("%s: verified", tc.name)
		}
		if r, ok := ReasonOf(err); !ok || r != Malformed {
			t.Errorf("%s: ReasonOf(%q) = %v, %v; want Malformed", tc.name, err, r, ok)
		}
	}
}
