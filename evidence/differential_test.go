package evidence_test

// Differential tests: Cloister's own DCAP verifier (evidence.Verify) against
// github.com/google/go-tdx-guest/verify as an oracle, on every TDX vector in
// testdata/tdx and on tampered variants of each.
//
// Agreement rule: go-tdx-guest passes  <=>  evidence.Verify returns no error
// AND Claims.TCBStatus == "UpToDate" (go-tdx-guest rejects every other TCB
// status, we report it and leave the decision to policy).
//
// go-tdx-guest is driven exactly as a user drives it: Options{CheckRevocations:
// true, GetCollateral: true, Getter, Now, TrustedRoots}, with a fake PCS getter
// that serves the Intel PCS v4 URLs from the same collateral that our bundle
// holds (signed JSON text byte-exact, issuer chains URL-encoded in the PCS
// response headers, CRLs as DER).
//
// Known deliberate divergences (skipped, not counted as disagreements):
//
//   - Bytes appended after the quote's declared end (after the signature
//     data). Both accept: go-tdx-guest keeps them as QuoteV4.ExtraBytes,
//     evidence.Verify accepts with a warning in Claims.Warnings. They are
//     unsigned, so neither lets them influence a result.
//     TestDifferentialTDXTrailingBytes pins both behaviours.
//
// Deliberate divergence, pinned (expect value gapOursStricter, reason in
// whyNotYetValid) so that a change on either side is noticed:
//
//   - Time before a collateral validity window starts (whyNotYetValid). At a
//     time when every certificate is valid but before the tcbInfo or QE
//     identity issueDate (or a CRL's thisUpdate), go-tdx-guest accepts: it
//     checks nextUpdate only. We reject with Expired ("not valid yet"), as
//     Intel's QVL and dcap-qvl do: collateral is not valid before it is
//     issued.
//
// Two divergences these tests first found were resolved on our side: the
// PCK chain now allows only one NUL after its last certificate, and must
// hold exactly three certificates (leaf, CA, root copy), as go-tdx-guest
// and Intel's certification data type 5 require.

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-tdx-guest/abi"
	tdxverify "github.com/google/go-tdx-guest/verify"

	"github.com/cloister-dev/cloister/evidence"
	"github.com/cloister-dev/cloister/evidence/pcs"
)

const (
	testdataDir   = "../testdata/"
	intelRootFile = testdataDir + "sgx/intel_sgx_root_ca.der"

	// Intel PCS v4 API roots, as go-tdx-guest requests them.
	pcsTDXBase = "https://api.trustedservices.intel.com/tdx/certification/v4"
	pcsSGXBase = "https://api.trustedservices.intel.com/sgx/certification/v4"
)

// PCS response header names, canonicalised as net/http (and go-tdx-guest's
// map lookup) expects them.
var (
	hdrTCBInfoChain    = http.CanonicalHeaderKey("TCB-Info-Issuer-Chain")
	hdrQEIdentityChain = http.CanonicalHeaderKey("SGX-Enclave-Identity-Issuer-Chain")
	hdrPCKCRLChain     = http.CanonicalHeaderKey("SGX-PCK-CRL-Issuer-Chain")
)

// tdxVector is one TDX quote with its collateral and expected outcome.
type tdxVector struct {
	name   string
	quote  []byte
	bundle *pcs.Bundle
	at     time.Time
	// pass: both verifiers accept (ours with TCB status UpToDate).
	pass bool
	// wantReason is our failure reason when !pass.
	wantReason evidence.Reason
	// urls are the PCS URLs go-tdx-guest requests for this quote, derived
	// once from the untampered bundle so that tampered collateral is still
	// served where it is asked for.
	urls pcsURLs
}

