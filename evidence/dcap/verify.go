// Package dcap is Cloister's verifier of Intel DCAP ECDSA quotes: the one
// core shared by SGX quote v3 (evidence/sgx) and TDX quote v4/v5
// (evidence/tdx). It checks, in this order: the quote signature by the
// attestation key; the QE report signature by the PCK key; the QE report
// data binding of the attestation key and QE authentication data; the PCK
// chain to the pinned Intel SGX Root CA; validity at the verification time;
// the PCK and root CA CRLs; the TCB info (signature, dates, FMSPC, PCE-ID);
// the QE identity (signature, dates, signer, product, masked MISCSELECT and
// ATTRIBUTES, ISVSVN); and finally the TCB level, converged into one status.
//
// Parsing the quote layouts is the job of evidence/sgx and evidence/tdx;
// turning results into claims is package evidence's.
package dcap

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cloister-dev/cloister/evidence/internal/verr"
	"github.com/cloister-dev/cloister/evidence/pcs"
)

// TEE kinds of a Quote.
const (
	SGX = "sgx"
	TDX = "tdx"
)

// Quote is what the core needs from a parsed SGX or TDX quote.
type Quote struct {
	// TEE is SGX or TDX.
	TEE    string
	Header Header
	// Signed is the region signed by the attestation key (header and body).
	Signed []byte
	Sig    *SignatureData
	// TDX only: the TD report's TEE TCB SVN, MRSIGNERSEAM and SEAM attributes.
	TEETCBSVN      [16]byte
	MRSignerSeam   []byte
	SEAMAttributes [8]byte
	// TEETCBSVN2 is the TDX 1.5 body's TEE_TCB_SVN2 (quote v5, body type
	// 3), nil otherwise; it drives the TD relaunch rule.
	TEETCBSVN2 *[16]byte
}

// Options are the inputs of one verification.
type Options struct {
	// Time is the verification time. Required.
	Time time.Time
	// Collateral is required unless SkipTCBEvaluation.
	Collateral *pcs.Bundle
	// SkipTCBEvaluation checks the signatures and the PCK chain only.
	SkipTCBEvaluation bool
	// AllowMissingCRL accepts a bundle without CRLs, with a warning.
	AllowMissingCRL bool
	// TrustRoots replaces the built-in Intel SGX Root CA when non-empty.
	TrustRoots []*x509.Certificate
}

// Result is what a verified quote proves beyond its own body.
type Result struct {
	// QEReport is the verified QE report.
	QEReport *EnclaveReport
	// PCK holds the platform facts from the PCK certificate.
	PCK *PCKExtensions
	// PCKCA is "processor" or "platform".
	PCKCA string
	// IntelRoot is true when the PCK chain ends at the Intel SGX Root CA.
	IntelRoot bool
	// TCBStatus is the converged status, or "NotEvaluated".
	TCBStatus   string
	AdvisoryIDs []string
	// TCBDate is the matched platform level's tcbDate (zero if not evaluated).
	TCBDate time.Time
	// PlatformStatus, QEStatus and ModuleStatus are the parts before convergence.
	PlatformStatus, QEStatus, ModuleStatus string
	// RelaunchAdvised is true when Intel's TD relaunch rule applies: the
	// TD's module is out of date, and relaunching the TD would bring it to
	// the platform's newest TDX level (TCBStatus is then TDRelaunchAdvised
	// or TDRelaunchAdvisedConfigurationNeeded).
	RelaunchAdvised bool
	// Warnings names the checks skipped at the caller's request.
	Warnings []string
}

// NotEvaluated is the TCB status of a quote verified without collateral.
const NotEvaluated = "NotEvaluated"

// Verifier verifies quotes and caches what does not depend on time:
// verified PCK chains by digest of the chain bytes, verified collateral by
// digest of the bundle, and PCK CRLs checked against their issuer. Cached
// entries are keyed by content and by the trust roots, and every time check
// is repeated on every call, so a cache hit can never change a result.
// A Verifier is safe for concurrent use.
type Verifier struct {
	mu         sync.Mutex
	chains     map[[32]byte]*pckChain
	collateral map[[32]byte]*Collateral
	// signers caches verified collateral signing chains, which are shared
	// by every bundle Intel signs until the signing certificate is renewed.
	signers map[[32]byte]*verifiedChain

	// The last chain and bundle used, so the common case (one platform,
	// one bundle, many quotes) compares bytes instead of hashing them.
	lastChain      []byte
	lastChainRoots string
	lastPCK        *pckChain
	lastBundle     pcs.Bundle
	lastBundleRoot string
	lastCol        *Collateral
}

