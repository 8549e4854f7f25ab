package sim

import (
	"context"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/cloister-dev/cloister/evidence"
	"github.com/cloister-dev/cloister/evidence/pcs"
	"github.com/cloister-dev/cloister/evidence/tdx"
)

// These tests hold evidence/dcap to Intel's Quote Verification Library
// (QVL, Src/AttestationLibrary): each builds validly signed collateral or
// quotes that differ from the sim's defaults in one rule and checks the
// verdict Intel's library gives. The QVL step or file is named in each case.

type rules struct {
	p  *PKI
	at time.Time
}

func newRules(t *testing.T) *rules {
	return &rules{p: testPKI(t), at: testNow.Add(time.Hour)}
}

func (r *rules) col(t *testing.T, isTDX bool, edit CollateralEdit) *pcs.Bundle {
	t.Helper()
	b, err := r.p.CollateralWith(rand.Reader, testNow, isTDX, edit)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// tdxQuote is a sim TDX quote whose body mutate may change first.
func (r *rules) tdxQuote(t *testing.T, v5 bool, mutate func(*tdx.Body)) []byte {
	t.Helper()
	b := tdx.Body{TEETCBSVN: TEETCBSVN}
	b.MRTD[0] = 0x42
	if mutate != nil {
		mutate(&b)
	}
	q, err := r.p.QuoteTDXBody(rand.Reader, b, v5)
	if err != nil {
		t.Fatal(err)
	}
	return q
}

func (r *rules) sgxQuote(t *testing.T) []byte {
	t.Helper()
	q, err := r.p.QuoteSGX(rand.Reader, SGXReport{MRENCLAVE: [32]byte{1}, MRSIGNER: [32]byte{2}})
	if err != nil {
		t.Fatal(err)
	}
	return q
}

func (r *rules) verify(quote []byte, col *pcs.Bundle) (*evidence.Claims, error) {
	return evidence.NewVerifier().Verify(context.Background(), quote, evidence.Options{Time: r.at, Collateral: col, TrustRoots: []*x509.Certificate{r.p.Root}})
}

// wantStatus fails unless quote verifies under col with status want.
func (r *rules) wantStatus(t *testing.T, name string, quote []byte, col *pcs.Bundle, want string) *evidence.Claims {
	t.Helper()
	c, err := r.verify(quote, col)
	if err != nil {
		t.Errorf("%s: %v; want status %s", name, err, want)
		return nil
	}
	if c.TCBStatus != want {
		t.Errorf("%s: status %s; want %s", name, c.TCBStatus, want)
	}
	return c
}

// wantError fails unless verification fails with reason and a message
// containing each of substrings.
func (r *rules) wantError(t *testing.T, name string, quote []byte, col *pcs.Bundle, reason evidence.Reason, substrings ...string) {
	t.Helper()
	c, err := r.verify(quote, col)
	if err == nil {
		t.Errorf("%s: verified with status %s; want a %v error", name, c.TCBStatus, reason)
		return
	}
	if got, _ := evidence.ReasonOf(err); got != reason {
		t.Errorf("%s: reason %v (%v); want %v", name, got, err, reason)
	}
	for _, s := range substrings {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("%s: %q does not say %q", name, err, s)
		}
	}
}

// Helpers over the decoded collateral JSON.
func levels(m map[string]any) []any { return m["tcbLevels"].([]any) }

func level(m map[string]any, i int) map[string]any { return levels(m)[i].(map[string]any) }

func moduleIdentity(ti map[string]any, i int) map[string]any {
	return ti["tdxModuleIdentities"].([]any)[i].(map[string]any)
}

func hex48(b byte) string {
	return strings.Repeat(strings.ToUpper(string("0123456789abcdef"[b>>4])+string("0123456789abcdef"[b&15])), 48)
}

