package ratls

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/cloister-dev/cloister/evidence"
	"github.com/cloister-dev/cloister/evidence/dcap"
	"github.com/cloister-dev/cloister/evidence/pcs"
	"github.com/cloister-dev/cloister/evidence/sgx"
	"github.com/cloister-dev/cloister/evidence/tdx"
	"github.com/cloister-dev/cloister/policy"
)

// CollateralSource returns the DCAP collateral for a raw quote. Any pcs
// source fits: a fixed bundle (BundleSource), a pcs.Client with its cache
// (through evidence.CollateralQuery and Fetch), or a test fake. The bundle
// is verified by evidence.Verify before use.
type CollateralSource func(ctx context.Context, rawQuote []byte) (*pcs.Bundle, error)

// BundleSource is a CollateralSource that always returns b.
func BundleSource(b *pcs.Bundle) CollateralSource {
	return func(context.Context, []byte) (*pcs.Bundle, error) { return b, nil }
}

// VerifyOptions say how a peer's certificate is verified and appraised.
type VerifyOptions struct {
	// Policy is what the peer's verified claims must satisfy
	// (measurements, signer, SVN, TCB status, debug). It must name an
	// identity (policy.Policy.RequireIdentity) unless SkipAppraisal is set.
	Policy policy.Policy
	// SkipAppraisal checks authenticity and key binding only and leaves
	// Policy unused: for inspecting a peer (the CLI without policy flags),
	// never for deciding to trust one.
	SkipAppraisal bool
	// Now is the verification clock. Required.
	Now func() time.Time
	// Collateral supplies DCAP collateral for the peer's quote. Required
	// unless SkipTCBEvaluation is set.
	Collateral CollateralSource
	// SkipTCBEvaluation verifies signatures and chains without collateral;
	// tcb_status is then "NotEvaluated", which a policy accepts only when
	// its AllowStatus lists it.
	SkipTCBEvaluation bool
	// AllowMissingCRL accepts collateral without CRLs (see evidence.Options).
	AllowMissingCRL bool
	// TrustRoots replace the built-in roots; name the simulator's root here
	// to accept sim evidence (it is then reported as sim-*).
	TrustRoots []*x509.Certificate
	// Rand is the source of challenge nonces; nil means crypto/rand.
	Rand io.Reader
	// DisableCache verifies every certificate on every handshake. For
	// benchmarks and for callers that must see each verification.
	DisableCache bool
	// CacheTTL bounds how long a result is reused even when certificate,
	// PCK chain and collateral are valid for longer; 0 means one hour.
	CacheTTL time.Duration
}

// validate checks o and fills in defaults (once, in NewVerifier).
func (o *VerifyOptions) validate() error {
	if o.Now == nil {
		return errors.New("ratls: verify options: no Now clock")
	}
	if o.Collateral == nil && !o.SkipTCBEvaluation {
		return errors.New("ratls: verify options: no Collateral source (set SkipTCBEvaluation to verify without collateral)")
	}
	if !o.SkipAppraisal {
		if err := o.Policy.Validate(); err != nil {
			return fmt.Errorf("ratls: verify options: %w", err)
		}
		// Authenticating a peer with a policy that names no identity
		// would accept anyone's genuine enclave.
		if err := o.Policy.RequireIdentity(); err != nil {
			return fmt.Errorf("ratls: verify options: %w", err)
		}
	}
	if o.Rand == nil {
		o.Rand = rand.Reader
	}
	if o.CacheTTL == 0 {
		o.CacheTTL = defaultCacheTTL
	}
	if o.CacheTTL < 0 {
		return fmt.Errorf("ratls: verify options: CacheTTL %v is negative", o.CacheTTL)
	}
	return nil
}

// Result is a verified, appraised peer certificate.
type Result struct {
	// Claims are the verified claims of the certificate's evidence. They
	// may be shared with the cache: read them, do not modify them.
	Claims *evidence.Claims
	// Form is the extension form the evidence was read from.
	Form Form
	// KeyBound is true when the evidence binds the certificate's key;
	// Verify never returns a Result without it, and the field exists so
	// the binding shows in printed results.
	KeyBound bool
	// Appraised is false when SkipAppraisal was set.
	Appraised bool
	// NotAfter is when this result stops being reusable: the earliest of the
	// certificate's NotAfter, the PCK chain's, the collateral's nextUpdate
	// and the verification time plus CacheTTL.
	NotAfter time.Time
}

// Verifier verifies peer certificates and caches results by certificate
// digest. It is safe for concurrent use; make one per policy and share it
// across connections.
type Verifier struct {
	opts VerifyOptions
	ev   *evidence.Verifier

	mu    sync.Mutex
	cache map[[32]byte]*Result
}

