package main

import (
	"bytes"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/cloister-dev/cloister/evidence"
	"github.com/cloister-dev/cloister/evidence/dcap"
	"github.com/cloister-dev/cloister/evidence/pcs"
	"github.com/cloister-dev/cloister/evidence/sgx"
	"github.com/cloister-dev/cloister/evidence/tdx"
	"github.com/cloister-dev/cloister/policy"
	"github.com/cloister-dev/cloister/tee/sim"
)

const verifyEvidenceHelp = `Verify attestation evidence and print its claims (DESIGN.md "Common claims").

FILE is a raw SGX quote (v3), a raw TDX quote (v4/v5), a raw SEV-SNP report
(with --vcek), or a configfs-tsm report in Veraison's JSON or CBOR form; "-"
reads standard input. The type is detected; an unrecognised input says what
was tried.

Verification checks authenticity: every signature, the certificate chain to
the built-in roots (Intel SGX Root CA, AMD ARKs), validity at --at, CRLs, and
for SGX/TDX the TCB status from the collateral. SGX and TDX quotes need
collateral: --collateral BUNDLE (written by 'cloister collateral fetch' or
'cloister collateral bundle'), or --no-collateral to check signatures and the
chain only (tcb_status is then "NotEvaluated"). Without either, an SGX or TDX
quote is a usage error (exit 2) with a hint.

TCB status without a policy: Revoked exits 1, as Intel's library and
dcap-qvl fail on it (so does "TCB level not supported": no level of the TCB
info or QE identity covers the platform, an error); every other status
(OutOfDate, ConfigurationNeeded, TDRelaunchAdvised, ...) is printed in
tcb_status with exit 0. A policy decides the rest.

Appraisal runs only when a policy flag is given (--mrenclave, --mrsigner,
--product-id, --mrtd, --measurement, --min-svn, --allow-status, --allow-debug,
--any-identity, the PCK platform flags --sgx-type, --platform-instance-id,
--require-smt-disabled, --require-static-platform, --require-no-cached-keys,
and the SEV-SNP flags below). A policy must name an identity: --mrenclave,
--mrsigner with --product-id, --mrtd or --measurement, or --any-identity to
accept any (for inspection; otherwise a usage error, exit 2). Then the TCB
status must be UpToDate unless --allow-status says otherwise ("NotEvaluated"
and "Revoked" pass only when listed; SEV-SNP has no status, so it is checked
only when --allow-status is given), debug evidence fails unless --allow-debug,
and every mismatch is printed at once.

Output: the claims as indented JSON (or a report with --format text) on
stdout, only on exit 0. Exit 0 valid, 1 invalid, revoked or policy not
satisfied (reason on stderr), 2 usage error.
`

// maxStdinEvidence caps evidence read from standard input. Quotes and
// reports are a few KiB (a TDX quote with its PCK chain is about 5 KiB);
// the evidence package applies its own, tighter limits.
const maxStdinEvidence = 1 << 20