// QVL TcbInfo::parsePartV3: TDX TCB info must have tdxModule, SGX TCB info
// must have neither tdxModule nor tdxModuleIdentities.
func TestQVLTCBInfoModuleFields(t *testing.T) {
	r := newRules(t)
	module := map[string]any{"mrsigner": hex48(0), "attributes": "0000000000000000", "attributesMask": "FFFFFFFFFFFFFFFF"}
	r.wantError(t, "TDX without tdxModule", r.tdxQuote(t, false, nil),
		r.col(t, true, func(ti, _ map[string]any) { delete(ti, "tdxModule") }), evidence.Malformed, "tdxModule")
	r.wantError(t, "SGX with tdxModule", r.sgxQuote(t),
		r.col(t, false, func(ti, _ map[string]any) { ti["tdxModule"] = module }), evidence.Malformed, "tdxModule")
	r.wantError(t, "SGX with tdxModuleIdentities", r.sgxQuote(t),
		r.col(t, false, func(ti, _ map[string]any) { ti["tdxModuleIdentities"] = []any{module} }), evidence.Malformed, "tdxModuleIdentities")
	r.wantError(t, "TDX with empty tdxModuleIdentities", r.tdxQuote(t, false, nil),
		r.col(t, true, func(ti, _ map[string]any) { ti["tdxModuleIdentities"] = []any{} }), evidence.Malformed, "tdxModuleIdentities")
	// Without identities a module of major version 0 is judged by tdxModule alone.
	r.wantStatus(t, "TDX without identities, module version 0", r.tdxQuote(t, false, func(b *tdx.Body) { b.TEETCBSVN[1] = 0; b.TEETCBSVN[0] = 9 }),
		r.col(t, true, func(ti, _ map[string]any) {
			delete(ti, "tdxModuleIdentities")
			// Module version 0 compares TDX components 0 and 1 too.
			c := level(ti, 0)["tcb"].(map[string]any)["tdxtcbcomponents"].([]any)
			c[1].(map[string]any)["svn"] = 0
		}), "UpToDate")
	r.wantError(t, "TDX without identities, module version 1", r.tdxQuote(t, false, nil),
		r.col(t, true, func(ti, _ map[string]any) { delete(ti, "tdxModuleIdentities") }), evidence.CollateralMismatch, "tdxModuleIdentities")
}

// QVL 4.1.2.4.11.2: SEAMATTRIBUTES must be all zero and equal the TCB
// info's attributes, compared without the mask.
func TestQVLSEAMAttributes(t *testing.T) {
	r := newRules(t)
	maskZero := func(ti, _ map[string]any) {
		ti["tdxModule"].(map[string]any)["attributesMask"] = "0000000000000000"
		moduleIdentity(ti, 0)["attributesMask"] = "0000000000000000"
	}
	r.wantError(t, "non-zero SEAMATTRIBUTES under a zero mask", r.tdxQuote(t, false, func(b *tdx.Body) { b.SEAMAttributes[0] = 1 }),
		r.col(t, true, maskZero), evidence.IdentityMismatch, "SEAMATTRIBUTES")
	r.wantError(t, "non-zero SEAMATTRIBUTES equal to the TCB info's", r.tdxQuote(t, false, func(b *tdx.Body) { b.SEAMAttributes[0] = 1 }),
		r.col(t, true, func(ti, _ map[string]any) {
			ti["tdxModule"].(map[string]any)["attributes"] = "0100000000000000"
			moduleIdentity(ti, 0)["attributes"] = "0100000000000000"
		}), evidence.IdentityMismatch, "SEAMATTRIBUTES")
	r.wantError(t, "TCB info attributes not zero, masked off", r.tdxQuote(t, false, nil),
		r.col(t, true, func(ti, qi map[string]any) {
			maskZero(ti, qi)
			moduleIdentity(ti, 0)["attributes"] = "0100000000000000"
		}), evidence.IdentityMismatch, "SEAMATTRIBUTES")
}

// QVL 4.1.2.4.11: for a module of major version > 0, the TDX_<ver>
// identity's signer and attributes replace tdxModule's; tdxModule's are
// not checked then.
func TestQVLModuleIdentityReplacesTDXModule(t *testing.T) {
	r := newRules(t)
	signer := func(b *tdx.Body) {
		for i := range b.MRSignerSeam {
			b.MRSignerSeam[i] = 0xAB
		}
	}
	r.wantStatus(t, "identity signer differs from tdxModule's", r.tdxQuote(t, false, signer),
		r.col(t, true, func(ti, _ map[string]any) { moduleIdentity(ti, 0)["mrsigner"] = hex48(0xAB) }), "UpToDate")
	r.wantError(t, "quote matches tdxModule but not the identity", r.tdxQuote(t, false, nil),
		r.col(t, true, func(ti, _ map[string]any) { moduleIdentity(ti, 0)["mrsigner"] = hex48(0xAB) }), evidence.IdentityMismatch, "MRSIGNERSEAM")
	r.wantError(t, "module version 0 is judged by tdxModule", r.tdxQuote(t, false, func(b *tdx.Body) { signer(b); b.TEETCBSVN[1] = 0 }),
		r.col(t, true, func(ti, _ map[string]any) { moduleIdentity(ti, 0)["mrsigner"] = hex48(0xAB) }), evidence.IdentityMismatch, "MRSIGNERSEAM")
}