func readTestFile(tb testing.TB, name string) []byte {
	tb.Helper()
	b, err := os.ReadFile(testdataDir + name)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// intelRootPool is the trust anchor given to go-tdx-guest: the Intel SGX
// Root CA from testdata (the same certificate evidence/dcap pins).
func intelRootPool(tb testing.TB) *x509.CertPool {
	tb.Helper()
	der, err := os.ReadFile(intelRootFile)
	if err != nil {
		tb.Fatal(err)
	}
	root, err := x509.ParseCertificate(der)
	if err != nil {
		tb.Fatal(err)
	}
	p := x509.NewCertPool()
	p.AddCert(root)
	return p
}

// dcapQVLTDXVector is the Phala dcap-qvl TDX quote v4 with its collateral
// bundle, at 2025-07-01T00:00:00Z: UpToDate for both verifiers.
func dcapQVLTDXVector(tb testing.TB) *tdxVector {
	tb.Helper()
	b, err := pcs.ParseBundle(readTestFile(tb, "tdx/dcap-qvl_tdx_quote_v4_collateral.json"))
	if err != nil {
		tb.Fatal(err)
	}
	v := &tdxVector{
		name:   "dcap-qvl_tdx_quote_v4",
		quote:  readTestFile(tb, "tdx/dcap-qvl_tdx_quote_v4.bin"),
		bundle: b,
		at:     time.Unix(1751328000, 0).UTC(),
		pass:   true,
	}
	v.urls = pcsURLsFor(tb, b)
	return v
}

// sprE4Vector is go-tdx-guest's production SPR E4 quote with the PCS
// responses from its test data, at 2023-07-01T01:00:00Z. No TCB level
// matches (see testdata/README.md), so both verifiers reject it.
func sprE4Vector(tb testing.TB) *tdxVector {
	tb.Helper()
	b, err := pcs.AssembleBundle(sprE4Files(tb))
	if err != nil {
		tb.Fatal(err)
	}
	v := &tdxVector{
		name:       "tdx_prod_quote_SPR_E4",
		quote:      readTestFile(tb, "tdx/tdx_prod_quote_SPR_E4.dat"),
		bundle:     b,
		at:         time.Date(2023, time.July, 1, 1, 0, 0, 0, time.UTC),
		pass:       false,
		wantReason: evidence.TCBNotSupported,
	}
	v.urls = pcsURLsFor(tb, b)
	return v
}

func sprE4Files(tb testing.TB) pcs.BundleFiles {
	tcbChain := readTestFile(tb, "tdx/sample_tcbInfo_issuer_chain.pem")
	return pcs.BundleFiles{
		TCBInfoResponse:    readTestFile(tb, "tdx/sample_tcbInfo_response"),
		TCBInfoIssuerChain: tcbChain,
		QEIdentityResponse: readTestFile(tb, "tdx/sample_qeIdentity_response"),
		// go-tdx-guest's test getter serves the TCB signing chain for the
		// QE identity too.
		QEIdentityIssuerChain: tcbChain,
		PCKCRL:                readTestFile(tb, "tdx/pckcrl"),
		PCKCRLIssuerChain:     readTestFile(tb, "tdx/pckcrl_issuer_chain.pem"),
		RootCACRL:             readTestFile(tb, "tdx/rootcrl.der"),
	}
}

func tdxVectors(tb testing.TB) []*tdxVector {
	return []*tdxVector{dcapQVLTDXVector(tb), sprE4Vector(tb)}
}

// pcsURLs are the URLs go-tdx-guest fetches for one quote.
type pcsURLs struct {
	tcbInfo, qeIdentity, pckCRL string
	rootCRL                     []string
}

func pcsURLsFor(tb testing.TB, b *pcs.Bundle) pcsURLs {
	tb.Helper()
	var ti struct {
		FMSPC string `json:"fmspc"`
	}
	if err := json.Unmarshal([]byte(b.TCBInfo), &ti); err != nil || ti.FMSPC == "" {
		tb.Fatalf("tcb_info fmspc: %v", err)
	}
	crlChain := parsePEMCerts(tb, b.PCKCRLIssuerChain)
	var ca string
	switch cn := crlChain[0].Subject.CommonName; cn {
	case "Intel SGX PCK Platform CA":
		ca = "platform"
	case "Intel SGX PCK Processor CA":
		ca = "processor"
	default:
		tb.Fatalf("PCK CRL issuer %q", cn)
	}
	// go-tdx-guest takes the root CA CRL URL from the QE identity issuer
	// chain's root certificate.
	qeChain := parsePEMCerts(tb, b.QEIdentityIssuerChain)
	root := qeChain[len(qeChain)-1]
	if len(root.CRLDistributionPoints) == 0 {
		tb.Fatal("root certificate has no CRL distribution point")
	}
	return pcsURLs{
		// PCK certificates carry the FMSPC as bytes; go-tdx-guest formats
		// it as lowercase hex.
		tcbInfo:    pcsTDXBase + "/tcb?fmspc=" + strings.ToLower(ti.FMSPC),
		qeIdentity: pcsTDXBase + "/qe/identity",
		pckCRL:     pcsSGXBase + "/pckcrl?ca=" + ca + "&encoding=der",
		rootCRL:    root.CRLDistributionPoints,
	}
}

func parsePEMCerts(tb testing.TB, s string) []*x509.Certificate {
	tb.Helper()
	var certs []*x509.Certificate
	rest := []byte(s)
	for {
		var blk *pem.Block
		blk, rest = pem.Decode(rest)
		if blk == nil {
			break
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			tb.Fatal(err)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		tb.Fatal("no PEM certificates")
	}
	return certs
}

// fakePCS implements go-tdx-guest's trust.HTTPSGetter from a bundle. URLs it
// does not know answer 404 and are recorded, so a baseline run can prove
// the oracle was served everything it asked for.
type fakePCS struct {
	responses map[string]pcsResponse
	mu        sync.Mutex
	missed    []string
}

type pcsResponse struct {
	header map[string][]string
	body   []byte
}

// newFakePCS serves b at urls, in the shapes the Intel PCS v4 API uses:
// /tcb body {"tcbInfo":<tcb_info>,"signature":"<hex>"}, /qe/identity body
// {"enclaveIdentity":<qe_identity>,"signature":"<hex>"}, issuer chains
// URL-encoded in the response headers, CRLs as DER.
func newFakePCS(b *pcs.Bundle, urls pcsURLs) *fakePCS {
	chainHdr := func(name, pemText string) map[string][]string {
		return map[string][]string{name: {url.QueryEscape(pemText)}}
	}
	der := func(h string) []byte {
		d, err := hex.DecodeString(h)
		if err != nil {
			return []byte(h) // serve what we have; the oracle will refuse it
		}
		return d
	}
	f := &fakePCS{responses: map[string]pcsResponse{
		urls.tcbInfo: {
			header: chainHdr(hdrTCBInfoChain, b.TCBInfoIssuerChain),
			body:   []byte(`{"tcbInfo":` + b.TCBInfo + `,"signature":"` + b.TCBInfoSignature + `"}`),
		},
		urls.qeIdentity: {
			header: chainHdr(hdrQEIdentityChain, b.QEIdentityIssuerChain),
			body:   []byte(`{"enclaveIdentity":` + b.QEIdentity + `,"signature":"` + b.QEIdentitySignature + `"}`),
		},
		urls.pckCRL: {
			header: chainHdr(hdrPCKCRLChain, b.PCKCRLIssuerChain),
			body:   der(b.PCKCRL),
		},
	}}
	for _, u := range urls.rootCRL {
		f.responses[u] = pcsResponse{body: der(b.RootCACRL)}
	}
	return f
}

// Get implements trust.HTTPSGetter.
func (f *fakePCS) Get(u string) (map[string][]string, []byte, error) {
	r, ok := f.responses[u]
	if !ok {
		f.mu.Lock()
		f.missed = append(f.missed, u)
		f.mu.Unlock()
		return nil, nil, fmt.Errorf("fake PCS: 404 Not Found: %s", u)
	}
	return r.header, r.body, nil
}

// oracleOptions are the go-tdx-guest options a user verifying with full
// collateral and revocation passes. Options is mutated by go-tdx-guest, so
// every verification gets a new one.
func oracleOptions(getter *fakePCS, at time.Time, roots *x509.CertPool) *tdxverify.Options {
	return &tdxverify.Options{
		CheckRevocations: true,
		GetCollateral:    true,
		Getter:           getter,
		Now: &tdxverify.TimeSet{
			PckCertChain: at, TcbInfo: at, QeIdentity: at, PckCrl: at, RootCaCrl: at,
		},
		TrustedRoots: roots,
	}
}

// outcome is the result of both verifiers on one input.
type outcome struct {
	claims *evidence.Claims
	ours   error
	theirs error
	// missed are PCS URLs go-tdx-guest asked for that the fake did not have.
	missed []string
}

func (o outcome) oursPass() bool {
	return o.ours == nil && o.claims.TCBStatus == evidence.StatusUpToDate
}

func (o outcome) theirsPass() bool { return o.theirs == nil }

func (o outcome) String() string {
	ours := "accept"
	if o.ours != nil {
		ours = "reject: " + o.ours.Error()
	} else {
		ours += " (TCBStatus " + o.claims.TCBStatus + ")"
	}
	theirs := "accept"
	if o.theirs != nil {
		theirs = "reject: " + o.theirs.Error()
	}
	return fmt.Sprintf("ours %s; go-tdx-guest %s", ours, theirs)
}

// verifyBoth runs evidence.Verify and go-tdx-guest's RawTdxQuote on raw.
func verifyBoth(raw []byte, b *pcs.Bundle, urls pcsURLs, at time.Time, roots *x509.CertPool) outcome {
	var o outcome
	o.claims, o.ours = evidence.Verify(context.Background(), raw, evidence.Options{Time: at, Collateral: b})
	getter := newFakePCS(b, urls)
	o.theirs = tdxverify.RawTdxQuote(raw, oracleOptions(getter, at, roots))
	o.missed = getter.missed
	return o
}

func TestDifferentialTDXBaseline(t *testing.T) {
	roots := intelRootPool(t)
	for _, v := range tdxVectors(t) {
		t.Run(v.name, func(t *testing.T) {
			o := verifyBoth(v.quote, v.bundle, v.urls, v.at, roots)
			t.Logf("%s", o)
			if len(o.missed) > 0 {
				t.Errorf("go-tdx-guest asked for URLs the fake PCS does not serve: %v", o.missed)
			}
			if o.oursPass() != o.theirsPass() {
				t.Errorf("DISAGREEMENT: %s", o)
			}
			if o.oursPass() != v.pass {
				t.Errorf("ours pass=%v, want %v: %v", o.oursPass(), v.pass, o.ours)
			}
			if o.theirsPass() != v.pass {
				t.Errorf("go-tdx-guest pass=%v, want %v: %v", o.theirsPass(), v.pass, o.theirs)
			}
			if v.pass {
				if o.ours == nil && (o.claims.TEE != evidence.TEETDX || len(o.claims.AdvisoryIDs) != 0) {
					t.Errorf("claims TEE %q advisories %v; want %q, none", o.claims.TEE, o.claims.AdvisoryIDs, evidence.TEETDX)
				}
			} else if r, ok := evidence.ReasonOf(o.ours); !ok || r != v.wantReason {
				t.Errorf("ours reason %v (%v), want %v: %v", r, ok, v.wantReason, o.ours)
			}

			// The proto entry point, parsed once as a caller holding a
			// parsed quote would, must agree with RawTdxQuote.
			q, err := abi.QuoteToProto(v.quote)
			if err != nil {
				t.Fatalf("abi.QuoteToProto: %v", err)
			}
			err = tdxverify.TdxQuote(q, oracleOptions(newFakePCS(v.bundle, v.urls), v.at, roots))
			if (err == nil) != o.theirsPass() {
				t.Errorf("go-tdx-guest TdxQuote %v, RawTdxQuote %v", err, o.theirs)
			}
		})
	}
}

// TestDifferentialTDXFakePCSFaithful checks that the fake PCS serves the
// go-tdx-guest PCS files byte for byte (modulo the files' final newline): the
// bundle keeps the signed text exact and the fake rebuilds the bodies.
func TestDifferentialTDXFakePCSFaithful(t *testing.T) {
	v := sprE4Vector(t)
	f := newFakePCS(v.bundle, v.urls)
	for file, u := range map[string]string{
		"tdx/sample_tcbInfo_response":    v.urls.tcbInfo,
		"tdx/sample_qeIdentity_response": v.urls.qeIdentity,
		"tdx/pckcrl":                     v.urls.pckCRL,
		"tdx/rootcrl.der":                v.urls.rootCRL[0],
	} {
		want := bytes.TrimSuffix(readTestFile(t, file), []byte("\n"))
		if _, got, err := f.Get(u); err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s: fake PCS body differs from %s (err %v)", u, file, err)
		}
	}
	h, _, _ := f.Get(v.urls.tcbInfo)
	if got, err := url.QueryUnescape(h[hdrTCBInfoChain][0]); err != nil || got != string(readTestFile(t, "tdx/sample_tcbInfo_issuer_chain.pem")) {
		t.Errorf("TCB info issuer chain header does not decode to the PEM file (err %v)", err)
	}
}

// quoteRegions are the [start, end) byte ranges of a TDX quote v4, computed
// from the published layout (not with our parser).
type quoteRegions struct {
	signed, signature, attKey, qeReport, qeReportSig, qeAuthData, pckChain [2]int
	// structure lists the offsets of length and type fields.
	structure []int
	// end is the declared end of the signature data.
	end int
}

func tdxV4Regions(tb testing.TB, raw []byte) quoteRegions {
	tb.Helper()
	const headerSize, bodySize, sigSize, keySize, reportSize = 48, 584, 64, 64, 384
	if binary.LittleEndian.Uint16(raw) != 4 {
		tb.Fatalf("quote version %d, want 4", binary.LittleEndian.Uint16(raw))
	}
	var r quoteRegions
	u16 := func(p int) int { return int(binary.LittleEndian.Uint16(raw[p:])) }
	u32 := func(p int) int { return int(binary.LittleEndian.Uint32(raw[p:])) }
	p := headerSize + bodySize
	r.signed = [2]int{0, p}
	sigDataLen := u32(p)
	r.structure = append(r.structure, p)
	p += 4
	sigDataStart := p
	r.signature = [2]int{p, p + sigSize}
	p += sigSize
	r.attKey = [2]int{p, p + keySize}
	p += keySize
	if typ := u16(p); typ != 6 {
		tb.Fatalf("outer certification data type %d, want 6", typ)
	}
	r.structure = append(r.structure, p, p+2) // type, size
	outerLen := u32(p + 2)
	p += 6
	outerStart := p
	r.qeReport = [2]int{p, p + reportSize}
	p += reportSize
	r.qeReportSig = [2]int{p, p + sigSize}
	p += sigSize
	authLen := u16(p)
	r.structure = append(r.structure, p)
	p += 2
	r.qeAuthData = [2]int{p, p + authLen}
	p += authLen
	if typ := u16(p); typ != 5 {
		tb.Fatalf("certification data type %d, want 5", typ)
	}
	chainLen := u32(p + 2)
	r.structure = append(r.structure, p, p+2)
	p += 6
	r.pckChain = [2]int{p, p + chainLen}
	p += chainLen
	if p != outerStart+outerLen || p != sigDataStart+sigDataLen || p > len(raw) {
		tb.Fatalf("layout ends at %d, certification data declares end %d, signature data %d, quote is %d bytes",
			p, outerStart+outerLen, sigDataStart+sigDataLen, len(raw))
	}
	// Bytes after the end (both test quotes have some: fixed-size quote
	// buffers) are unsigned; see TestDifferentialTDXTrailingBytes.
	r.end = p
	return r
}

// spread returns n offsets spread evenly over [r[0], r[1]), first and last
// included, without duplicates.
func spread(r [2]int, n int) []int {
	size := r[1] - r[0]
	if size <= 0 {
		return nil
	}
	if n > size {
		n = size
	}
	var out []int
	for i := 0; i < n; i++ {
		off := r[0]
		if n > 1 {
			off += i * (size - 1) / (n - 1)
		}
		if len(out) == 0 || out[len(out)-1] != off {
			out = append(out, off)
		}
	}
	return out
}

type flip struct {
	region string
	off    int
	mask   byte
}

func (f flip) String() string { return fmt.Sprintf("%s@%d^%02x", f.region, f.off, f.mask) }

func quoteFlips(tb testing.TB, raw []byte) []flip {
	r := tdxV4Regions(tb, raw)
	var fl []flip
	add := func(region string, offs []int, masks ...byte) {
		for _, o := range offs {
			for _, m := range masks {
				fl = append(fl, flip{region, o, m})
			}
		}
	}
	add("signed", spread(r.signed, 40), 0x01)
	add("signed", []int{
		// Header: version, key type, TEE type, reserved, QE vendor ID,
		// user data.
		0, 2, 4, 8, 10, 12, 27, 28, 47,
		// TD report: TEE_TCB_SVN[0..2], MRSEAM, MRSIGNERSEAM,
		// SEAMATTRIBUTES, TDATTRIBUTES, XFAM, MRTD, RTMR0, REPORTDATA.
		48, 49, 50, 48 + 16, 48 + 64, 48 + 112, 48 + 120, 48 + 128, 48 + 136, 48 + 328,
		48 + 520, 48 + 583,
	}, 0x80)
	add("quote signature", spread(r.signature, 6), 0x01, 0x80)
	add("attestation key", spread(r.attKey, 6), 0x01, 0x80)
	add("QE report", spread(r.qeReport, 24), 0x01)
	add("QE report", []int{
		r.qeReport[0] + 48,                       // ATTRIBUTES
		r.qeReport[0] + 64,                       // MRENCLAVE
		r.qeReport[0] + 128, r.qeReport[0] + 159, // MRSIGNER
		r.qeReport[0] + 256, r.qeReport[0] + 258, // ISVPRODID, ISVSVN
		r.qeReport[0] + 320, r.qeReport[0] + 351, r.qeReport[0] + 352, // REPORTDATA
	}, 0x80)
	add("QE report signature", spread(r.qeReportSig, 6), 0x01, 0x80)
	add("QE auth data", spread(r.qeAuthData, 6), 0x01, 0x80)
	add("PCK chain PEM", spread(r.pckChain, 40), 0x01, 0x20)
	// Line breaks and dashes of the PEM armour, and the chain's last byte.
	var nl []int
	for i := r.pckChain[0]; i < r.pckChain[1]; i++ {
		if raw[i] == '\n' || raw[i] == '-' && raw[i-1] == '\n' {
			nl = append(nl, i)
		}
	}
	for _, i := range spread([2]int{0, len(nl)}, 12) {
		fl = append(fl, flip{"PCK chain PEM", nl[i], 0x01})
	}
	add("PCK chain PEM", []int{r.pckChain[1] - 1}, 0x01)
	add("length/type fields", r.structure, 0x01, 0x80)
	return fl
}

// pemNoOp reports whether the PEM chain of mutated decodes, block by block,
// to the same DER as orig's: a flip of unused base64 padding bits changes
// nothing a verifier can see.
func pemNoOp(orig, mutated []byte) bool {
	a, b := pemBlocks(orig), pemBlocks(mutated)
	if len(a) == 0 || len(a) != len(b) {
		return false
	}
	for i := range a {
		if !bytes.Equal(a[i], b[i]) {
			return false
		}
	}
	return true
}

func pemBlocks(b []byte) [][]byte {
	var out [][]byte
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			return out
		}
		out = append(out, blk.Bytes)
	}
}