// runVerifyEvidence implements "cloister verify evidence".
func runVerifyEvidence(e *env, args []string) error {
	const path = "verify evidence"
	fs := newFlagSet(path, "FILE [flags]", verifyEvidenceHelp+verifySNPHelp+verifyEventLogHelp)
	var (
		collateralFile = fs.String("collateral", "", "DCAP collateral `BUNDLE` (JSON) for SGX/TDX quotes")
		noCollateral   = fs.Bool("no-collateral", false, "check signatures and chain only; tcb_status is NotEvaluated")
		at             = fs.String("at", "", "verification `TIME`, RFC 3339 or Unix seconds (default: now)")
		trustRoot      = fs.String("trust-root", "", "`PEM` file of root certificates that REPLACE the built-in roots")
		allowMissing   = fs.Bool("allow-missing-crl", false, "accept collateral without CRLs (revocation NOT checked; reported as a warning)")
		vcekFile       = fs.String("vcek", "", "SEV-SNP VCEK or VLEK certificate `FILE` (PEM or DER)")
		format         = fs.String("format", "json", "output `format`: json or text")
		pol            policyFlags
		snpPol         snpPolicyFlags
		elFlags        eventLogFlags
	)
	pol.register(fs)
	snpPol.register(fs)
	elFlags.register(fs)
	file, err := parseOneArg(e, fs, args, "evidence FILE")
	if err != nil {
		return err
	}
	if *format != "json" && *format != "text" {
		return usagef("--format %q: want json or text", *format)
	}
	if *collateralFile != "" && *noCollateral {
		return usagef("--collateral and --no-collateral exclude each other")
	}
	when := e.now()
	if *at != "" {
		if when, err = parseTime(*at); err != nil {
			return usagef("--at: %v", err)
		}
	}
	if err := elFlags.check(); err != nil {
		return err
	}
	appraise := pol.given(fs) || snpPol.given(fs) || elFlags.policyGiven()
	p := pol.policy()
	snpPol.apply(&p)
	elFlags.apply(&p)
	if appraise {
		if err := checkPolicy(p); err != nil {
			return err
		}
	}

	raw, file, err := readInput(e, file)
	if err != nil {
		return fmt.Errorf("reading evidence: %w", err)
	}
	opts := evidence.Options{
		Time:              when,
		SkipTCBEvaluation: *noCollateral,
		AllowMissingCRL:   *allowMissing,
	}
	if *collateralFile != "" {
		data, err := os.ReadFile(*collateralFile)
		if err != nil {
			return fmt.Errorf("reading collateral: %w", err)
		}
		if opts.Collateral, err = pcs.ParseBundle(data); err != nil {
			return fmt.Errorf("collateral %s: %w", *collateralFile, err)
		}
	}
	if *trustRoot != "" {
		if opts.TrustRoots, err = readCertificates(*trustRoot); err != nil {
			return fmt.Errorf("trust roots: %w", err)
		}
	}
	if *vcekFile != "" {
		if opts.VCEK, err = os.ReadFile(*vcekFile); err != nil {
			return fmt.Errorf("reading VCEK: %w", err)
		}
	}

	claims, err := evidence.Verify(e.ctx, raw, opts)
	if err != nil {
		return verifyFailure(raw, file, when, opts, err)
	}
	if err := elFlags.replay(claims, file); err != nil {
		return err
	}
	for _, w := range claims.Warnings {
		fmt.Fprintf(e.stderr, "%s %s: warning: %s\n", programName, path, w)
	}
	if appraise {
		if err := policy.Appraise(claims, p); err != nil {
			return &policyFailure{file: file, err: err}
		}
	}
	// Intel's library and dcap-qvl fail on a revoked TCB; scripts test the
	// exit status, so it is a failure unless a policy lists it.
	if claims.TCBStatus == evidence.StatusRevoked && !(appraise && slices.Contains(p.AllowStatus, evidence.StatusRevoked)) {
		return fmt.Errorf("%s: tcb_status Revoked: the platform's TCB, its QE or its TDX module is revoked (list it with --allow-status Revoked to print the claims anyway)", file)
	}

	var out []byte
	if *format == "json" {
		if out, err = json.MarshalIndent(claims, "", "  "); err != nil {
			return fmt.Errorf("encoding claims: %w", err)
		}
		out = append(out, '\n')
	} else {
		var b bytes.Buffer
		writeReport(&b, file, when, claims, appraise)
		out = b.Bytes()
	}
	if _, err := e.stdout.Write(out); err != nil {
		return fmt.Errorf("writing output: %w", err)
	}
	return nil
}

// verifyFailure turns a verification error into the CLI's error, with the
// next step where one is known.
func verifyFailure(raw []byte, file string, when time.Time, opts evidence.Options, err error) error {
	reason, ok := evidence.ReasonOf(err)
	// The failing package says which kind of evidence it was (a
	// configfs-tsm report carries either kind).
	var ve *evidence.VerifyError
	snp := errors.As(err, &ve) && ve.Pkg == "snp"
	switch {
	case ok && reason == evidence.MissingCollateral && snp:
		return usagef("%s: %v\n"+
			"An SEV-SNP report is verified with its VCEK (or VLEK): pass --vcek FILE, the certificate AMD's KDS\n"+
			"serves for the report's chip and reported TCB, or give a configfs-tsm report that carries it.", file, err)
	case ok && reason == evidence.MissingCollateral && opts.Collateral == nil && !opts.SkipTCBEvaluation:
		// Not bad evidence: the caller has not given what an SGX/TDX
		// verification needs, so this is a usage error with the fix.
		return usagef("%s: %v\n"+
			"SGX and TDX quotes need DCAP collateral to evaluate the TCB: pass --collateral BUNDLE\n"+
			"(from 'cloister collateral fetch --quote %s --out BUNDLE' or 'cloister collateral bundle'),\n"+
			"or --no-collateral to check signatures and the chain only (tcb_status \"NotEvaluated\").",
			file, err, strings.Replace(file, "(stdin)", "FILE", 1))
	case ok && reason == evidence.Expired:
		return fmt.Errorf("%s: invalid evidence: %w [reason: %s]\n"+
			"The verification time was %s (set it with --at TIME). If the collateral has expired, fetch a fresh\n"+
			"bundle: cloister collateral fetch --quote %s --out BUNDLE",
			file, err, reason, when.UTC().Format(time.RFC3339), strings.Replace(file, "(stdin)", "FILE", 1))
	case ok && reason == evidence.UntrustedRoot && quoteRootCN(raw) == sim.RootCN:
		return fmt.Errorf("%s: invalid evidence: %w [reason: %s]\n"+
			"This is simulator evidence: it verifies only under the sim root, named explicitly:\n"+
			"  cloister verify evidence %s --trust-root <(cloister sim root) ...", file, err, reason, file)
	case ok:
		return fmt.Errorf("%s: invalid evidence: %w [reason: %s]", file, err, reason)
	}
	return fmt.Errorf("%s: invalid evidence: %w", file, err)
}