// NewVerifier validates opts and returns a Verifier. The policy is
// refused when it names no identity (policy.ErrNoIdentity) unless
// SkipAppraisal is set. The Verifier keeps its own copy of the policy's
// slices and of TrustRoots: later changes by the caller do not reach it.
func NewVerifier(opts VerifyOptions) (*Verifier, error) {
	opts.Policy = clonePolicy(opts.Policy)
	opts.TrustRoots = slices.Clone(opts.TrustRoots)
	if err := opts.validate(); err != nil {
		return nil, err
	}
	return &Verifier{opts: opts, ev: evidence.NewVerifier(), cache: map[[32]byte]*Result{}}, nil
}

// Verify verifies cert once, without a cache: see Verifier.Verify.
func Verify(ctx context.Context, cert *x509.Certificate, opts VerifyOptions) (*Result, error) {
	opts.DisableCache = true
	v, err := NewVerifier(opts)
	if err != nil {
		return nil, err
	}
	return v.Verify(ctx, cert)
}

// Verify checks cert: its validity period and self-signature, the evidence
// in each of its RA-TLS extensions (evidence.Verify, with collateral from
// the source), that each binds the certificate's key, that all name the
// same identity (TEE kind, measurements, SGX signer and product), and the
// policy on each. The Result carries the claims of the preferred form
// (ParseCertificate's order).
// A result is reused for the same certificate bytes until its NotAfter.
// Errors say what failed; branch with errors.Is (ErrKeyNotBound,
// ErrNoEvidence, ErrPolicy), evidence.ReasonOf, or errors.As with
// *policy.Mismatch.
func (v *Verifier) Verify(ctx context.Context, cert *x509.Certificate) (*Result, error) {
	if cert == nil {
		return nil, malformed("certificate", "no certificate")
	}
	now := v.opts.Now()
	key := sha256.Sum256(cert.Raw)
	if !v.opts.DisableCache {
		v.mu.Lock()
		r, ok := v.cache[key]
		v.mu.Unlock()
		// A result is reused only inside the window it was valid for; the
		// certificate's NotBefore is part of that window.
		if ok && now.Before(r.NotAfter) && !now.Before(cert.NotBefore) {
			return r, nil
		}
	}
	r, err := v.verify(ctx, cert, now)
	if err != nil {
		return nil, err
	}
	if !v.opts.DisableCache {
		v.store(key, r, now)
	}
	return r, nil
}

// store caches r, first dropping expired entries when the cache is full, and
// an arbitrary one if it is still full: the cache is an optimisation, never
// a source of truth.
func (v *Verifier) store(key [32]byte, r *Result, now time.Time) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if len(v.cache) >= maxCacheEntries {
		for k, e := range v.cache {
			if !now.Before(e.NotAfter) {
				delete(v.cache, k)
			}
		}
		for k := range v.cache {
			if len(v.cache) < maxCacheEntries {
				break
			}
			delete(v.cache, k)
		}
	}
	v.cache[key] = r
}

// clonePolicy copies p's slices and the byte strings in them.
func clonePolicy(p policy.Policy) policy.Policy {
	deep := func(in [][]byte) [][]byte {
		if in == nil {
			return nil
		}
		out := make([][]byte, len(in))
		for i, b := range in {
			out[i] = bytes.Clone(b)
		}
		return out
	}
	p.MRENCLAVE, p.MRSIGNER, p.MRTD, p.Measurement = deep(p.MRENCLAVE), deep(p.MRSIGNER), deep(p.MRTD), deep(p.Measurement)
	p.AppDigests = deep(p.AppDigests)
	p.AllowStatus = slices.Clone(p.AllowStatus)
	p.SGXTypes, p.PlatformInstanceIDs = slices.Clone(p.SGXTypes), deep(p.PlatformInstanceIDs)
	p.SNP.VMPL = slices.Clone(p.SNP.VMPL)
	p.SNP.IDKeyDigest, p.SNP.AuthorKeyDigest = deep(p.SNP.IDKeyDigest), deep(p.SNP.AuthorKeyDigest)
	if p.MinISVSVN != nil {
		v := *p.MinISVSVN
		p.MinISVSVN = &v
	}
	if p.ISVProdID != nil {
		v := *p.ISVProdID
		p.ISVProdID = &v
	}
	return p
}

