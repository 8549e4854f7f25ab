package ratls

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"errors"
	"math/big"
	"strings"
	"testing"

	"github.com/cloister-dev/cloister/evidence"
	"github.com/cloister-dev/cloister/evidence/pcs"
	"github.com/cloister-dev/cloister/policy"
	"github.com/cloister-dev/cloister/tee"
	"github.com/cloister-dev/cloister/tee/sim"
)

// mixedFormCert makes a certificate for one key whose CCC extension holds
// a sim-sgx quote of cccApp and whose legacy extension (form) holds a
// quote of legacyApp taken on legacyKind, each bound to the key by its
// form's rule. twoFormCert is the case legacyKind = sim-sgx.
func mixedFormCert(t *testing.T, e *simEnv, cccApp sim.App, legacyKind tee.Kind, legacyApp sim.App, form Form) *x509.Certificate {
	t.Helper()
	ctx := context.Background()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	spki, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	claims, err := encodeClaims(spki, nil)
	if err != nil {
		t.Fatal(err)
	}
	q1, err := e.platform(t, tee.KindSimSGX, cccApp).Evidence(ctx, cccReportData(claims))
	if err != nil {
		t.Fatal(err)
	}
	ccc, err := encodeCCC(q1, claims)
	if err != nil {
		t.Fatal(err)
	}
	q2, err := e.platform(t, legacyKind, legacyApp).Evidence(ctx, legacyReportData(spki))
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "mixed forms"},
		NotBefore:    simNow.Add(-1e9),
		NotAfter:     simNow.Add(3600e9),
		ExtraExtensions: []pkix.Extension{
			{Id: OIDCCCEvidence, Value: ccc},
			{Id: form.writeOID(), Value: q2},
		},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// A CCC form with an SGX quote beside a legacy form with a TDX quote (each
// genuine, each bound to the key) is two TEEs in one certificate: refused
// whatever the policy, even one that names both identities, and even with
// appraisal skipped.
func TestSeveralFormsOfDifferentTEEKinds(t *testing.T) {
	e := newSim(t)
	ctx := context.Background()
	tdxCol, err := e.pki.Collateral(rand.Reader, simNow, true)
	if err != nil {
		t.Fatal(err)
	}
	// Collateral by quote version: SGX quotes are v3, TDX quotes v4.
	bySource := func(_ context.Context, q []byte) (*pcs.Bundle, error) {
		if len(q) >= 2 && binary.LittleEndian.Uint16(q) >= 4 {
			return tdxCol, nil
		}
		return e.collateral, nil
	}
	mrtd := sim.MRTD(e.app.MRENCLAVE)
	for _, form := range []Form{FormIntelTDX, FormGramine} {
		c := mixedFormCert(t, e, e.app, tee.KindSimTDX, e.app, form)
		// Each form verifies on its own: the refusal is for the mix.
		for _, ev := range mustParseAll(t, c) {
			o := e.opts()
			o.Collateral, o.Policy, o.SkipAppraisal = bySource, policy.Policy{}, true
			v, err := NewVerifier(o)
			if err != nil {
				t.Fatal(err)
			}
			if _, _, err := v.verifyEvidence(ctx, ev.UnverifiedEvidence, simNow); err != nil {
				t.Fatalf("%v: the %v form alone does not verify: %v", form, ev.Form, err)
			}
		}
		both := e.opts()
		both.Collateral = bySource
		both.Policy.MRTD = [][]byte{mrtd[:]}
		skip := e.opts()
		skip.Collateral, skip.Policy, skip.SkipAppraisal = bySource, policy.Policy{}, true
		anyID := e.opts()
		anyID.Collateral, anyID.Policy = bySource, policy.Policy{AnyIdentity: true}
		for name, o := range map[string]VerifyOptions{"pinned sgx": e.opts(), "sgx and tdx named": both, "appraisal skipped": skip, "any identity": anyID} {
			if name == "pinned sgx" {
				o.Collateral = bySource
			}
			_, err := Verify(ctx, c, o)
			if r, ok := evidence.ReasonOf(err); err == nil || (name == "appraisal skipped" && (!ok || r != evidence.BadBinding)) {
				t.Errorf("%v, %s: sgx CCC + tdx legacy: %v, want a refusal (BadBinding without appraisal)", form, name, err)
			}
		}
	}
}

func mustParseAll(t *testing.T, c *x509.Certificate) []*Evidence {
	t.Helper()
	all, err := ParseAll(c)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 2 {
		t.Fatalf("%d forms, want 2", len(all))
	}
	return all
}

// Policies that look like identities but are not: empty (non-nil) lists,
// a signer with an empty list, a product alone. NewVerifier refuses each
// with ErrNoIdentity; an empty entry in a list is malformed.
func TestPartialIdentityRefused(t *testing.T) {
	e := newSim(t)
	one := uint16(3)
	for name, p := range map[string]policy.Policy{
		"empty mrenclave list":         {MRENCLAVE: [][]byte{}},
		"empty lists everywhere":       {MRENCLAVE: [][]byte{}, MRSIGNER: [][]byte{}, MRTD: [][]byte{}, Measurement: [][]byte{}},
		"empty signer list, product":   {MRSIGNER: [][]byte{}, ISVProdID: &one},
		"product without signer":       {ISVProdID: &one, MinISVSVN: &one},
		"signer and svn, no product":   {MRSIGNER: [][]byte{testApp.MRSIGNER[:]}, MinISVSVN: &one},
		"any identity false, explicit": {AnyIdentity: false, AllowDebug: true},
	} {
		o := e.opts()
		o.Policy = p
		if _, err := NewVerifier(o); !errors.Is(err, policy.ErrNoIdentity) {
			t.Errorf("%s: NewVerifier = %v, want ErrNoIdentity", name, err)
		}
	}
	for name, p := range map[string]policy.Policy{
		"nil mrenclave entry":   {MRENCLAVE: [][]byte{nil}},
		"empty mrenclave entry": {MRENCLAVE: [][]byte{{}}},
		"empty mrtd entry":      {MRTD: [][]byte{{}}},
	} {
		o := e.opts()
		o.Policy = p
		if _, err := NewVerifier(o); err == nil {
			t.Errorf("%s: NewVerifier accepted a policy whose only identity entry is empty", name)
		}
	}
}