// expect is what one differential case must produce.
type expect int

const (
	// bothReject: a real tamper. Both reject; ours with a VerifyError and,
	// on a vector that fails only at TCB evaluation, for another reason
	// (the tamper was caught, not the platform's TCB).
	bothReject expect = iota
	// unchanged: the change is not semantic; both give the untampered result.
	unchanged
	// gapOursStricter pins a divergence found by these tests: ours rejects
	// (Expired), go-tdx-guest gives the untampered result.
	gapOursStricter
)

// check asserts e for the case name of vector v.
func check(t *testing.T, v *tdxVector, name string, o outcome, e expect, why string) {
	t.Helper()
	if len(o.missed) > 0 && e != bothReject {
		t.Errorf("%s: go-tdx-guest asked for URLs the fake PCS does not serve: %v", name, o.missed)
	}
	oursAsBaseline := o.oursPass() == v.pass
	if !v.pass {
		r, _ := evidence.ReasonOf(o.ours)
		oursAsBaseline = o.ours != nil && r == v.wantReason
	}
	theirsAsBaseline := o.theirsPass() == v.pass
	switch e {
	case bothReject:
		switch {
		case o.oursPass() != o.theirsPass():
			t.Errorf("%s: DISAGREEMENT: %s", name, o)
		case o.oursPass():
			t.Errorf("%s: BOTH ACCEPT a tampered input: %s", name, o)
		case o.ours == nil:
			t.Errorf("%s: ours returned claims (TCB status %q) for a tampered input", name, o.claims.TCBStatus)
		default:
			if _, ok := evidence.ReasonOf(o.ours); !ok {
				t.Errorf("%s: ours failed without a VerifyError: %v", name, o.ours)
			}
			if !v.pass && oursAsBaseline {
				t.Errorf("%s: ours failed with the untampered vector's reason %v: the tamper went unnoticed: %v", name, v.wantReason, o.ours)
			}
		}
	case unchanged:
		if o.oursPass() != o.theirsPass() {
			t.Errorf("%s: DISAGREEMENT on a non-semantic change: %s", name, o)
		} else if !oursAsBaseline || !theirsAsBaseline {
			t.Errorf("%s: a non-semantic change changed the result: %s", name, o)
		}
	case gapOursStricter:
		if r, _ := evidence.ReasonOf(o.ours); o.ours == nil || r != evidence.Expired {
			t.Errorf("%s: ours should reject with Expired (pinned divergence %q): %s", name, why, o)
		}
		if !theirsAsBaseline {
			t.Errorf("%s: go-tdx-guest no longer gives the untampered result (pinned divergence %q is stale): %s", name, why, o)
		}
		if v.pass {
			t.Logf("%s: PINNED DIVERGENCE (%s): %s", name, why, o)
		}
	}
}

