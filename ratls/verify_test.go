package ratls

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/cloister-dev/cloister/evidence"
	"github.com/cloister-dev/cloister/evidence/pcs"
	"github.com/cloister-dev/cloister/tee"
	"github.com/cloister-dev/cloister/tee/sim"
)

// Our certificates round-trip through our reader, in every form we write,
// on both sim kinds.
func TestOwnCertificatesRoundTrip(t *testing.T) {
	e := newSim(t)
	ctx := context.Background()
	tdxCol, err := e.pki.Collateral(rand.Reader, simNow, true)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		kind  tee.Kind
		forms []Form
		key   KeyType
	}{
		{tee.KindSimSGX, []Form{FormCCC}, KeyP256},
		{tee.KindSimSGX, []Form{FormCCC, FormIntelSGX, FormGramine}, KeyP384},
		{tee.KindSimSGX, []Form{FormGramine}, KeyP256},
		{tee.KindSimTDX, []Form{FormCCC, FormIntelTDX}, KeyP256},
	} {
		s, err := NewServer(ctx, ServerOptions{Platform: e.platform(t, tc.kind, e.app), Now: fixed(simNow), Forms: tc.forms, KeyType: tc.key,
			Claims: map[string][]byte{"nonce": []byte("n")}})
		if err != nil {
			t.Fatal(err)
		}
		cert := s.Certificate()
		all, err := ParseAll(cert)
		if err != nil {
			t.Fatal(err)
		}
		var got []Form
		for _, ev := range all {
			got = append(got, ev.Form)
		}
		want := slices.Clone(tc.forms)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Errorf("%s: forms %v, want %v", tc.kind, got, want)
		}
		o := e.opts()
		if tc.kind == tee.KindSimTDX {
			o.Collateral = BundleSource(tdxCol)
			mrtd := sim.MRTD(e.app.MRENCLAVE)
			o.Policy.MRENCLAVE, o.Policy.MRSIGNER, o.Policy.MRTD = nil, nil, [][]byte{mrtd[:]}
		}
		for _, ev := range all {
			// Each form alone must verify: strip the others.
			c := *cert
			c.Extensions = nil
			for _, x := range cert.Extensions {
				if formOf(x.Id) == 0 || formOf(x.Id) == ev.Form {
					c.Extensions = append(c.Extensions, x)
				}
			}
			r, err := Verify(ctx, &c, o)
			if err != nil {
				t.Fatalf("%s %v: %v", tc.kind, ev.Form, err)
			}
			if r.Form != ev.Form || !r.KeyBound || r.Claims.TEE != string(tc.kind) || r.Claims.TCBStatus != evidence.StatusUpToDate {
				t.Errorf("%s %v: result %+v claims %+v", tc.kind, ev.Form, r, r.Claims)
			}
		}
	}
}

// Each policy violation named by the issue fails with its own typed reason.
func TestViolations(t *testing.T) {
	e := newSim(t)
	ctx := context.Background()
	good := e.server(t, e.app, nil).Certificate()
	debugApp := e.app
	debugApp.Debug = true
	debugCert := e.server(t, debugApp, nil).Certificate()

	// A certificate whose key is not the one the evidence binds: the
	// extension of a good certificate, copied into a certificate for
	// another key.
	other, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := *good
	tmpl.ExtraExtensions, tmpl.PublicKey = good.Extensions, &other.PublicKey
	der, err := x509.CreateCertificate(rand.Reader, &tmpl, &tmpl, &other.PublicKey, other)
	if err != nil {
		t.Fatal(err)
	}
	unbound, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}

	wrong := e.opts()
	wrong.Policy.MRENCLAVE = [][]byte{make([]byte, 32)}
	outOfDate := e.opts()
	outOfDate.Collateral = BundleSource(e.outOfDateCollateral(t))
	allowOOD := outOfDate
	allowOOD.Policy.AllowStatus = []string{evidence.StatusUpToDate, evidence.StatusOutOfDate}
	untrusted := e.opts()
	untrusted.TrustRoots = nil

	for _, tc := range []struct {
		name   string
		cert   *x509.Certificate
		opts   VerifyOptions
		field  string          // policy mismatch expected, or
		reason evidence.Reason // a verification reason
		is     error
	}{
		{"good", good, e.opts(), "", 0, nil},
		{"wrong mrenclave", good, wrong, "mrenclave", 0, ErrPolicy},
		{"debug", debugCert, e.opts(), "debug", 0, ErrPolicy},
		{"OutOfDate not allowed", good, outOfDate, "tcb_status", 0, ErrPolicy},
		{"OutOfDate allowed", good, allowOOD, "", 0, nil},
		{"untrusted root", good, untrusted, "", evidence.UntrustedRoot, nil},
		{"key not bound", unbound, e.opts(), "", evidence.BadBinding, ErrKeyNotBound},
		{"expired certificate", good, withNow(e.opts(), simNow.Add(25*time.Hour)), "", evidence.Expired, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := Verify(ctx, tc.cert, tc.opts)
			if tc.field == "" && tc.reason == 0 {
				if err != nil {
					t.Fatal(err)
				}
				if tc.name == "OutOfDate allowed" && r.Claims.TCBStatus != evidence.StatusOutOfDate {
					t.Errorf("status %s", r.Claims.TCBStatus)
				}
				return
			}
			if err == nil {
				t.Fatal("verified")
			}
			t.Log(err)
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("not %v: %v", tc.is, err)
			}
			if tc.field != "" && !slices.Equal(mismatches(err), []string{tc.field}) {
				t.Errorf("mismatches %v, want [%s]", mismatches(err), tc.field)
			}
			if tc.reason != 0 {
				if r, ok := evidence.ReasonOf(err); !ok || r != tc.reason {
					t.Errorf("reason %v, want %v", r, tc.reason)
				}
			}
		})
	}
}