// quoteRootCN returns the common name of the last certificate of an SGX or
// TDX quote's PCK chain (the root it claims), or "" when it cannot be read.
// It is only used to choose a hint: nothing is trusted from it.
func quoteRootCN(raw []byte) string {
	var s *dcap.SignatureData
	switch evidence.Detect(raw) {
	case evidence.KindSGXQuote:
		q, err := sgx.Parse(raw)
		if err != nil {
			return ""
		}
		s = q.Sig
	case evidence.KindTDXQuote:
		q, err := tdx.Parse(raw)
		if err != nil {
			return ""
		}
		s = q.Sig
	default:
		return ""
	}
	certs, err := dcap.ParsePEMChain(s.PCKChainPEM, "PCK certificate chain")
	if err != nil {
		return ""
	}
	return certs[len(certs)-1].Subject.CommonName
}

// policyFailure prints every mismatch on its own line under one heading:
// errors.Join's newline-separated text would otherwise run into the prefix.
type policyFailure struct {
	file string
	err  error
}

func (p *policyFailure) Error() string {
	return p.file + ": policy not satisfied:\n  " + strings.ReplaceAll(p.err.Error(), "\n", "\n  ")
}

func (p *policyFailure) Unwrap() error { return p.err }

// policyFlags are the appraisal flags; giving any of them turns appraisal on.
type policyFlags struct {
	mrenclave, mrsigner, mrtd, measurement hexList
	minSVN, productID                      uint16Flag
	allowStatus                            stringList
	allowDebug, anyIdentity                bool

	// PCK platform requirements (SGX/TDX, from the PCK certificate).
	sgxType                                                stringList
	platformInstanceID                                     hexList
	requireSMTDisabled, requireStatic, requireNoCachedKeys bool
}

// policyFlagNames are the flags that turn appraisal on.
var policyFlagNames = []string{"mrenclave", "mrsigner", "mrtd", "measurement", "product-id", "min-svn", "allow-status", "allow-debug", "any-identity",
	"sgx-type", "platform-instance-id", "require-smt-disabled", "require-static-platform", "require-no-cached-keys"}

func (f *policyFlags) register(fs *flag.FlagSet) {
	fs.Var(&f.mrenclave, "mrenclave", "policy: accepted SGX MRENCLAVE (`HEX`, 32 bytes; repeatable, any-of)")
	fs.Var(&f.mrsigner, "mrsigner", "policy: accepted SGX MRSIGNER (`HEX`, 32 bytes; repeatable, any-of)")
	fs.Var(&f.mrtd, "mrtd", "policy: accepted TDX MRTD (`HEX`, 48 bytes; repeatable, any-of)")
	fs.Var(&f.measurement, "measurement", "policy: accepted SEV-SNP measurement (`HEX`, 48 bytes; repeatable, any-of)")
	fs.Var(&f.productID, "product-id", "policy: the accepted SGX ISVPRODID `N` (with --mrsigner: one product of a signer)")
	fs.Var(&f.minSVN, "min-svn", "policy: lowest accepted SGX ISVSVN `N`")
	fs.Var(&f.allowStatus, "allow-status", "policy: accepted tcb_status `S` (repeatable or comma list; default UpToDate)")
	fs.BoolVar(&f.allowDebug, "allow-debug", false, "policy: accept debug enclaves/TDs/guests (development only)")
	fs.Var(&f.sgxType, "sgx-type", "policy: accepted PCK SGX `TYPE`: standard, scalable, scalable_with_integrity (repeatable or comma list)")
	fs.Var(&f.platformInstanceID, "platform-instance-id", "policy: accepted PCK platform instance ID (`HEX`, 16 bytes; repeatable, any-of)")
	fs.BoolVar(&f.requireSMTDisabled, "require-smt-disabled", false, "policy: the PCK certificate must say SMT is disabled")
	fs.BoolVar(&f.requireStatic, "require-static-platform", false, "policy: the PCK certificate must say the platform is not dynamic")
	fs.BoolVar(&f.requireNoCachedKeys, "require-no-cached-keys", false, "policy: the PCK certificate must say platform keys are not cached")
	fs.BoolVar(&f.anyIdentity, "any-identity", false, "policy: accept any enclave/TD/guest identity (inspection only; a policy otherwise needs\n--mrenclave, --mrsigner with --product-id, --mrtd or --measurement)")
}