// Divergences found by these tests; see the file comment.
const (
	whyNotYetValid = "verification time before a collateral issueDate/thisUpdate: go-tdx-guest checks only nextUpdate"
)

func TestDifferentialTDXTamperedQuote(t *testing.T) {
	roots := intelRootPool(t)
	for _, v := range tdxVectors(t) {
		t.Run(v.name, func(t *testing.T) {
			r := tdxV4Regions(t, v.quote)
			chain := v.quote[r.pckChain[0]:r.pckChain[1]]
			// Offset of the byte after the chain's last END line.
			lastEnd := r.pckChain[0] + bytes.LastIndex(chain, []byte("-----END CERTIFICATE-----")) + len("-----END CERTIFICATE-----")
			counts := map[string]int{}
			for _, f := range quoteFlips(t, v.quote) {
				raw := bytes.Clone(v.quote)
				raw[f.off] ^= f.mask
				o := verifyBoth(raw, v.bundle, v.urls, v.at, roots)
				counts[f.region]++
				e, why := bothReject, ""
				switch {
				case f.region != "PCK chain PEM":
				case f.off >= lastEnd:
					// Padding after the last certificate: both allow
					// nothing or exactly one NUL.
					if pad := raw[lastEnd:r.pckChain[1]]; len(pad) == 0 || string(pad) == "\x00" {
						e = unchanged
					}
				case pemNoOp(chain, raw[r.pckChain[0]:r.pckChain[1]]):
					// The certificates are unchanged (a flip in unused
					// base64 bits or in PEM armour whitespace).
					e = unchanged
				}
				if e != bothReject {
					counts[f.region+" (no semantic change)"]++
				}
				check(t, v, f.String(), o, e, why)
			}
			t.Logf("quote flips per region: %v", counts)
		})
	}
}