// cacheCap bounds each cache; when full, the cache is emptied, which costs
// only recomputation.
const cacheCap = 256

// NewVerifier returns a Verifier with empty caches.
func NewVerifier() *Verifier {
	return &Verifier{
		chains:     map[[32]byte]*pckChain{},
		collateral: map[[32]byte]*Collateral{},
		signers:    map[[32]byte]*verifiedChain{},
	}
}

type pckChain struct {
	chain   *verifiedChain
	leafKey *ecdsa.PublicKey
	ext     *PCKExtensions
	ca      string
	// lastQE is the last QE report ‖ QE report signature that verified
	// under leafKey. A platform's QE report changes only with its
	// attestation key, so all of a platform's quotes carry the same one.
	lastQE atomic.Pointer[[]byte]
}

// verifyQEReport checks the PCK key's signature over a QE report. When
// report and signature are byte for byte the last pair that verified under
// this key, the answer is known without a second ECDSA verification (half
// of a warm quote's cost): the check is a pure function of key, report and
// signature, and all three are compared in full, so this can never turn a
// failure into a success.
func (pc *pckChain) verifyQEReport(report, sig []byte) bool {
	// A fixed signature length makes report ‖ signature split one way only.
	if len(sig) != SignatureSize {
		return false
	}
	if p := pc.lastQE.Load(); p != nil {
		last := *p
		if len(last) == len(report)+len(sig) && bytes.Equal(last[:len(report)], report) && bytes.Equal(last[len(report):], sig) {
			return true
		}
	}
	if !verifyRawSignature(pc.leafKey, report, sig) {
		return false
	}
	both := append(append(make([]byte, 0, len(report)+len(sig)), report...), sig...)
	pc.lastQE.Store(&both)
	return true
}

func rootsOrDefault(roots []*x509.Certificate) []*x509.Certificate {
	if len(roots) == 0 {
		return defaultRoots
	}
	return roots
}

var (
	defaultRoots    = []*x509.Certificate{intelRoot}
	defaultRootsKey = func() []byte { s := sha256.Sum256(intelRoot.Raw); return s[:] }()
)

func cacheKey(parts ...[]byte) [32]byte {
	h := sha256.New()
	var n [8]byte
	for _, p := range parts {
		binary.BigEndian.PutUint64(n[:], uint64(len(p)))
		h.Write(n[:])
		h.Write(p)
	}
	var k [32]byte
	h.Sum(k[:0])
	return k
}

func rootsKey(roots []*x509.Certificate) []byte {
	if len(roots) == 1 && defaultRootsKey != nil && roots[0] == intelRoot {
		return defaultRootsKey
	}
	var b []byte
	for _, r := range roots {
		s := sha256.Sum256(r.Raw)
		b = append(b, s[:]...)
	}
	return b
}

func cachePut[V any](m map[[32]byte]V, k [32]byte, v V) {
	if len(m) >= cacheCap {
		clear(m)
	}
	m[k] = v
}