func withNow(o VerifyOptions, t time.Time) VerifyOptions {
	o.Now = fixed(t)
	return o
}

// Results are cached by certificate digest until they expire: the
// collateral source (the expensive path) is not consulted on a hit, and is
// again after CacheTTL.
func TestCache(t *testing.T) {
	e := newSim(t)
	ctx := context.Background()
	clk := &clock{t: simNow}
	calls := 0
	o := e.opts()
	o.Now = clk.Now
	o.CacheTTL = 10 * time.Minute
	o.Collateral = func(context.Context, []byte) (*pcs.Bundle, error) { calls++; return e.collateral, nil }
	v, err := NewVerifier(o)
	if err != nil {
		t.Fatal(err)
	}
	cert := e.server(t, e.app, nil).Certificate()
	r1, err := v.Verify(ctx, cert)
	if err != nil {
		t.Fatal(err)
	}
	if want := simNow.Add(10 * time.Minute); !r1.NotAfter.Equal(want) {
		t.Errorf("NotAfter %v, want %v", r1.NotAfter, want)
	}
	if _, err := v.Verify(ctx, cert); err != nil || calls != 1 {
		t.Fatalf("second verify: %v, %d collateral calls", err, calls)
	}
	clk.Add(11 * time.Minute)
	if _, err := v.Verify(ctx, cert); err != nil || calls != 2 {
		t.Fatalf("after TTL: %v, %d collateral calls", err, calls)
	}
	// Without a TTL cap, the certificate's NotAfter is the limit.
	o.CacheTTL = 1000 * time.Hour
	v, _ = NewVerifier(o)
	r, err := v.Verify(ctx, cert)
	if err != nil || !r.NotAfter.Equal(cert.NotAfter) {
		t.Errorf("NotAfter %v, want the certificate's %v (%v)", r.NotAfter, cert.NotAfter, err)
	}
}

// Options are validated once, at construction.
func TestOptionsValidated(t *testing.T) {
	if _, err := NewVerifier(VerifyOptions{SkipTCBEvaluation: true}); err == nil {
		t.Error("no clock accepted")
	}
	if _, err := NewVerifier(VerifyOptions{Now: fixed(simNow)}); err == nil {
		t.Error("no collateral source accepted")
	}
	e := newSim(t)
	p := e.platform(t, tee.KindSimSGX, e.app)
	for name, o := range map[string]ServerOptions{
		"no platform":        {Now: fixed(simNow)},
		"no clock":           {Platform: p},
		"tdx form on sgx":    {Platform: p, Now: fixed(simNow), Forms: []Form{FormIntelTDX}},
		"renew after expiry": {Platform: p, Now: fixed(simNow), Validity: time.Hour, RenewBefore: 2 * time.Hour},
		"pubkey-hash claim":  {Platform: p, Now: fixed(simNow), Claims: map[string][]byte{ClaimPubKeyHash: nil}},
		"unknown form":       {Platform: p, Now: fixed(simNow), Forms: []Form{9}},
	} {
		if _, err := NewServer(context.Background(), o); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