// bundleFlip is one change to a collateral bundle.
type bundleFlip struct {
	name  string
	apply func(b *pcs.Bundle)
}

func flipText(s string, off int, mask byte) string {
	b := []byte(s)
	b[off] ^= mask
	return string(b)
}

// flipHex flips a byte of the hex-decoded value and re-encodes it, so the
// value still decodes and the change reaches the signature or DER check.
func flipHex(s string, off int, mask byte) string {
	d, err := hex.DecodeString(s)
	if err != nil {
		panic(err)
	}
	d[off] ^= mask
	return hex.EncodeToString(d)
}

func collateralFlips(b *pcs.Bundle) []bundleFlip {
	var fl []bundleFlip
	text := func(field string, get func(*pcs.Bundle) *string, n int, mask byte) {
		for _, off := range spread([2]int{0, len(*get(b))}, n) {
			fl = append(fl, bundleFlip{fmt.Sprintf("%s@%d^%02x", field, off, mask), func(b *pcs.Bundle) {
				p := get(b)
				*p = flipText(*p, off, mask)
			}})
		}
	}
	decoded := func(field string, get func(*pcs.Bundle) *string, n int, mask byte) {
		for _, off := range spread([2]int{0, len(*get(b)) / 2}, n) {
			fl = append(fl, bundleFlip{fmt.Sprintf("%s[hex-decoded]@%d^%02x", field, off, mask), func(b *pcs.Bundle) {
				p := get(b)
				*p = flipHex(*p, off, mask)
			}})
		}
	}
	tcbInfo := func(b *pcs.Bundle) *string { return &b.TCBInfo }
	qeIdentity := func(b *pcs.Bundle) *string { return &b.QEIdentity }
	text("tcb_info", tcbInfo, 16, 0x01)
	text("tcb_info", tcbInfo, 4, 0x20)
	// The tcb_info_signature hex text: a flipped digit may stay valid hex.
	text("tcb_info_signature", func(b *pcs.Bundle) *string { return &b.TCBInfoSignature }, 4, 0x01)
	decoded("tcb_info_signature", func(b *pcs.Bundle) *string { return &b.TCBInfoSignature }, 6, 0x01)
	text("qe_identity", qeIdentity, 12, 0x01)
	text("qe_identity", qeIdentity, 4, 0x20)
	decoded("qe_identity_signature", func(b *pcs.Bundle) *string { return &b.QEIdentitySignature }, 4, 0x01)
	text("tcb_info_issuer_chain", func(b *pcs.Bundle) *string { return &b.TCBInfoIssuerChain }, 8, 0x01)
	text("qe_identity_issuer_chain", func(b *pcs.Bundle) *string { return &b.QEIdentityIssuerChain }, 8, 0x01)
	decoded("pck_crl", func(b *pcs.Bundle) *string { return &b.PCKCRL }, 8, 0x01)
	decoded("root_ca_crl", func(b *pcs.Bundle) *string { return &b.RootCACRL }, 6, 0x01)
	return fl
}