// QVL TcbInfo parser: TCB levels are a std::set ordered by SGX components,
// then PCESVN, then (TDX) TDX components, best first, whatever the JSON
// order; two levels equal under that order are a duplicate and an error.
// TDX module levels are ordered by ISVSVN, likewise without duplicates.
func TestQVLTCBLevelOrder(t *testing.T) {
	r := newRules(t)
	reverse := func(l []any) {
		for i, j := 0, len(l)-1; i < j; i, j = i+1, j-1 {
			l[i], l[j] = l[j], l[i]
		}
	}
	for _, isTDX := range []bool{false, true} {
		q := r.sgxQuote(t)
		if isTDX {
			q = r.tdxQuote(t, false, nil)
		}
		r.wantStatus(t, "levels worst first", q, r.col(t, isTDX, func(ti, _ map[string]any) { reverse(levels(ti)) }), "UpToDate")
		r.wantError(t, "duplicate level", q, r.col(t, isTDX, func(ti, _ map[string]any) {
			dup := map[string]any{}
			for k, v := range level(ti, 0) {
				dup[k] = v
			}
			dup["tcbStatus"] = "Revoked"
			ti["tcbLevels"] = append(levels(ti), dup)
		}), evidence.Malformed, "duplicate")
	}
	// Same SGX components and PCESVN, TDX components decide.
	q := r.tdxQuote(t, false, nil)
	r.wantStatus(t, "TDX components order levels", q, r.col(t, true, func(ti, _ map[string]any) {
		lower := map[string]any{"tcbDate": level(ti, 0)["tcbDate"], "tcbStatus": "OutOfDate"}
		tcb := map[string]any{}
		for k, v := range level(ti, 0)["tcb"].(map[string]any) {
			tcb[k] = v
		}
		tcb["tdxtcbcomponents"] = []any{map[string]any{"svn": 0}, map[string]any{"svn": 0}, map[string]any{"svn": 1}, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}
		for i := 3; i < 16; i++ {
			tcb["tdxtcbcomponents"].([]any)[i] = map[string]any{"svn": 0}
		}
		lower["tcb"] = tcb
		ti["tcbLevels"] = append([]any{lower}, levels(ti)...)
	}), "UpToDate")
	// Module levels: worst first in the JSON still picks the best.
	r.wantStatus(t, "module levels worst first", q, r.col(t, true, func(ti, _ map[string]any) {
		m := moduleIdentity(ti, 0)
		m["tcbLevels"] = []any{
			map[string]any{"tcb": map[string]any{"isvsvn": 1}, "tcbDate": "2020-01-01T00:00:00Z", "tcbStatus": "OutOfDate"},
			m["tcbLevels"].([]any)[0],
		}
	}), "UpToDate")
	r.wantError(t, "duplicate module level", q, r.col(t, true, func(ti, _ map[string]any) {
		m := moduleIdentity(ti, 0)
		m["tcbLevels"] = append(m["tcbLevels"].([]any), map[string]any{"tcb": map[string]any{"isvsvn": int(TEETCBSVN[0])}, "tcbDate": "2020-01-01T00:00:00Z", "tcbStatus": "Revoked"})
	}), evidence.Malformed, "duplicate")
}