func (v *Verifier) verify(ctx context.Context, cert *x509.Certificate, now time.Time) (*Result, error) {
	// Parse first (format only): a certificate without evidence is told
	// so, whatever else is wrong with it.
	all, err := ParseAll(cert)
	if err != nil {
		return nil, err
	}
	ev := all[0]
	if now.Before(cert.NotBefore) || now.After(cert.NotAfter) {
		return nil, verifyErr("certificate", evidence.Expired, nil, "not valid at %s (valid %s .. %s)",
			now.UTC().Format(time.RFC3339), cert.NotBefore.UTC().Format(time.RFC3339), cert.NotAfter.UTC().Format(time.RFC3339))
	}
	// RA-TLS certificates are self-signed. CheckSignatureFrom(cert) would
	// refuse a non-CA parent, so check the signature over the TBS directly.
	if err := cert.CheckSignature(cert.SignatureAlgorithm, cert.RawTBSCertificate, cert.Signature); err != nil {
		return nil, verifyErr("certificate", evidence.BadSignature, err, "self-signature does not verify")
	}
	// Every form present is verified, bound and appraised, and all must
	// name the same identity: a verifier that reads only one form (ours
	// reads the preferred one, others read a legacy one) must not see
	// another enclave than a verifier that reads another form. The Intel
	// SGX SDK writes one quote into both its forms; it is verified once.
	var claims *evidence.Claims
	notAfter := []time.Time{cert.NotAfter, now.Add(v.opts.CacheTTL)}
	verified := map[string]*evidence.Claims{}
	for _, e := range all {
		c, ok := verified[string(e.UnverifiedEvidence)]
		if !ok {
			var col *pcs.Bundle
			if c, col, err = v.verifyEvidence(ctx, e.UnverifiedEvidence, now); err != nil {
				return nil, fmt.Errorf("ratls: %s evidence: %w", e.Form, err)
			}
			verified[string(e.UnverifiedEvidence)] = c
			notAfter = append(notAfter, evidenceNotAfter(e.UnverifiedEvidence), collateralNotAfter(col))
		}
		if err := e.CheckKeyBinding(c.ReportData); err != nil {
			return nil, err
		}
		if claims == nil {
			claims = c
		} else if diffs := identityDiffs(claims, c); len(diffs) > 0 {
			return nil, verifyErr("certificate", evidence.BadBinding, nil, "its %s and %s extensions attest different identities: %s",
				ev.Form, e.Form, strings.Join(diffs, "; "))
		}
	}
	// In form order (CCC first), each distinct evidence once: the error
	// a caller sees does not depend on map order.
	appraised := map[string]bool{}
	for _, e := range all {
		if k := string(e.UnverifiedEvidence); !appraised[k] {
			appraised[k] = true
			if err := v.appraise(verified[k]); err != nil {
				return nil, err
			}
		}
	}
	r := &Result{Claims: claims, Form: ev.Form, KeyBound: true, Appraised: !v.opts.SkipAppraisal}
	r.NotAfter = earliest(notAfter...)
	return r, nil
}

// verifyEvidence runs evidence.Verify with this Verifier's options and
// returns the claims and the collateral used.
func (v *Verifier) verifyEvidence(ctx context.Context, raw []byte, now time.Time) (*evidence.Claims, *pcs.Bundle, error) {
	opts := evidence.Options{
		Time:              now,
		SkipTCBEvaluation: v.opts.SkipTCBEvaluation,
		AllowMissingCRL:   v.opts.AllowMissingCRL,
		TrustRoots:        v.opts.TrustRoots,
	}
	if !v.opts.SkipTCBEvaluation {
		k := evidence.Detect(raw)
		if k == evidence.KindSGXQuote || k == evidence.KindTDXQuote {
			col, err := v.opts.Collateral(ctx, raw)
			if err != nil {
				return nil, nil, fmt.Errorf("ratls: collateral: %w", err)
			}
			opts.Collateral = col
		}
	}
	claims, err := v.ev.Verify(ctx, raw, opts)
	if err != nil {
		return nil, nil, err
	}
	return claims, opts.Collateral, nil
}

// appraise applies the policy unless appraisal is skipped.
func (v *Verifier) appraise(c *evidence.Claims) error {
	if v.opts.SkipAppraisal {
		return nil
	}
	if err := policy.Appraise(c, v.opts.Policy); err != nil {
		return &PolicyError{Err: err}
	}
	return nil
}

// PolicyError is an appraisal failure. errors.Is(err, ErrPolicy) holds for
// it, and Err is policy.Appraise's errors.Join of *policy.Mismatch, one per
// failed check.
type PolicyError struct {
	// Err is the joined *policy.Mismatch values.
	Err error
}

// Error lists every mismatch, one per line.
func (e *PolicyError) Error() string { return ErrPolicy.Error() + ":\n" + e.Err.Error() }

// Unwrap returns the joined mismatches.
func (e *PolicyError) Unwrap() error { return e.Err }

// Is makes errors.Is(err, ErrPolicy) true.
func (e *PolicyError) Is(target error) bool { return target == ErrPolicy }