// Two forms from enclaves with the same measurement and signer but
// different products (ISVPRODID) are two identities: a policy names a
// signer's product as an identity (RequireIdentity), so a verifier
// pinning MRENCLAVE must not accept a certificate in which another
// verifier, reading the other form, sees another product.
func TestSeveralFormsOtherProduct(t *testing.T) {
	e := newSim(t)
	ctx := context.Background()
	other := e.app
	other.ProductID = e.app.ProductID + 1
	pinned := e.opts()
	pinned.Policy.MRSIGNER = nil // MRENCLAVE only: the product is not in the policy
	for _, form := range []Form{FormIntelSGX, FormGramine} {
		c := mixedFormCert(t, e, e.app, tee.KindSimSGX, other, form)
		_, err := Verify(ctx, c, pinned)
		if r, ok := evidence.ReasonOf(err); !ok || r != evidence.BadBinding {
			t.Errorf("%v: same MRENCLAVE, products %d and %d: %v, want a BadBinding refusal", form, e.app.ProductID, other.ProductID, err)
		}
	}
}

// A server that authenticates its clients (mutual RA-TLS) is held to the
// same rule: a peer policy without an identity is refused up front.
func TestServerConfigPeerPolicyNeedsIdentity(t *testing.T) {
	e := newSim(t)
	srv := e.server(t, e.app, nil)
	for name, p := range map[string]policy.Policy{
		"zero":                   {},
		"signer without product": {MRSIGNER: [][]byte{testApp.MRSIGNER[:]}},
	} {
		o := e.opts()
		o.Policy = p
		if _, err := ServerConfig(srv, &o); !errors.Is(err, policy.ErrNoIdentity) {
			t.Errorf("%s: ServerConfig = %v, want ErrNoIdentity", name, err)
		}
	}
	o := e.opts()
	if _, err := ServerConfig(srv, &o); err != nil {
		t.Errorf("pinned peer: %v", err)
	}
}

// When several forms fail the policy differently, the error is the same
// on every run: the forms are appraised in ParseCertificate's order (CCC
// first), not in a map's random order.
func TestSeveralFormsAppraisalOrderIsStable(t *testing.T) {
	e := newSim(t)
	ctx := context.Background()
	oldSVN := e.app
	oldSVN.SVN = 1 // the CCC form: below MinISVSVN
	debugApp := e.app
	debugApp.Debug = true // the legacy form: debug
	c := mixedFormCert(t, e, oldSVN, tee.KindSimSGX, debugApp, FormGramine)
	o := e.opts()
	o.DisableCache = true
	min := e.app.SVN
	o.Policy.MinISVSVN = &min
	var first string
	for i := 0; i < 32; i++ {
		_, err := Verify(ctx, c, o)
		if !errors.Is(err, ErrPolicy) {
			t.Fatalf("run %d: %v, want ErrPolicy", i, err)
		}
		if i == 0 {
			first = err.Error()
			continue
		}
		if err.Error() != first {
			t.Fatalf("run %d: the error changed:\n%v\nthen\n%v", i, first, err)
		}
	}
	if !strings.Contains(first, "isv_svn") {
		t.Errorf("the CCC form's failure (isv_svn) is not the one reported: %v", first)
	}
}

// One form twice is ambiguous whichever way it is spelt: the same OID
// twice (refused by the X.509 parser, so never seen in a handshake, and by
// ParseAll for a certificate built in memory), or a form's two OIDs.
func TestSameFormTwiceRefused(t *testing.T) {
	e := newSim(t)
	good := e.server(t, e.app, nil).Certificate()
	var ccc pkix.Extension
	for _, x := range good.Extensions {
		if x.Id.Equal(OIDCCCEvidence) {
			ccc = x
		}
	}
	if ccc.Id == nil {
		t.Fatal("our certificate has no CCC extension")
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: simNow.Add(-1e9), NotAfter: simNow.Add(3600e9),
		ExtraExtensions: []pkix.Extension{ccc, ccc}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := x509.ParseCertificate(der); err == nil {
		t.Error("the X.509 parser accepted a certificate with the CCC extension twice")
	}

	twice := *good
	twice.Extensions = append(append([]pkix.Extension(nil), good.Extensions...), ccc)
	if _, err := ParseAll(&twice); err == nil {
		t.Error("ParseAll accepted the CCC extension twice")
	}
	if _, err := Verify(context.Background(), &twice, e.opts()); err == nil {
		t.Error("Verify accepted the CCC extension twice")
	}

	q, err := e.platform(t, tee.KindSimSGX, e.app).Evidence(context.Background(), [64]byte{})
	if err != nil {
		t.Fatal(err)
	}
	both := *good
	both.Extensions = append(append([]pkix.Extension(nil), good.Extensions...),
		pkix.Extension{Id: OIDIntelSGXQuote, Value: q}, pkix.Extension{Id: OIDIntelSGXQuoteAlt, Value: q})
	if _, err := ParseAll(&both); err == nil {
		t.Error("ParseAll accepted both Intel SGX OIDs")
	}
}