// Verify checks q with opts; see the package documentation for the order.
func (v *Verifier) Verify(q *Quote, opts Options) (*Result, error) {
	if opts.Time.IsZero() {
		return nil, verr.New("dcap", "options", verr.MissingCollateral, "no verification time given")
	}
	if opts.Collateral == nil && !opts.SkipTCBEvaluation {
		return nil, verr.New("dcap", "options", verr.MissingCollateral, "no collateral given (fetch a bundle with `cloister collateral fetch`, or skip TCB evaluation)")
	}
	if q.TEE != SGX && q.TEE != TDX {
		return nil, verr.New("dcap", "quote", verr.Unsupported, "TEE %q", q.TEE)
	}
	roots := rootsOrDefault(opts.TrustRoots)
	rk := rootsKey(roots)
	s := q.Sig

	// 1. Quote signature by the attestation key.
	attKey, err := rawP256Key(s.AttestationKey[:])
	if err != nil {
		return nil, err
	}
	if !verifyRawSignature(attKey, q.Signed, s.Signature[:]) {
		return nil, verr.New("dcap", "quote signature", verr.BadSignature, "the attestation key's signature over the header and body does not verify")
	}

	// 2. QE report signature by the PCK key. The chain is parsed (and, once,
	// verified) here; trust in it is established in step 4.
	pc, err := v.pckChain(s.PCKChainPEM, roots, rk)
	if err != nil {
		return nil, err
	}
	if !pc.verifyQEReport(s.QEReport, s.QEReportSignature[:]) {
		return nil, verr.New("dcap", "QE report signature", verr.BadSignature, "the PCK key's signature over the QE report does not verify")
	}
	qe, err := ParseEnclaveReport(s.QEReport, "QE report")
	if err != nil {
		return nil, err
	}

	// 3. The QE report data binds the attestation key and QE auth data.
	h := sha256.New()
	h.Write(s.AttestationKey[:])
	h.Write(s.QEAuthData)
	if sum := h.Sum(nil); !bytes.Equal(sum, qe.ReportData[:32]) || !allZero(qe.ReportData[32:]) {
		return nil, verr.New("dcap", "QE report data", verr.BadBinding, "QE report data %x is not SHA-256(attestation key || QE auth data) = %x followed by zeros", qe.ReportData, sum)
	}

	// 4. PCK chain validity at the verification time.
	if err := pc.chain.checkTime(opts.Time, "PCK certificate chain"); err != nil {
		return nil, err
	}
	res := &Result{QEReport: qe, PCK: pc.ext, PCKCA: pc.ca, IntelRoot: IsIntelRoot(pc.chain.root), AdvisoryIDs: []string{}}
	if opts.SkipTCBEvaluation {
		res.TCBStatus = NotEvaluated
		res.Warnings = append(res.Warnings, "TCB not evaluated: no collateral, so revocation, TCB level and QE identity were not checked")
		return res, nil
	}

	col, err := v.verifiedCollateral(opts.Collateral, roots, rk)
	if err != nil {
		return nil, err
	}
	if !col.root.Equal(pc.chain.root) {
		return nil, verr.New("dcap", "collateral", verr.CollateralMismatch, "collateral is signed under %q, the PCK chain under %q", col.root.Subject.String(), pc.chain.root.Subject.String())
	}
	if err := col.checkTime(opts.Time); err != nil {
		return nil, err
	}

	// 5. Revocation of the PCK chain.
	if err := v.checkRevocation(col, pc, opts, res); err != nil {
		return nil, err
	}

	// 6. TCB info and 7. QE identity belong to this platform and quote kind.
	ti, qi := col.TCBInfo, col.QEIdentity
	if err := checkCollateralFits(q.TEE, ti, qi, pc.ext); err != nil {
		return nil, err
	}
	var ident *TDXModuleIdentity
	if q.TEE == TDX {
		// QVL 4.1.2.4.11: the module's signer and attributes.
		if ident, err = checkTDXModule(ti, q.Header.Version, q.TEETCBSVN, q.MRSignerSeam, q.SEAMAttributes); err != nil {
			return nil, err
		}
	}
	// QVL 4.1.2.4.15: the QE's identity; its TCB level is folded in last.
	qeLevel, err := matchQE(qi, qe)
	if err != nil {
		return nil, err
	}

	// 8. TCB levels, converged as QVL checkTcbLevel does.
	if err := v.evaluateTCB(q, ti, pc.ext, ident, qeLevel, res); err != nil {
		return nil, err
	}
	return res, nil
}