// appraisal returns the policy of the flags and whether any was given. A
// policy must be well formed and name an identity (or --any-identity):
// an exit status 0 from a policy that accepts anyone's enclave would be
// read as "this is my enclave". Both mistakes are usage errors.
func (f *policyFlags) appraisal(fs *flag.FlagSet) (policy.Policy, bool, error) {
	p := f.policy()
	if !f.given(fs) {
		return p, false, nil
	}
	return p, true, checkPolicy(p)
}

// checkPolicy refuses, as usage errors, a malformed policy and one that
// names no identity.
func checkPolicy(p policy.Policy) error {
	if err := p.Validate(); err != nil {
		return usagef("policy flags: %v", err)
	}
	if err := p.RequireIdentity(); err != nil {
		return usagef("policy flags: %v\n(flags: --mrenclave, --mrsigner with --product-id, --mrtd, --measurement, or --any-identity)", err)
	}
	return nil
}

// given reports whether any policy flag appeared on the command line (even
// "--allow-debug=false": asking for a policy is what turns appraisal on).
func (f *policyFlags) given(fs *flag.FlagSet) bool {
	seen := false
	fs.Visit(func(fl *flag.Flag) {
		for _, n := range policyFlagNames {
			if fl.Name == n {
				seen = true
			}
		}
	})
	return seen
}

func (f *policyFlags) policy() policy.Policy {
	p := policy.Policy{
		MRENCLAVE:   f.mrenclave,
		MRSIGNER:    f.mrsigner,
		MRTD:        f.mrtd,
		Measurement: f.measurement,
		AllowStatus: f.allowStatus,
		AllowDebug:  f.allowDebug,

		SGXTypes:              f.sgxType,
		PlatformInstanceIDs:   f.platformInstanceID,
		RequireSMTDisabled:    f.requireSMTDisabled,
		RequireStaticPlatform: f.requireStatic,
		RequireNoCachedKeys:   f.requireNoCachedKeys,
		AnyIdentity:           f.anyIdentity,
	}
	if f.minSVN.set {
		v := f.minSVN.v
		p.MinISVSVN = &v
	}
	if f.productID.set {
		v := f.productID.v
		p.ISVProdID = &v
	}
	return p
}

// readCertificates reads every certificate of a PEM file (or, failing any
// PEM block, DER certificates concatenated), so a root shipped either way
// (testdata/sgx/intel_sgx_root_ca.der) can be named.
func readCertificates(name string) ([]*x509.Certificate, error) {
	data, err := os.ReadFile(name)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", name, err)
	}
	var certs []*x509.Certificate
	rest := data
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("%s: PEM block %q is not a CERTIFICATE", name, block.Type)
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s: certificate %d: %w", name, len(certs)+1, err)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		if certs, err = x509.ParseCertificates(data); err != nil {
			return nil, fmt.Errorf("%s: no PEM certificate and not DER: %w", name, err)
		}
	}
	if len(certs) == 0 {
		return nil, fmt.Errorf("%s: no certificates", name)
	}
	return certs, nil
}