func TestDifferentialTDXTamperedCollateral(t *testing.T) {
	roots := intelRootPool(t)
	for _, v := range tdxVectors(t) {
		t.Run(v.name, func(t *testing.T) {
			for _, f := range collateralFlips(v.bundle) {
				b := *v.bundle
				f.apply(&b)
				o := verifyBoth(v.quote, &b, v.urls, v.at, roots)
				e := bothReject
				if strings.Contains(f.name, "issuer_chain") && pemNoOp([]byte(fieldOf(v.bundle, f.name)), []byte(fieldOf(&b, f.name))) {
					e = unchanged
				}
				check(t, v, f.name, o, e, "")
			}
		})
	}
}

func fieldOf(b *pcs.Bundle, name string) string {
	switch {
	case strings.HasPrefix(name, "tcb_info_issuer_chain"):
		return b.TCBInfoIssuerChain
	case strings.HasPrefix(name, "qe_identity_issuer_chain"):
		return b.QEIdentityIssuerChain
	}
	return ""
}

// validity is a named validity window of one piece of the evidence.
type validity struct {
	name                string
	from, until         time.Time
	fromName, untilName string
	// cert: a certificate, whose notBefore go-tdx-guest checks too.
	cert bool
}

// evidenceValidity reads every validity window of v's collateral and
// certificates from the raw data, independently of both verifiers.
func evidenceValidity(tb testing.TB, v *tdxVector) []validity {
	tb.Helper()
	var out []validity
	dates := func(name, text string) {
		var d struct {
			IssueDate  time.Time `json:"issueDate"`
			NextUpdate time.Time `json:"nextUpdate"`
		}
		if err := json.Unmarshal([]byte(text), &d); err != nil {
			tb.Fatal(err)
		}
		out = append(out, validity{name, d.IssueDate, d.NextUpdate, "issueDate", "nextUpdate", false})
	}
	dates("tcbInfo", v.bundle.TCBInfo)
	dates("QE identity", v.bundle.QEIdentity)
	crl := func(name, h string) {
		der, err := hex.DecodeString(h)
		if err != nil {
			tb.Fatal(err)
		}
		c, err := x509.ParseRevocationList(der)
		if err != nil {
			tb.Fatal(err)
		}
		out = append(out, validity{name, c.ThisUpdate, c.NextUpdate, "thisUpdate", "nextUpdate", false})
	}
	crl("PCK CRL", v.bundle.PCKCRL)
	crl("root CA CRL", v.bundle.RootCACRL)
	r := tdxV4Regions(tb, v.quote)
	seen := map[string]bool{}
	for _, ch := range []struct{ name, pem string }{
		{"PCK chain", string(v.quote[r.pckChain[0]:r.pckChain[1]])},
		{"tcb_info_issuer_chain", v.bundle.TCBInfoIssuerChain},
		{"qe_identity_issuer_chain", v.bundle.QEIdentityIssuerChain},
		{"pck_crl_issuer_chain", v.bundle.PCKCRLIssuerChain},
	} {
		for _, c := range parsePEMCerts(tb, ch.pem) {
			if seen[string(c.Raw)] {
				continue
			}
			seen[string(c.Raw)] = true
			name := fmt.Sprintf("%s %q", ch.name, c.Subject.CommonName)
			out = append(out, validity{name, c.NotBefore, c.NotAfter, "notBefore", "notAfter", true})
		}
	}
	return out
}