// evaluateTCB is QVL checkTcbLevel (step 4.1.2.4.17): the platform level,
// for TDX the module level and the TD relaunch rule, and last the QE level.
func (v *Verifier) evaluateTCB(q *Quote, ti *TCBInfo, pck *PCKExtensions, ident *TDXModuleIdentity, qeLevel *SVNLevel, res *Result) error {
	var tee *[16]byte
	if q.TEE == TDX {
		tee = &q.TEETCBSVN
	}
	sgxLevel, platform, err := matchPlatformLevel(ti, pck, tee)
	if err != nil {
		return err
	}
	res.PlatformStatus, res.TCBDate = platform.Status, platform.Date
	advisories := [][]string{platform.AdvisoryIDs}
	status := platform.Status
	if q.TEE == TDX {
		mod, err := tdxModuleLevel(ti, q.Header.Version, q.TEETCBSVN, ident)
		if err != nil {
			return err
		}
		moduleStatus := UpToDate
		if mod != nil {
			res.ModuleStatus, moduleStatus = mod.Status, mod.Status
			advisories = append(advisories, mod.AdvisoryIDs)
		}
		status = converge(status, moduleStatus)
		if status == Revoked {
			// Intel returns a revoked TDX TCB before the QE's level is
			// looked at.
			res.TCBStatus, res.AdvisoryIDs = Revoked, mergeAdvisories(advisories...)
			if qeLevel != nil {
				res.QEStatus = qeLevel.Status
			}
			return nil
		}
		if q.TEETCBSVN2 != nil {
			relaunch, err := relaunchStatus(ti, *q.TEETCBSVN2, sgxLevel.Status, status, moduleStatus, qeLevel)
			if err != nil {
				return err
			}
			if relaunch != "" {
				status = relaunch
				res.RelaunchAdvised = true
			}
		}
	}
	if qeLevel == nil {
		return verr.New("dcap", "QE identity", verr.TCBNotSupported, "TCB level not supported: the QE's ISVSVN %d is below every level of the QE identity", res.QEReport.ISVSVN)
	}
	res.QEStatus = qeLevel.Status
	advisories = append(advisories, qeLevel.AdvisoryIDs)
	res.TCBStatus = converge(status, qeLevel.Status)
	res.AdvisoryIDs = mergeAdvisories(advisories...)
	return nil
}

func (v *Verifier) pckChain(pemChain []byte, roots []*x509.Certificate, rk []byte) (*pckChain, error) {
	v.mu.Lock()
	if v.lastPCK != nil && bytes.Equal(v.lastChain, pemChain) && v.lastChainRoots == string(rk) {
		pc := v.lastPCK
		v.mu.Unlock()
		return pc, nil
	}
	v.mu.Unlock()
	key := cacheKey(pemChain, rk)
	v.mu.Lock()
	pc := v.chains[key]
	if pc != nil {
		v.lastChain, v.lastChainRoots, v.lastPCK = bytes.Clone(pemChain), string(rk), pc
	}
	v.mu.Unlock()
	if pc != nil {
		return pc, nil
	}
	certs, err := ParsePEMChain(pemChain, "PCK certificate chain")
	if err != nil {
		return nil, err
	}
	if len(certs) != 3 {
		return nil, verr.New("dcap", "PCK certificate chain", verr.Malformed, "%d certificate(s); want the PCK certificate, its CA and the root", len(certs))
	}
	leafKey, err := certECDSAKey(certs[0], "PCK certificate")
	if err != nil {
		return nil, err
	}
	ext, err := ParsePCKExtensions(certs[0])
	if err != nil {
		return nil, err
	}
	// QVL 4.1.2.4.4: the PCK certificate says what it is in its subject.
	if !strings.Contains(certs[0].Subject.CommonName, "SGX PCK Certificate") {
		return nil, verr.New("dcap", "PCK certificate", verr.Malformed, "subject CN %q does not contain \"SGX PCK Certificate\"", certs[0].Subject.CommonName)
	}
	ca, err := PCKCA(certs[0])
	if err != nil {
		return nil, err
	}
	chain, err := verifyChain(certs, roots, "PCK certificate chain")
	if err != nil {
		return nil, err
	}
	if len(chain.certs) != 2 {
		return nil, verr.New("dcap", "PCK certificate chain", verr.Malformed, "want PCK certificate, PCK CA and root; got %d certificates below the root", len(chain.certs))
	}
	// QVL PckCertVerifier: the root and the CA say what they are.
	if cn := chain.root.Subject.CommonName; !strings.Contains(cn, "SGX Root CA") {
		return nil, verr.New("dcap", "PCK certificate chain", verr.UntrustedRoot, "root CN %q does not contain \"SGX Root CA\"", cn)
	}
	if cn := chain.certs[1].Subject.CommonName; !strings.Contains(cn, "CA") {
		return nil, verr.New("dcap", "PCK certificate chain", verr.Malformed, "PCK CA CN %q does not contain \"CA\"", cn)
	}
	pc = &pckChain{chain: chain, leafKey: leafKey, ext: ext, ca: ca}
	v.mu.Lock()
	cachePut(v.chains, key, pc)
	v.lastChain, v.lastChainRoots, v.lastPCK = bytes.Clone(pemChain), string(rk), pc
	v.mu.Unlock()
	return pc, nil
}

