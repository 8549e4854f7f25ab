// Package policy appraises verified evidence against the values a relying
// party expects: measurements, signer, security version, TCB status and the
// debug flag.
//
// Appraisal is the third step of parse → verify → appraise. It does NOT
// check signatures, chains or collateral: its input must be Claims returned
// by evidence.Verify, which exist only for evidence whose signatures were
// checked. Appraisal is pure: no I/O, no clock, no network.
//
// # Rules
//
// Every check that fails is reported, all at once, as one errors.Join of
// *Mismatch values; each names the field, what the claims hold and what the
// policy wants, in hex. Appraise never stops at the first failure, so a
// person fixing a deployment sees the whole picture.
//
// A policy field that does not exist for the evidence's TEE kind (MRTD on an
// SGX quote, MRENCLAVE on a TDX quote, Measurement on either) is a failure,
// never skipped: the policy's author asked for a value the evidence cannot
// prove. The sim-sgx and sim-tdx kinds carry the SGX and TDX fields
// respectively.
//
// TCB status: when AllowStatus is empty only "UpToDate" is accepted. The
// status "NotEvaluated" (signatures and chain checked, no collateral used)
// passes only when AllowStatus lists it explicitly: a quote checked without
// collateral never passes by default.
//
// SEV-SNP is the one exception to the default. AMD has no TCB status; the
// guest's TCB is bound instead by the VCEK, which AMD certifies for exactly
// the reported TCB and which evidence.Verify checks. SNP claims therefore
// carry "NotEvaluated", and for SNP evidence (sev-snp, sim-snp) an empty AllowStatus accepts
// "NotEvaluated" as well as "UpToDate": in effect the status check applies
// to SNP only when AllowStatus is non-empty, and then by the same rule as
// above (so it passes only if AllowStatus lists "NotEvaluated"). Any other
// status on SNP claims still fails by default. The relying party pins an SNP
// guest with Measurement instead, and its platform with SNPPolicy's minimum
// TCB levels; SNP evidence must also come from VMPL 0, allow no migration
// agent and run committed firmware unless SNPPolicy says otherwise (snp.go).
//
// Debug evidence (Claims.Debug true) fails unless AllowDebug is set: a
// debuggable enclave, TD or guest discloses its memory to the host.
package policy

import (
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"github.com/cloister-dev/cloister/evidence"
)

// Sizes of the measurement values a Policy may name, in bytes. A value of
// another length can never match, so Validate rejects it up front instead of
// letting it fail later as a confusing mismatch.
const (
	SizeMRENCLAVE   = 32 // SHA-256
	SizeMRSIGNER    = 32 // SHA-256 of the signer's modulus
	SizeMRTD        = 48 // SHA-384
	SizeMeasurement = 48 // SHA-384 (SEV-SNP launch digest)
)