func TestDifferentialTDXTime(t *testing.T) {
	roots := intelRootPool(t)
	for _, v := range tdxVectors(t) {
		t.Run(v.name, func(t *testing.T) {
			type timeCase struct {
				name string
				at   time.Time
				// before is set for "just before the start of a
				// collateral (not certificate) window".
				before bool
			}
			var cases []timeCase
			var latestFrom, latestCertFrom, earliestUntil time.Time
			for _, w := range evidenceValidity(t, v) {
				cases = append(cases,
					timeCase{fmt.Sprintf("1s before %s %s %s", w.name, w.fromName, w.from.Format(time.RFC3339)), w.from.Add(-time.Second), !w.cert},
					timeCase{fmt.Sprintf("1s after %s %s %s", w.name, w.untilName, w.until.Format(time.RFC3339)), w.until.Add(time.Second), false})
				if w.from.After(latestFrom) {
					latestFrom = w.from
				}
				if w.cert && w.from.After(latestCertFrom) {
					latestCertFrom = w.from
				}
				if earliestUntil.IsZero() || w.until.Before(earliestUntil) {
					earliestUntil = w.until
				}
			}
			if v.at.Before(latestFrom) || v.at.After(earliestUntil) {
				t.Fatalf("vector time %v is outside the validity window %v..%v", v.at, latestFrom, earliestUntil)
			}
			t.Logf("validity window %s .. %s (certificates from %s)", latestFrom.Format(time.RFC3339), earliestUntil.Format(time.RFC3339), latestCertFrom.Format(time.RFC3339))
			cases = append(cases,
				timeCase{"10 years later", v.at.AddDate(10, 0, 0), false},
				timeCase{"10 years earlier", v.at.AddDate(-10, 0, 0), false})
			sort.SliceStable(cases, func(i, j int) bool { return cases[i].at.Before(cases[j].at) })
			for _, c := range cases {
				if !c.at.Before(latestFrom) && !c.at.After(earliestUntil) {
					continue // inside the window: an edge that is not the binding one
				}
				o := verifyBoth(v.quote, v.bundle, v.urls, c.at, roots)
				e, why := bothReject, ""
				if !c.at.Before(latestCertFrom) && c.at.Before(latestFrom) {
					// Every certificate is valid, only a collateral
					// window has not started: go-tdx-guest does not look.
					e, why = gapOursStricter, whyNotYetValid
				}
				check(t, v, c.name, o, e, why)
			}
		})
	}
}