func (v *Verifier) verifiedCollateral(b *pcs.Bundle, roots []*x509.Certificate, rk []byte) (*Collateral, error) {
	v.mu.Lock()
	// Comparing the strings is cheap, and free when they share storage
	// with the last bundle (the caller passing the same bundle again).
	if v.lastCol != nil && v.lastBundle == *b && v.lastBundleRoot == string(rk) {
		c := v.lastCol
		v.mu.Unlock()
		return c, nil
	}
	v.mu.Unlock()
	d := bundleDigest(b)
	key := cacheKey(d[:], rk)
	v.mu.Lock()
	c := v.collateral[key]
	if c != nil {
		v.lastBundle, v.lastBundleRoot, v.lastCol = *b, string(rk), c
	}
	v.mu.Unlock()
	if c != nil {
		return c, nil
	}
	c, err := verifyCollateral(b, roots, v.cachedChain)
	if err != nil {
		return nil, err
	}
	v.mu.Lock()
	cachePut(v.collateral, key, c)
	v.lastBundle, v.lastBundleRoot, v.lastCol = *b, string(rk), c
	v.mu.Unlock()
	return c, nil
}

// checkCollateralFits checks that the TCB info and QE identity are the ones
// for this quote: the TEE kind's ids, and the PCK certificate's FMSPC and
// PCE-ID.
func checkCollateralFits(tee string, ti *TCBInfo, qi *QEIdentity, pck *PCKExtensions) error {
	wantID, wantQE := "SGX", "QE"
	if tee == TDX {
		wantID, wantQE = "TDX", "TD_QE"
	}
	if ti.ID != wantID {
		return verr.New("dcap", "TCB info", verr.CollateralMismatch, "TCB info is for %s, the quote is %s", ti.ID, wantID)
	}
	if ti.FMSPC != pck.FMSPC {
		return verr.New("dcap", "TCB info", verr.CollateralMismatch, "TCB info FMSPC %x, PCK certificate FMSPC %x", ti.FMSPC, pck.FMSPC)
	}
	if ti.PCEID != pck.PCEID {
		return verr.New("dcap", "TCB info", verr.CollateralMismatch, "TCB info PCE-ID %x, PCK certificate PCE-ID %x", ti.PCEID, pck.PCEID)
	}
	if qi.ID != wantQE {
		return verr.New("dcap", "QE identity", verr.CollateralMismatch, "QE identity is %s, the quote needs %s", qi.ID, wantQE)
	}
	return nil
}

// cachedChain is verifyChain with a cache keyed by the certificates, the
// roots and the purpose.
func (v *Verifier) cachedChain(certs []*x509.Certificate, roots []*x509.Certificate, what string) (*verifiedChain, error) {
	parts := [][]byte{[]byte(what), rootsKey(roots)}
	for _, c := range certs {
		parts = append(parts, c.Raw)
	}
	key := cacheKey(parts...)
	v.mu.Lock()
	vc := v.signers[key]
	v.mu.Unlock()
	if vc != nil {
		return vc, nil
	}
	vc, err := verifyChain(certs, roots, what)
	if err != nil {
		return nil, err
	}
	v.mu.Lock()
	cachePut(v.signers, key, vc)
	v.mu.Unlock()
	return vc, nil
}

// checkRevocation checks the PCK CA against the root CA CRL and the PCK
// certificate against the PCK CRL, which must be issued by the PCK CA of
// this quote's chain.
func (v *Verifier) checkRevocation(col *Collateral, pc *pckChain, opts Options, res *Result) error {
	leaf, ca := pc.chain.certs[0], pc.chain.certs[1]
	var missing []string
	if col.rootCRL != nil {
		if err := col.rootCRL.checkCert(ca); err != nil {
			return err
		}
	} else {
		missing = append(missing, "root CA CRL")
	}
	if col.pckCRL != nil {
		c, err := col.pckCRLFor(ca)
		if err != nil {
			return err
		}
		if err := c.checkTime(opts.Time); err != nil {
			return err
		}
		if err := c.checkCert(leaf); err != nil {
			return err
		}
	} else {
		missing = append(missing, "PCK CRL")
	}
	if len(missing) > 0 {
		if !opts.AllowMissingCRL {
			return verr.New("dcap", "revocation", verr.MissingCollateral, "collateral has no %v; revocation cannot be checked (allow it explicitly to go on)", missing)
		}
		res.Warnings = append(res.Warnings, fmt.Sprintf("revocation not checked: collateral has no %v", missing))
	}
	return nil
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}