// QVL TcbStatus.h, TdxModuleCheck.cpp and EnclaveReportVerifier.cpp: which
// statuses a module or QE level may have and what they count as.
func TestQVLComponentStatuses(t *testing.T) {
	r := newRules(t)
	tq := r.tdxQuote(t, false, nil)
	moduleStatus := func(s string) CollateralEdit {
		return func(ti, _ map[string]any) {
			moduleIdentity(ti, 0)["tcbLevels"].([]any)[0].(map[string]any)["tcbStatus"] = s
		}
	}
	r.wantError(t, "module level ConfigurationNeeded", tq, r.col(t, true, moduleStatus("ConfigurationNeeded")), evidence.Malformed, "ConfigurationNeeded")
	r.wantError(t, "module level SWHardeningNeeded", tq, r.col(t, true, moduleStatus("SWHardeningNeeded")), evidence.Malformed, "SWHardeningNeeded")
	r.wantStatus(t, "module level OutOfDate", tq, r.col(t, true, moduleStatus("OutOfDate")), "OutOfDate")
	r.wantStatus(t, "module level Revoked", tq, r.col(t, true, moduleStatus("Revoked")), "Revoked")
	// An unused module identity's levels are not judged (Intel parses any string there).
	r.wantStatus(t, "unused module identity with an odd status", tq, r.col(t, true, func(ti, _ map[string]any) {
		other := map[string]any{"id": "TDX_07", "mrsigner": hex48(0), "attributes": "0000000000000000", "attributesMask": "FFFFFFFFFFFFFFFF",
			"tcbLevels": []any{map[string]any{"tcb": map[string]any{"isvsvn": 1}, "tcbDate": "2020-01-01T00:00:00Z", "tcbStatus": "Whatever"}}}
		ti["tdxModuleIdentities"] = append(ti["tdxModuleIdentities"].([]any), other)
	}), "UpToDate")

	qeStatus := func(s string) CollateralEdit {
		return func(_, qi map[string]any) { level(qi, 0)["tcbStatus"] = s }
	}
	for _, isTDX := range []bool{false, true} {
		q := r.sgxQuote(t)
		if isTDX {
			q = tq
		}
		r.wantStatus(t, "QE level ConfigurationNeeded counts as OutOfDate", q, r.col(t, isTDX, qeStatus("ConfigurationNeeded")), "OutOfDate")
		r.wantStatus(t, "QE level OutOfDateConfigurationNeeded counts as OutOfDate", q, r.col(t, isTDX, qeStatus("OutOfDateConfigurationNeeded")), "OutOfDate")
		r.wantStatus(t, "QE level Revoked", q, r.col(t, isTDX, qeStatus("Revoked")), "Revoked")
		r.wantError(t, "QE level SWHardeningNeeded is not a QE status", q, r.col(t, isTDX, qeStatus("SWHardeningNeeded")), evidence.Malformed, "SWHardeningNeeded")
		r.wantError(t, "QE ISVSVN below every level", q, r.col(t, isTDX, func(_, qi map[string]any) {
			level(qi, 0)["tcb"] = map[string]any{"isvsvn": QESVN + 1}
		}), evidence.TCBNotSupported, "QE")
	}
}

// QVL EnclaveReportVerifier 4.1.2.9.5/6: the QE's masked MISCSELECT and
// ATTRIBUTES are compared with the identity's values as they stand, not
// masked.
func TestQVLQEIdentityUnmaskedValues(t *testing.T) {
	r := newRules(t)
	q := r.sgxQuote(t)
	r.wantError(t, "identity attributes outside the mask", q, r.col(t, false, func(_, qi map[string]any) {
		qi["attributes"] = "11000000000000000000000000000001"
	}), evidence.IdentityMismatch, "ATTRIBUTES")
	r.wantError(t, "identity miscselect outside the mask", q, r.col(t, false, func(_, qi map[string]any) {
		qi["miscselect"], qi["miscselectMask"] = "01000000", "00000000"
	}), evidence.IdentityMismatch, "MISCSELECT")
}