// Policy lists what a relying party expects of verified evidence. The zero
// Policy still checks something: TCB status "UpToDate" (SEV-SNP: see the
// package doc), no debug, and for SEV-SNP evidence VMPL 0, no migration
// agent and committed firmware (SNPPolicy).
//
// Each [][]byte field is an any-of list: the claim must equal one of its
// entries. An empty list means "no requirement on this field"; a non-empty
// list on evidence of a TEE kind without that field is a failure.
type Policy struct {
	// MRENCLAVE lists accepted SGX enclave measurements (32 bytes each).
	MRENCLAVE [][]byte
	// MRSIGNER lists accepted SGX enclave signers (32 bytes each).
	MRSIGNER [][]byte
	// MRTD lists accepted TDX trust domain measurements (48 bytes each).
	MRTD [][]byte
	// Measurement lists accepted SEV-SNP launch measurements (48 bytes each).
	Measurement [][]byte
	// MinISVSVN, when set, is the lowest accepted SGX ISVSVN (security
	// version of the enclave). It applies to SGX evidence only.
	MinISVSVN *uint16
	// ISVProdID, when set, is the one accepted SGX ISVPRODID. With MRSIGNER
	// it names a product of a signer: a signer's other products (other
	// ISVPRODIDs under the same key) are refused. It applies to SGX only.
	ISVProdID *uint16
	// AllowStatus lists accepted TCB statuses (evidence.Status* values).
	// Empty means only "UpToDate" (for SEV-SNP, which has no status, also
	// "NotEvaluated"; see the package doc). Otherwise "NotEvaluated" is
	// accepted only when listed.
	AllowStatus []string
	// AllowDebug accepts debuggable enclaves, TDs and guests. Only for
	// development: the host can read a debug TEE's memory.
	AllowDebug bool

	// PCK platform requirements (SGX and TDX, from the PCK certificate;
	// see pck.go). On evidence that cannot state them they fail.
	//
	// SGXTypes lists accepted PCK SGX types ("standard", "scalable",
	// "scalable_with_integrity"); any-of.
	SGXTypes []string
	// PlatformInstanceIDs lists accepted platform instance IDs (16 bytes
	// each); only PCK Platform CA certificates carry one.
	PlatformInstanceIDs [][]byte
	// RequireSMTDisabled, RequireStaticPlatform and RequireNoCachedKeys
	// require the PCK certificate's configuration to say SMT off, not a
	// dynamic platform, and no cached platform keys.
	RequireSMTDisabled    bool
	RequireStaticPlatform bool
	RequireNoCachedKeys   bool

	// AppDigests lists accepted app digests (32 bytes each, what `cloister
	// measure` prints): TDX evidence must come with a replayed event log
	// (evidence.ReplayEventLog) whose RTMR3 events are all Cloister app
	// launches of these digests, at least one (app.go). It does not name the
	// TD by itself: pin MRTD as well.
	AppDigests [][]byte

	// SNP holds the SEV-SNP requirements (snp.go). Its zero value still
	// requires VMPL 0, no migration agent and committed firmware of SNP
	// evidence.
	SNP SNPPolicy

	// AnyIdentity says, on purpose, that the policy names no identity:
	// any genuine enclave, TD or guest that passes the other checks is
	// accepted. Only for tooling that inspects evidence; a caller that
	// authenticates a peer names MRENCLAVE, MRSIGNER with ISVProdID,
	// MRTD or Measurement instead (see RequireIdentity).
	AnyIdentity bool
}

// ErrNoIdentity is RequireIdentity's error: the policy would accept any
// genuine TEE of any vendor, including one an attacker rents.
var ErrNoIdentity = errors.New("policy names no identity: set MRENCLAVE, MRSIGNER with ISVProdID, MRTD or Measurement (or AnyIdentity, for tooling only)")

// RequireIdentity returns ErrNoIdentity unless p names whose code it
// accepts: a measurement (MRENCLAVE, MRTD, Measurement), a signer's product
// (MRSIGNER with ISVProdID: a signer alone admits all its products), or
// AnyIdentity. Appraise does not call it: a zero Policy still appraises
// status and debug for tools. Every caller that authenticates a peer with
// a Policy calls it first (ratls.NewVerifier does).
func (p Policy) RequireIdentity() error {
	if p.AnyIdentity || len(p.MRENCLAVE) > 0 || len(p.MRTD) > 0 || len(p.Measurement) > 0 ||
		(len(p.MRSIGNER) > 0 && p.ISVProdID != nil) {
		return nil
	}
	return ErrNoIdentity
}

// Mismatch is one failed check. Appraise returns every Mismatch joined with
// errors.Join; callers that map failures to responses (the attestation
// service) read the fields instead of parsing the message.
type Mismatch struct {
	// Field is the claim's JSON name, e.g. "mrenclave" or "tcb_status".
	Field string
	// Got is what the claims hold, as printed (hex for byte strings).
	Got string
	// Want is what the policy accepts, as printed.
	Want string
}