// writeReport prints claims for people. The JSON form is the contract; this
// one may change between releases.
func writeReport(w io.Writer, file string, at time.Time, c *evidence.Claims, appraised bool) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	row := func(k string, v any) { fmt.Fprintf(tw, "%s\t%v\n", k, v) }
	hexRow := func(k string, v evidence.HexBytes) {
		if len(v) > 0 {
			row(k, v.String())
		}
	}
	fmt.Fprintf(w, "%s: valid %s evidence (verified at %s)\n\n", file, c.TEE, at.UTC().Format(time.RFC3339))
	row("TEE", c.TEE)
	row("TCB status", c.TCBStatus)
	if len(c.AdvisoryIDs) > 0 {
		row("Advisories", strings.Join(c.AdvisoryIDs, ", "))
	} else {
		row("Advisories", "none")
	}
	row("Debug", c.Debug)
	hexRow("Report data", c.ReportData)
	if d := c.DCAPClaims; d != nil {
		hexRow("FMSPC", d.FMSPC)
		row("PCE SVN", d.PCESVN)
		row("QE SVN", d.QESVN)
		if d.TCBDate != "" {
			row("TCB date", d.TCBDate)
		}
		row("SGX type", d.SGXType)
		hexRow("Platform instance ID", d.PlatformInstanceID)
		if d.SMTEnabled != nil {
			row("Platform config", fmt.Sprintf("dynamic platform %v, cached keys %v, SMT enabled %v", *d.DynamicPlatform, *d.CachedKeys, *d.SMTEnabled))
		}
	}
	if s := c.SGXClaims; s != nil {
		hexRow("MRENCLAVE", s.MRENCLAVE)
		hexRow("MRSIGNER", s.MRSIGNER)
		row("ISV prod ID", s.ISVProdID)
		row("ISV SVN", s.ISVSVN)
		hexRow("Attributes", s.Attributes)
		row("MISCSELECT", fmt.Sprintf("%08x", s.MiscSelect))
		if k := s.SGXKSSClaims; k != nil {
			hexRow("CONFIGID", k.ConfigID)
			row("CONFIGSVN", k.ConfigSVN)
			hexRow("ISV ext prod ID", k.ISVExtProdID)
			hexRow("ISV family ID", k.ISVFamilyID)
		}
	}
	if t := c.TDXClaims; t != nil {
		hexRow("MRTD", t.MRTD)
		hexRow("RTMR0", t.RTMR0)
		hexRow("RTMR1", t.RTMR1)
		hexRow("RTMR2", t.RTMR2)
		hexRow("RTMR3", t.RTMR3)
		hexRow("MRSEAM", t.MRSEAM)
		hexRow("MRCONFIGID", t.MRConfigID)
		hexRow("MROWNER", t.MROwner)
		hexRow("MROWNERCONFIG", t.MROwnerConfig)
		hexRow("MRSERVICETD", t.MRServiceTD)
		hexRow("TD attributes", t.TDAttributes)
		hexRow("XFAM", t.XFAM)
		hexRow("TEE TCB SVN", t.TEETCBSVN)
		hexRow("TEE TCB SVN2", t.TEETCBSVN2)
		if t.RelaunchAdvised {
			row("TD relaunch", "advised (relaunching brings the TD to the newest TDX level)")
		}
	}
	if s := c.SNPClaims; s != nil {
		row("Product", s.Product)
		hexRow("Measurement", s.Measurement)
		hexRow("Host data", s.HostData)
		hexRow("ID key digest", s.IDKeyDigest)
		hexRow("Author key digest", s.AuthorKeyDigest)
		hexRow("Report ID", s.ReportID)
		row("Policy", fmt.Sprintf("%#x", s.Policy))
		row("VMPL", s.VMPL)
		row("Guest SVN", s.GuestSVN)
		row("Signer", s.Signer)
		row("Reported TCB", fmt.Sprintf("%#016x (%s)", s.ReportedTCB, formatSNPTCB(s.ReportedSPL)))
		row("Launch TCB", fmt.Sprintf("%#016x (%s)", s.LaunchTCB, formatSNPTCB(s.LaunchSPL)))
		row("Current TCB", fmt.Sprintf("%#016x", s.CurrentTCB))
		row("Committed TCB", fmt.Sprintf("%#016x", s.CommittedTCB))
		hexRow("Chip ID", s.ChipID)
	}
	tw.Flush()
	writeEventLogReport(w, c)
	for _, warn := range c.Warnings {
		fmt.Fprintf(w, "\nWARNING: %s\n", warn)
	}
	if appraised {
		fmt.Fprintf(w, "\nPolicy: satisfied\n")
	} else {
		fmt.Fprintf(w, "\nPolicy: none given (authenticity checked; nothing appraised)\n")
	}
}