// TDX 1.5 (quote v5, body type 3): TEE_TCB_SVN2 is in the claims, and
// Intel's TD relaunch rule (QVL TDRelaunchCheck) gives its status, with
// tdx_relaunch_advised beside it.
func TestQVLTDRelaunch(t *testing.T) {
	r := newRules(t)
	// The TD runs module SVN 3 (OutOfDate); SVN 5 is the newest (UpToDate).
	newerModule := func(platformStatus string) CollateralEdit {
		return func(ti, _ map[string]any) {
			m := moduleIdentity(ti, 0)
			m["tcbLevels"] = []any{
				map[string]any{"tcb": map[string]any{"isvsvn": 5}, "tcbDate": "2026-01-01T00:00:00Z", "tcbStatus": "UpToDate"},
				map[string]any{"tcb": map[string]any{"isvsvn": int(TEETCBSVN[0])}, "tcbDate": "2025-01-01T00:00:00Z", "tcbStatus": "OutOfDate"},
			}
			level(ti, 0)["tcbStatus"] = platformStatus
		}
	}
	quote := func(svn2 [16]byte) []byte {
		return r.tdxQuote(t, true, func(b *tdx.Body) { b.TEETCBSVN2, b.MRServiceTD = &svn2, &[48]byte{7} })
	}
	for _, tc := range []struct {
		name     string
		svn2     [16]byte
		platform string
		want     string
		advised  bool
	}{
		{"relaunch reaches the newest module", [16]byte{5, 1, 2}, "UpToDate", "TDRelaunchAdvised", true},
		{"relaunch, configuration needed", [16]byte{5, 1, 2}, "ConfigurationNeeded", "TDRelaunchAdvisedConfigurationNeeded", true},
		{"relaunch would not reach the newest module", [16]byte{4, 1, 2}, "UpToDate", "OutOfDate", false},
		{"relaunch would not reach TDX component 2", [16]byte{5, 1, 1}, "UpToDate", "OutOfDate", false},
		{"module version 0 in SVN2 compares with the platform level", [16]byte{3, 0, 2}, "UpToDate", "TDRelaunchAdvised", true},
	} {
		c := r.wantStatus(t, tc.name, quote(tc.svn2), r.col(t, true, newerModule(tc.platform)), tc.want)
		if c == nil {
			continue
		}
		if got := c.TEETCBSVN2.String(); got != fmt.Sprintf("%x", tc.svn2) {
			t.Errorf("%s: tee_tcb_svn2 %s; want %x", tc.name, got, tc.svn2)
		}
		if c.RelaunchAdvised != tc.advised {
			t.Errorf("%s: tdx_relaunch_advised %v; want %v", tc.name, c.RelaunchAdvised, tc.advised)
		}
	}
	r.wantError(t, "SVN2 names a module with no identity", quote([16]byte{5, 9, 2}), r.col(t, true, newerModule("UpToDate")), evidence.IdentityMismatch, "TDX_09")
	// The rule needs an up-to-date QE.
	r.wantStatus(t, "QE out of date: no relaunch", quote([16]byte{5, 1, 2}), r.col(t, true, func(ti, qi map[string]any) {
		newerModule("UpToDate")(ti, qi)
		level(qi, 0)["tcbStatus"] = "OutOfDate"
	}), "OutOfDate")
	// A v4 quote and a TDX 1.0 body have no TEE_TCB_SVN2.
	c := r.wantStatus(t, "v4", r.tdxQuote(t, false, nil), r.col(t, true, nil), "UpToDate")
	if c != nil && (c.TEETCBSVN2 != nil || c.RelaunchAdvised) {
		t.Errorf("v4 quote: tee_tcb_svn2 %v, relaunch %v", c.TEETCBSVN2, c.RelaunchAdvised)
	}
	out, _ := json.Marshal(r.wantStatus(t, "v5 JSON", quote([16]byte{5, 1, 2}), r.col(t, true, newerModule("UpToDate")), "TDRelaunchAdvised"))
	if !strings.Contains(string(out), `"tee_tcb_svn2":"05010200000000000000000000000000"`) || !strings.Contains(string(out), `"tdx_relaunch_advised":true`) {
		t.Errorf("claims JSON %s lacks tee_tcb_svn2 or tdx_relaunch_advised", out)
	}
}

// QVL TCBSigningChain::verify: a TCB info or QE identity issuer chain is the
// TCB signing certificate and the root; the signer alone is refused.
func TestQVLSigningChainHasRoot(t *testing.T) {
	r := newRules(t)
	q := r.sgxQuote(t)
	signerOnly := string(certPEM(r.p.TCBSigning))
	for _, tc := range []struct {
		name string
		edit func(b *pcs.Bundle)
	}{
		{"TCB info chain without root", func(b *pcs.Bundle) { b.TCBInfoIssuerChain = signerOnly }},
		{"QE identity chain without root", func(b *pcs.Bundle) { b.QEIdentityIssuerChain = signerOnly }},
	} {
		b := r.col(t, false, nil)
		tc.edit(b)
		r.wantError(t, tc.name, q, b, evidence.UntrustedRoot, "root")
	}
}