// Error formats as "policy: field: got X, want Y".
func (m *Mismatch) Error() string {
	return "policy: " + m.Field + ": got " + m.Got + ", want " + m.Want
}

// knownStatus is the set of statuses evidence.Claims can carry; a policy
// naming anything else has a typo that would otherwise fail silently forever.
func knownStatus(s string) bool {
	for _, k := range statusNames() {
		if s == k {
			return true
		}
	}
	return false
}

// Validate reports every malformed entry of p: measurement values of the
// wrong length and unknown status names. Appraise calls it first; the CLI
// calls it to turn a bad flag into a usage error before verifying anything.
func (p Policy) Validate() error {
	var errs []error
	checkSizes := func(field string, vals [][]byte, size int) {
		for i, v := range vals {
			if len(v) != size {
				got := fmt.Sprintf("%d bytes", len(v))
				if len(v) > 0 {
					got += " (" + hex.EncodeToString(v) + ")"
				}
				errs = append(errs, fmt.Errorf("policy: invalid %s entry %d: %s, want %d bytes", field, i, got, size))
			}
		}
	}
	checkSizes("mrenclave", p.MRENCLAVE, SizeMRENCLAVE)
	checkSizes("mrsigner", p.MRSIGNER, SizeMRSIGNER)
	checkSizes("mrtd", p.MRTD, SizeMRTD)
	checkSizes("measurement", p.Measurement, SizeMeasurement)
	checkSizes("app_digest", p.AppDigests, SizeAppDigest)
	for _, s := range p.AllowStatus {
		if !knownStatus(s) {
			errs = append(errs, fmt.Errorf("policy: invalid tcb_status %q: not one of %s", s, strings.Join(statusNames(), ", ")))
		}
	}
	checkSizes("platform_instance_id", p.PlatformInstanceIDs, SizePlatformInstanceID)
	errs = append(errs, validatePCK(p)...)
	errs = append(errs, p.SNP.validate()...)
	return errors.Join(errs...)
}

// Appraise checks c against p and returns nil only if every check passes.
// Otherwise it returns errors.Join of one *Mismatch per failed check (or the
// Validate errors when p itself is malformed). c must come from
// evidence.Verify: Appraise does not check signatures.
func Appraise(c *evidence.Claims, p Policy) error {
	if c == nil {
		return errors.New("policy: appraise: no claims")
	}
	if err := p.Validate(); err != nil {
		return err
	}
	var errs []error
	add := func(m *Mismatch) {
		if m != nil {
			errs = append(errs, m)
		}
	}

	// Field presence follows the claims' parts, not the tee string, so that
	// sim-sgx/sim-tdx are appraised exactly like their hardware kinds.
	sgx, tdx, snp := c.SGXClaims, c.TDXClaims, c.SNPClaims

	if len(p.MRENCLAVE) > 0 {
		if sgx == nil {
			add(absent(c, "mrenclave", p.MRENCLAVE))
		} else {
			add(anyOf("mrenclave", sgx.MRENCLAVE, p.MRENCLAVE))
		}
	}
	if len(p.MRSIGNER) > 0 {
		if sgx == nil {
			add(absent(c, "mrsigner", p.MRSIGNER))
		} else {
			add(anyOf("mrsigner", sgx.MRSIGNER, p.MRSIGNER))
		}
	}
	if p.ISVProdID != nil {
		want := fmt.Sprint(*p.ISVProdID)
		switch {
		case sgx == nil:
			add(&Mismatch{Field: "isv_prod_id", Got: notPresent(c, "isv_prod_id"), Want: want})
		case sgx.ISVProdID != *p.ISVProdID:
			add(&Mismatch{Field: "isv_prod_id", Got: fmt.Sprint(sgx.ISVProdID), Want: want})
		}
	}
	if p.MinISVSVN != nil {
		want := fmt.Sprintf(">= %d", *p.MinISVSVN)
		switch {
		case sgx == nil:
			add(&Mismatch{Field: "isv_svn", Got: notPresent(c, "isv_svn"), Want: want})
		case sgx.ISVSVN < *p.MinISVSVN:
			add(&Mismatch{Field: "isv_svn", Got: fmt.Sprint(sgx.ISVSVN), Want: want})
		}
	}
	if len(p.MRTD) > 0 {
		if tdx == nil {
			add(absent(c, "mrtd", p.MRTD))
		} else {
			add(anyOf("mrtd", tdx.MRTD, p.MRTD))
		}
	}
	if len(p.Measurement) > 0 {
		if snp == nil {
			add(absent(c, "measurement", p.Measurement))
		} else {
			add(anyOf("measurement", snp.Measurement, p.Measurement))
		}
	}

	for _, m := range appraiseApps(c, p.AppDigests) {
		add(m)
	}
	for _, m := range appraiseSNP(c, p.SNP) {
		add(m)
	}

	add(checkStatus(c, p.AllowStatus))
	for _, m := range appraisePCK(c, p) {
		add(m)
	}

	if c.Debug && !p.AllowDebug {
		add(&Mismatch{Field: "debug", Got: "true", Want: "false (debug not allowed)"})
	}
	return errors.Join(errs...)
}