func TestDifferentialTDXTrailingBytes(t *testing.T) {
	roots := intelRootPool(t)
	for _, v := range tdxVectors(t) {
		t.Run(v.name, func(t *testing.T) {
			for _, extra := range [][]byte{{0}, make([]byte, 64), []byte("trailing garbage\xff")} {
				raw := append(bytes.Clone(v.quote), extra...)
				o := verifyBoth(raw, v.bundle, v.urls, v.at, roots)
				// Known deliberate divergence in reporting only (see the
				// file comment): the results must be unchanged.
				check(t, v, fmt.Sprintf("%d bytes appended", len(extra)), o, unchanged, "")
				if o.ours == nil {
					warned := false
					for _, w := range o.claims.Warnings {
						warned = warned || strings.Contains(w, "after the quote's declared end")
					}
					if !warned {
						t.Errorf("%d trailing bytes accepted without a warning: %q", len(extra), o.claims.Warnings)
					}
				}
			}
		})
	}
}

// withPCKChain returns raw with its PCK certificate chain replaced by chain,
// with the three enclosing length fields adjusted. None of them is signed.
func withPCKChain(tb testing.TB, raw, chain []byte) []byte {
	tb.Helper()
	r := tdxV4Regions(tb, raw)
	delta := len(chain) - (r.pckChain[1] - r.pckChain[0])
	out := append(append(bytes.Clone(raw[:r.pckChain[0]]), chain...), raw[r.pckChain[1]:]...)
	// r.structure: signature data size, outer type, outer size, QE auth
	// data size, inner type, inner size.
	for _, off := range []int{r.structure[0], r.structure[2], r.structure[5]} {
		binary.LittleEndian.PutUint32(out[off:], uint32(int(binary.LittleEndian.Uint32(out[off:]))+delta))
	}
	return out
}

// TestDifferentialTDXChainShapes re-encodes the PCK certificate chain (not
// covered by any quote signature) in other shapes.
func TestDifferentialTDXChainShapes(t *testing.T) {
	roots := intelRootPool(t)
	for _, v := range tdxVectors(t) {
		t.Run(v.name, func(t *testing.T) {
			r := tdxV4Regions(t, v.quote)
			chain := v.quote[r.pckChain[0]:r.pckChain[1]]
			trimmed := bytes.TrimRight(chain, "\x00")
			b := pemBlocks(chain)
			if len(b) != 3 {
				t.Fatalf("%d PEM blocks in the PCK chain, want 3", len(b))
			}
			enc := func(ders ...[]byte) []byte {
				var out []byte
				for _, d := range ders {
					out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: d})...)
				}
				return out
			}
			plus := func(tail ...byte) []byte { return append(bytes.Clone(trimmed), tail...) }
			for _, c := range []struct {
				name  string
				chain []byte
				e     expect
				why   string
			}{
				{"no NUL", trimmed, unchanged, ""},
				{"one NUL", plus(0), unchanged, ""},
				{"re-encoded PEM", enc(b...), unchanged, ""},
				{"CRLF line endings", bytes.ReplaceAll(trimmed, []byte("\n"), []byte("\r\n")), unchanged, ""},
				{"leading newline", append([]byte("\n"), chain...), unchanged, ""},
				{"leading text", append([]byte("junk\n"), chain...), unchanged, ""},
				{"two NULs", plus(0, 0), bothReject, ""},
				{"trailing space", plus(' '), bothReject, ""},
				{"trailing newline", plus('\n'), bothReject, ""},
				{"trailing CRLF", plus('\r', '\n'), bothReject, ""},
				{"leaf and CA only", enc(b[0], b[1]), bothReject, ""},
				{"root twice", enc(b[0], b[1], b[2], b[2]), bothReject, ""},
				{"CA, leaf, root", enc(b[1], b[0], b[2]), bothReject, ""},
				{"leaf, root, CA", enc(b[0], b[2], b[1]), bothReject, ""},
				{"leaf only", enc(b[0]), bothReject, ""},
				{"leaf and root", enc(b[0], b[2]), bothReject, ""},
				{"empty", nil, bothReject, ""},
			} {
				o := verifyBoth(withPCKChain(t, v.quote, c.chain), v.bundle, v.urls, v.at, roots)
				check(t, v, c.name, o, c.e, c.why)
			}
		})
	}
}