// crlDER builds a CRL signed by key for issuer, with or without the CRL
// number and authority key identifier extensions (Go's
// x509.CreateRevocationList always writes both).
func crlDER(t *testing.T, issuer *x509.Certificate, key *ecdsa.PrivateKey, number, aki bool) []byte {
	t.Helper()
	var exts []pkix.Extension
	if aki {
		v, err := asn1.Marshal(struct {
			ID []byte `asn1:"optional,tag:0"`
		}{issuer.SubjectKeyId})
		if err != nil {
			t.Fatal(err)
		}
		exts = append(exts, pkix.Extension{Id: asn1.ObjectIdentifier{2, 5, 29, 35}, Value: v})
	}
	if number {
		v, _ := asn1.Marshal(big.NewInt(7))
		exts = append(exts, pkix.Extension{Id: asn1.ObjectIdentifier{2, 5, 29, 20}, Value: v})
	}
	alg := pkix.AlgorithmIdentifier{Algorithm: asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 2}}
	tbs := pkix.TBSCertificateList{Version: 1, Signature: alg, Issuer: pkix.RDNSequence{},
		ThisUpdate: testNow.Add(-time.Hour).UTC(), NextUpdate: testNow.Add(CollateralValidity).UTC(), Extensions: exts}
	if _, err := asn1.Unmarshal(issuer.RawSubject, &tbs.Issuer); err != nil {
		t.Fatal(err)
	}
	tbsDER, err := asn1.Marshal(tbs)
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.Sum256(tbsDER)
	sig, err := ecdsa.SignASN1(rand.Reader, key, h[:])
	if err != nil {
		t.Fatal(err)
	}
	der, err := asn1.Marshal(struct {
		TBS    asn1.RawValue
		Alg    pkix.AlgorithmIdentifier
		Signed asn1.BitString
	}{asn1.RawValue{FullBytes: tbsDER}, alg, asn1.BitString{Bytes: sig, BitLength: 8 * len(sig)}})
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// QVL PckCrlVerifier::verify: a CRL must carry the CRL number and
// authority key identifier extensions (CRL_REQUIRED_EXTENSIONS).
func TestQVLCRLExtensions(t *testing.T) {
	r := newRules(t)
	q := r.sgxQuote(t)
	for _, tc := range []struct {
		name        string
		number, aki bool
		ok          bool
	}{
		{"both", true, true, true},
		{"no CRL number", false, true, false},
		{"no authority key identifier", true, false, false},
	} {
		for _, which := range []string{"root CA CRL", "PCK CRL"} {
			b := r.col(t, false, nil)
			if which == "root CA CRL" {
				b.RootCACRL = hex.EncodeToString(crlDER(t, r.p.Root, r.p.rootKey, tc.number, tc.aki))
			} else {
				b.PCKCRL = hex.EncodeToString(crlDER(t, r.p.PCKCA, r.p.pckCAKey, tc.number, tc.aki))
			}
			if tc.ok {
				r.wantStatus(t, which+" "+tc.name, q, b, "UpToDate")
			} else {
				r.wantError(t, which+" "+tc.name, q, b, evidence.Malformed, which)
			}
		}
	}
}

// The PCK certificate's SGX type, platform instance ID and configuration
// are claims (issue 12 item 7).
func TestPCKPlatformClaims(t *testing.T) {
	r := newRules(t)
	c := r.wantStatus(t, "sim SGX", r.sgxQuote(t), r.col(t, false, nil), "UpToDate")
	if c == nil {
		return
	}
	out, _ := json.Marshal(c)
	for _, want := range []string{`"sgx_type":"scalable"`, `"platform_instance_id":"` + hex.EncodeToString(PlatformInstanceID[:]) + `"`,
		`"dynamic_platform":false`, `"cached_keys":false`, `"smt_enabled":false`} {
		if !strings.Contains(string(out), want) {
			t.Errorf("claims %s lack %s", out, want)
		}
	}
}

