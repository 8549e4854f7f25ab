package ratls

import (
	"context"
	"crypto/x509"
	"errors"
	"reflect"
	"testing"

	"github.com/cloister-dev/cloister/evidence"
	"github.com/cloister-dev/cloister/policy"
	"github.com/cloister-dev/cloister/tee"
	"github.com/cloister-dev/cloister/tee/sim"
)

// A policy that names no identity would accept any genuine enclave, so
// NewVerifier (and with it Verify and ClientConfig) refuses it unless
// appraisal is skipped or AnyIdentity says so on purpose.
func TestPolicyWithoutIdentityRefused(t *testing.T) {
	e := newSim(t)
	ctx := context.Background()
	cert := e.server(t, e.app, nil).Certificate()
	pid := e.app.ProductID
	for name, tc := range map[string]struct {
		mod func(*VerifyOptions)
		ok  bool
	}{
		"zero policy":            {func(o *VerifyOptions) { o.Policy = policy.Policy{} }, false},
		"status only":            {func(o *VerifyOptions) { o.Policy = policy.Policy{AllowStatus: []string{evidence.StatusUpToDate}} }, false},
		"signer without product": {func(o *VerifyOptions) { o.Policy.MRENCLAVE = nil }, false},
		"signer and product":     {func(o *VerifyOptions) { o.Policy.MRENCLAVE, o.Policy.ISVProdID = nil, &pid }, true},
		"mrenclave":              {func(o *VerifyOptions) {}, true},
		"any identity":           {func(o *VerifyOptions) { o.Policy = policy.Policy{AnyIdentity: true} }, true},
		"appraisal skipped":      {func(o *VerifyOptions) { o.Policy, o.SkipAppraisal = policy.Policy{}, true }, true},
	} {
		o := e.opts()
		tc.mod(&o)
		_, err := Verify(ctx, cert, o)
		if tc.ok {
			if err != nil {
				t.Errorf("%s: %v", name, err)
			}
			continue
		}
		if !errors.Is(err, policy.ErrNoIdentity) {
			t.Errorf("%s: Verify = %v, want ErrNoIdentity", name, err)
		}
		if _, err := ClientConfig(o); !errors.Is(err, policy.ErrNoIdentity) {
			t.Errorf("%s: ClientConfig = %v, want ErrNoIdentity", name, err)
		}
	}
}

// NewVerifier keeps its own copy of the policy: a caller that reuses or
// changes its slices afterwards does not change what the Verifier accepts.
func TestNewVerifierCopiesPolicy(t *testing.T) {
	e := newSim(t)
	ctx := context.Background()
	good := e.server(t, e.app, nil).Certificate()
	o := e.opts()
	o.DisableCache = true
	mre := append([]byte(nil), e.app.MRENCLAVE[:]...)
	list := [][]byte{mre}
	o.Policy.MRENCLAVE = list
	status := []string{evidence.StatusUpToDate}
	o.Policy.AllowStatus = status
	roots := o.TrustRoots
	v, err := NewVerifier(o)
	if err != nil {
		t.Fatal(err)
	}
	mre[0] ^= 0xff             // the entry's bytes
	list[0] = make([]byte, 32) // the list's element
	status[0] = evidence.StatusOutOfDate
	roots[0] = &x509.Certificate{} // the roots' element
	if _, err := v.Verify(ctx, good); err != nil {
		t.Fatalf("the caller's later edits changed the Verifier: %v", err)
	}
	// And the other way: an app the caller's edited policy would now
	// accept is still refused.
	other := e.app
	other.MRENCLAVE = [32]byte{}
	if _, err := v.Verify(ctx, e.server(t, other, nil).Certificate()); !errors.Is(err, ErrPolicy) {
		t.Fatalf("zero-MRENCLAVE app: %v, want ErrPolicy", err)
	}
}

// twoFormCert makes a certificate for one key whose CCC extension holds a
// quote of cccApp and whose legacy extension (form) holds a quote of
// legacyApp, each bound to the key by its form's rule: every form verifies
// on its own.
func twoFormCert(t *testing.T, e *simEnv, cccApp, legacyApp sim.App, form Form) *x509.Certificate {
	t.Helper()
	return mixedFormCert(t, e, cccApp, tee.KindSimSGX, legacyApp, form)
}