// checkStatus applies the TCB status rule of the package doc.
func checkStatus(c *evidence.Claims, allow []string) *Mismatch {
	if len(allow) == 0 {
		allow = []string{evidence.StatusUpToDate}
		if c.SNPClaims != nil { // sev-snp and sim-snp
			// AMD has no TCB status; the VCEK binds the TCB instead. Only
			// "no status" is excused: a real bad status still fails.
			allow = append(allow, evidence.StatusNotEvaluated)
		}
	}
	for _, s := range allow {
		if c.TCBStatus == s {
			return nil
		}
	}
	return &Mismatch{Field: "tcb_status", Got: quoteOrEmpty(c.TCBStatus), Want: "one of [" + strings.Join(allow, " ") + "]"}
}

// anyOf returns a Mismatch unless got equals one of want.
func anyOf(field string, got []byte, want [][]byte) *Mismatch {
	for _, w := range want {
		if string(got) == string(w) {
			return nil
		}
	}
	return &Mismatch{Field: field, Got: hexOrEmpty(got), Want: wantList(want)}
}

// absent reports a policy field the evidence's TEE kind cannot satisfy.
func absent(c *evidence.Claims, field string, want [][]byte) *Mismatch {
	return &Mismatch{Field: field, Got: notPresent(c, field), Want: wantList(want)}
}

func notPresent(c *evidence.Claims, field string) string {
	return fmt.Sprintf("nothing (tee %q evidence has no %s)", c.TEE, field)
}

func wantList(vals [][]byte) string {
	s := make([]string, len(vals))
	for i, v := range vals {
		s[i] = hexOrEmpty(v)
	}
	return "one of [" + strings.Join(s, " ") + "]"
}

func hexOrEmpty(b []byte) string {
	if len(b) == 0 {
		return "(empty)"
	}
	return hex.EncodeToString(b)
}

func quoteOrEmpty(s string) string {
	if s == "" {
		return "(empty)"
	}
	return s
}

// statusNames lists the known statuses in the DESIGN.md order, for messages.
func statusNames() []string {
	return []string{
		evidence.StatusUpToDate,
		evidence.StatusSWHardeningNeeded,
		evidence.StatusConfigurationNeeded,
		evidence.StatusConfigurationAndSWHardeningNeeded,
		evidence.StatusOutOfDate,
		evidence.StatusOutOfDateConfigurationNeeded,
		evidence.StatusRevoked,
		evidence.StatusTDRelaunchAdvised,
		evidence.StatusTDRelaunchAdvisedConfigurationNeeded,
		evidence.StatusNotEvaluated,
	}
}