// QVL 4.1.2.4.4 and TCBSigningChain::verify: the PCK certificate's subject
// CN contains "SGX PCK Certificate", the collateral signer's "SGX TCB
// Signing" and the root's "SGX Root CA".
func TestQVLCertificateNames(t *testing.T) {
	r := newRules(t)
	reissue := func(c *x509.Certificate, cn string, parent *x509.Certificate, key, parentKey *ecdsa.PrivateKey) *x509.Certificate {
		tmpl := *c
		tmpl.Subject, tmpl.RawSubject = pkix.Name{CommonName: cn}, nil
		tmpl.ExtraExtensions = c.Extensions
		tmpl.Extensions = nil
		out, err := sign(rand.Reader, &tmpl, parent, key, parentKey)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	col := r.col(t, false, nil)
	pck := r.p.PCK
	r.p.PCK = reissue(pck, "Some Platform Key", r.p.PCKCA, r.p.pckKey, r.p.pckCAKey)
	r.wantError(t, "PCK certificate not named SGX PCK Certificate", r.sgxQuote(t), col, evidence.Malformed, "SGX PCK Certificate")
	r.p.PCK = pck
	signer := r.p.TCBSigning
	r.p.TCBSigning = reissue(signer, "Some Signer", r.p.Root, r.p.tcbKey, r.p.rootKey)
	r.wantError(t, "collateral signer not named SGX TCB Signing", r.sgxQuote(t), r.col(t, false, nil), evidence.UntrustedRoot, "SGX TCB Signing")
	r.p.TCBSigning = signer
	r.wantStatus(t, "names restored", r.sgxQuote(t), r.col(t, false, nil), "UpToDate")
}

// QVL TdxModuleIdentity and TdxModuleTcbLevel: every module identity has a
// string id, and each of its levels a string tcbStatus, whether or not the
// quote's module is the one it describes: Intel's parser refuses the TCB
// info otherwise.
func TestQVLModuleIdentityRequiredFields(t *testing.T) {
	r := newRules(t)
	extra := func(edit func(id map[string]any)) CollateralEdit {
		return func(ti, _ map[string]any) {
			id := map[string]any{"id": "TDX_07", "mrsigner": hex48(0), "attributes": "0000000000000000", "attributesMask": "FFFFFFFFFFFFFFFF",
				"tcbLevels": []any{map[string]any{"tcb": map[string]any{"isvsvn": 1}, "tcbDate": "2024-01-01T00:00:00Z", "tcbStatus": "UpToDate"}}}
			edit(id)
			ti["tdxModuleIdentities"] = append(ti["tdxModuleIdentities"].([]any), id)
		}
	}
	q := r.tdxQuote(t, false, nil)
	r.wantStatus(t, "unused identity TDX_07", q, r.col(t, true, extra(func(map[string]any) {})), "UpToDate")
	r.wantError(t, "identity without id", q, r.col(t, true, extra(func(id map[string]any) { delete(id, "id") })), evidence.Malformed, "id")
	r.wantError(t, "identity with a numeric id", q, r.col(t, true, extra(func(id map[string]any) { id["id"] = 7 })), evidence.Malformed)
	r.wantError(t, "unused module level without tcbStatus", q, r.col(t, true, extra(func(id map[string]any) {
		delete(id["tcbLevels"].([]any)[0].(map[string]any), "tcbStatus")
	})), evidence.Malformed, "tcbStatus")
}

// QVL TCBSigningChain and PckCertVerifier: the root a chain carries must be
// the trusted root itself (Intel compares their signatures), not another
// certificate for the same key, such as one re-issued with other dates.
func TestQVLChainRootIsTheTrustedRoot(t *testing.T) {
	r := newRules(t)
	tmpl := *r.p.Root
	tmpl.SerialNumber = new(big.Int).Add(r.p.Root.SerialNumber, big.NewInt(1))
	tmpl.NotAfter = r.p.Root.NotAfter.Add(24 * time.Hour)
	der, err := x509.CreateCertificate(rand.Reader, &tmpl, &tmpl, r.p.rootKey.Public(), r.p.rootKey)
	if err != nil {
		t.Fatal(err)
	}
	twin, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	q := r.sgxQuote(t)
	r.wantStatus(t, "chain with the trusted root", q, r.col(t, false, nil), "UpToDate")
	b := r.col(t, false, nil)
	b.TCBInfoIssuerChain = string(certPEM(r.p.TCBSigning)) + string(certPEM(twin))
	r.wantError(t, "TCB info chain with a re-issued root", q, b, evidence.UntrustedRoot, "root")
}

// QVL CrlStore::isRevoked compares a CRL entry's serial number with the
// certificate's by magnitude (the ASN1_INTEGER's bytes against BN_bn2bin
// of the certificate's serial), so an entry written as the negative of a
// certificate's serial revokes that certificate.
func TestQVLRevokedSerialMagnitude(t *testing.T) {
	r := newRules(t)
	q := r.sgxQuote(t)
	for _, tc := range []struct {
		name   string
		serial *big.Int
	}{
		{"serial", r.p.PCK.SerialNumber},
		{"negated serial", new(big.Int).Neg(r.p.PCK.SerialNumber)},
	} {
		der, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{
			Number: big.NewInt(9), ThisUpdate: testNow.Add(-time.Hour), NextUpdate: testNow.Add(CollateralValidity),
			RevokedCertificateEntries: []x509.RevocationListEntry{{SerialNumber: tc.serial, RevocationTime: testNow.Add(-time.Hour)}},
		}, r.p.PCKCA, r.p.pckCAKey)
		if err != nil {
			t.Fatal(err)
		}
		b := r.col(t, false, nil)
		b.PCKCRL = hex.EncodeToString(der)
		r.wantError(t, "PCK CRL listing the PCK certificate's "+tc.name, q, b, evidence.Revoked)
	}
}