func earliest(ts ...time.Time) time.Time {
	var min time.Time
	for _, t := range ts {
		if !t.IsZero() && (min.IsZero() || t.Before(min)) {
			min = t
		}
	}
	return min
}

// evidenceNotAfter is the earliest NotAfter of a DCAP quote's PCK chain
// (zero for other evidence). It runs after the quote verified, so the
// chain it reads is the verified one.
func evidenceNotAfter(raw []byte) time.Time {
	var sig *dcap.SignatureData
	switch evidence.Detect(raw) {
	case evidence.KindSGXQuote:
		if q, err := sgx.Parse(raw); err == nil {
			sig = q.Sig
		}
	case evidence.KindTDXQuote:
		if q, err := tdx.Parse(raw); err == nil {
			sig = q.Sig
		}
	}
	if sig == nil {
		return time.Time{}
	}
	certs, err := dcap.ParsePEMChain(sig.PCKChainPEM, "PCK certificate chain")
	if err != nil {
		return time.Time{}
	}
	var ts []time.Time
	for _, c := range certs {
		ts = append(ts, c.NotAfter)
	}
	return earliest(ts...)
}

// collateralNotAfter is the earliest nextUpdate of the collateral used
// (tcbInfo, QE identity, CRLs); zero without collateral. The collateral has
// been verified by then; these dates only shorten the cache lifetime.
func collateralNotAfter(b *pcs.Bundle) time.Time {
	if b == nil {
		return time.Time{}
	}
	d, err := b.DecodeUnverified()
	if err != nil {
		return time.Time{}
	}
	var ts []time.Time
	for _, signed := range [][]byte{d.TCBInfo, d.QEIdentity} {
		var v struct {
			NextUpdate time.Time `json:"nextUpdate"`
		}
		if json.Unmarshal(signed, &v) == nil {
			ts = append(ts, v.NextUpdate)
		}
	}
	for _, der := range [][]byte{d.PCKCRL, d.RootCACRL} {
		if der == nil {
			continue
		}
		if crl, err := x509.ParseRevocationList(der); err == nil {
			ts = append(ts, crl.NextUpdate)
		}
	}
	return earliest(ts...)
}

// VerifyConnection is the tls.Config.VerifyConnection of the configs this
// Verifier makes. crypto/tls runs it on every handshake, resumptions
// included, so a resumed session is held to the same policy; the cache
// keeps that cheap.
func (v *Verifier) VerifyConnection(cs tls.ConnectionState) error {
	if cs.Version != tls.VersionTLS13 {
		return fmt.Errorf("ratls: connection: TLS version %#04x, want TLS 1.3", cs.Version)
	}
	if len(cs.PeerCertificates) == 0 {
		return malformed("connection", "peer sent no certificate")
	}
	_, err := v.Verify(context.Background(), cs.PeerCertificates[0])
	return err
}

// ClientConfig returns a TLS 1.3 client configuration whose verification
// is this Verifier's: the server's certificate is accepted only if its
// evidence verifies, binds its key and satisfies the policy. With own
// non-nil the client presents own's certificates (mutual attestation).
func (v *Verifier) ClientConfig(own *Server) *tls.Config {
	cfg := &tls.Config{
		MinVersion: tls.VersionTLS13,
		// InsecureSkipVerify turns off only the CA chain and host name
		// checks, which cannot apply to a self-signed RA-TLS certificate.
		// It is safe ONLY because VerifyConnection below replaces them with
		// the attestation check, and VerifyConnection runs on every
		// handshake, resumptions included.
		InsecureSkipVerify: true,
		VerifyConnection:   v.VerifyConnection,
		Time:               v.opts.Now,
	}
	if own != nil {
		cfg.GetClientCertificate = own.GetClientCertificate
	}
	return cfg
}

// ServerConfig returns a TLS 1.3 server configuration serving srv's
// certificates that also requires and attests a client certificate.
func (v *Verifier) ServerConfig(srv *Server) *tls.Config {
	return &tls.Config{
		MinVersion:     tls.VersionTLS13,
		GetCertificate: srv.GetCertificate,
		// RequireAnyClientCert asks for a certificate without a CA check
		// (there is no CA); VerifyConnection attests it on every handshake.
		ClientAuth:       tls.RequireAnyClientCert,
		VerifyConnection: v.VerifyConnection,
		Time:             srv.opts.Now,
	}
}

// ClientConfig returns a TLS 1.3 client configuration that attests the
// server with opts. It is NewVerifier(opts) followed by ClientConfig(nil);
// keep the Verifier instead to read results or to present a certificate.
func ClientConfig(opts VerifyOptions) (*tls.Config, error) {
	v, err := NewVerifier(opts)
	if err != nil {
		return nil, err
	}
	return v.ClientConfig(nil), nil
}