// A certificate with several evidence forms verifies only if every form
// verifies, binds the key, satisfies the policy and names the same
// identity: two verifiers that read different forms must not see two
// different enclaves in one certificate.
func TestSeveralFormsMustAgree(t *testing.T) {
	e := newSim(t)
	ctx := context.Background()
	other := e.app
	other.MRENCLAVE = [32]byte{0xCC, 3}
	debugApp := e.app
	debugApp.Debug = true

	both := e.opts()
	both.Policy.MRENCLAVE = [][]byte{e.app.MRENCLAVE[:], other.MRENCLAVE[:]}
	inspect := e.opts()
	inspect.Policy, inspect.SkipAppraisal = policy.Policy{}, true

	for _, form := range []Form{FormIntelSGX, FormGramine} {
		// The same app in both forms: what our own Server writes.
		same := twoFormCert(t, e, e.app, e.app, form)
		if r, err := Verify(ctx, same, e.opts()); err != nil || r.Form != FormCCC {
			t.Fatalf("%v: same identity in both forms: %v %+v", form, err, r)
		}
		// Another enclave in the legacy form: refused even by a policy
		// that accepts both enclaves, and even without appraisal.
		two := twoFormCert(t, e, e.app, other, form)
		for name, o := range map[string]VerifyOptions{"pinned": e.opts(), "both accepted": both, "appraisal skipped": inspect} {
			_, err := Verify(ctx, two, o)
			if r, ok := evidence.ReasonOf(err); !ok || r != evidence.BadBinding {
				t.Errorf("%v, %s: two identities: %v, want a BadBinding refusal", form, name, err)
			}
		}
		// Reversed (the other enclave in CCC): refused as well.
		if _, err := Verify(ctx, twoFormCert(t, e, other, e.app, form), both); err == nil {
			t.Errorf("%v: other enclave in the CCC form verified", form)
		}
		// Same measurements, but the legacy quote is from a debug enclave:
		// every form is appraised, so the debug one fails the policy.
		if _, err := Verify(ctx, twoFormCert(t, e, e.app, debugApp, form), e.opts()); !errors.Is(err, ErrPolicy) {
			t.Errorf("%v: debug quote in the legacy form: %v, want ErrPolicy", form, err)
		}
	}

	// A legacy form whose quote does not verify sinks the certificate.
	c := twoFormCert(t, e, e.app, e.app, FormGramine)
	for i, x := range c.Extensions {
		if x.Id.Equal(OIDGramineQuote) {
			bad := append([]byte(nil), x.Value...)
			bad[len(bad)/2] ^= 1
			c.Extensions[i].Value = bad
		}
	}
	if _, err := Verify(ctx, c, e.opts()); err == nil {
		t.Error("a corrupt legacy quote beside a good CCC form verified")
	}
}

// clonePolicy copies every slice and pointer of policy.Policy, including
// fields added later: a field it does not copy fails here, by name.
func TestClonePolicyCoversEveryField(t *testing.T) {
	var p policy.Policy
	fillPolicyFields(t, "policy.Policy", reflect.ValueOf(&p).Elem())
	comparePolicyFields(t, "policy.Policy", reflect.ValueOf(p), reflect.ValueOf(clonePolicy(p)))
}

// fillPolicyFields gives every slice and pointer field of v, in nested
// structs too, one element, so that sharing it with a clone shows.
func fillPolicyFields(t *testing.T, path string, v reflect.Value) {
	t.Helper()
	for i := 0; i < v.NumField(); i++ {
		f, name := v.Field(i), path+"."+v.Type().Field(i).Name
		switch f.Kind() {
		case reflect.Slice:
			s := reflect.MakeSlice(f.Type(), 1, 1)
			if e := s.Index(0); e.Kind() == reflect.Slice {
				e.Set(reflect.MakeSlice(e.Type(), 1, 1))
			}
			f.Set(s)
		case reflect.Pointer:
			f.Set(reflect.New(f.Type().Elem()))
		case reflect.Struct:
			fillPolicyFields(t, name, f)
		case reflect.Bool, reflect.String, reflect.Int, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		default:
			t.Fatalf("%s: kind %v that this test and clonePolicy do not handle", name, f.Kind())
		}
	}
}

func comparePolicyFields(t *testing.T, path string, a, b reflect.Value) {
	t.Helper()
	for i := 0; i < a.NumField(); i++ {
		name, x, y := path+"."+a.Type().Field(i).Name, a.Field(i), b.Field(i)
		switch x.Kind() {
		case reflect.Slice:
			if y.Len() != 1 || x.Pointer() == y.Pointer() {
				t.Errorf("clonePolicy shares %s with the caller", name)
			} else if x.Index(0).Kind() == reflect.Slice && x.Index(0).Pointer() == y.Index(0).Pointer() {
				t.Errorf("clonePolicy shares the entries of %s with the caller", name)
			}
		case reflect.Pointer:
			if y.IsNil() || x.Pointer() == y.Pointer() {
				t.Errorf("clonePolicy shares %s with the caller", name)
			}
		case reflect.Struct:
			comparePolicyFields(t, name, x, y)
		}
	}
}