// QVL CommonVerifier and TCBSigningChain check certificate signatures with
// ECDSA P-256 and SHA-256 only (crypto::verifySha256EcdsaSignature): a
// certificate the root signed with SHA-384 does not verify there.
func TestQVLCertificateSignaturesAreSHA256(t *testing.T) {
	r := newRules(t)
	tmpl := *r.p.TCBSigning
	tmpl.SignatureAlgorithm = x509.ECDSAWithSHA384
	der, err := x509.CreateCertificate(rand.Reader, &tmpl, r.p.Root, r.p.TCBSigning.PublicKey, r.p.rootKey)
	if err != nil {
		t.Fatal(err)
	}
	signer384, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	q := r.sgxQuote(t)
	b := r.col(t, false, nil)
	b.TCBInfoIssuerChain = string(certPEM(signer384)) + string(certPEM(r.p.Root))
	r.wantError(t, "TCB signing certificate signed with ECDSA-SHA384", q, b, evidence.Unsupported, "SHA256")
}

// QVL x509::Certificate (REQUIRED_X509_EXTENSIONS): every certificate of
// the PCK and TCB signing chains, the root included, carries the authority
// and subject key identifiers, CRL distribution points, key usage and
// basic constraints; Intel's parser refuses one without any of them.
func TestQVLCertificateRequiredExtensions(t *testing.T) {
	r := newRules(t)
	q := r.sgxQuote(t)
	for _, tc := range []struct {
		name string
		edit func(c *x509.Certificate)
	}{
		{"no CRL distribution points", func(c *x509.Certificate) { c.CRLDistributionPoints = nil }},
		{"no key usage", func(c *x509.Certificate) { c.KeyUsage = 0 }},
		{"no basic constraints", func(c *x509.Certificate) { c.BasicConstraintsValid = false }},
	} {
		tmpl := *r.p.TCBSigning
		tmpl.ExtraExtensions, tmpl.Extensions = nil, nil
		tc.edit(&tmpl)
		der, err := x509.CreateCertificate(rand.Reader, &tmpl, r.p.Root, r.p.TCBSigning.PublicKey, r.p.rootKey)
		if err != nil {
			t.Fatal(err)
		}
		signer, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		b := r.col(t, false, nil)
		b.TCBInfoIssuerChain = string(certPEM(signer)) + string(certPEM(r.p.Root))
		r.wantError(t, "TCB signing certificate with "+tc.name, q, b, evidence.Malformed, "extension")
	}
}
