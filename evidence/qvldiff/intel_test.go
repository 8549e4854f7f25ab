package qvldiff

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cloister-dev/cloister/evidence/pcs"
)

// appEnv names the environment variable that holds the AttestationApp path.
const appEnv = "CLOISTER_QVL_APP"

// qvlApp returns the AttestationApp path, skipping the test when it is not
// set, unless CI=true: a differential test that skips in CI does not run.
func qvlApp(t *testing.T) string {
	t.Helper()
	app := os.Getenv(appEnv)
	if app == "" {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is not set in CI: build it with third_party/intel-qvl/build.sh (.ci/run does)", appEnv)
		}
		t.Skipf("%s not set: run CLOISTER_QVL_APP=$(third_party/intel-qvl/build.sh) go test ./evidence/qvldiff", appEnv)
	}
	if fi, err := os.Stat(app); err != nil || fi.IsDir() {
		t.Fatalf("%s=%s: not an executable file (%v)", appEnv, app, err)
	}
	return app
}

// intelApp runs AttestationApp in its own directory of input files.
type intelApp struct {
	path string
	dir  string
}

// the names of AttestationApp's input files in intelApp.dir.
const (
	fQuote     = "quote.dat"
	fPCK       = "pckCert.pem"
	fPCKChain  = "pckSignChain.pem"
	fTCBChain  = "tcbSignChain.pem"
	fTCBInfo   = "tcbInfo.json"
	fQEID      = "qeIdentity.json"
	fRootCRL   = "rootCaCrl.der"
	fPCKCRL    = "intermediateCaCrl.der"
	fTrustRoot = "trustedRootCaCert.pem"
)

// intelSteps are the checks AttestationApp reports, in the order it runs
// them (AppCore::runVerification): the PCK chain with both CRLs, the TCB
// info, the QE identity (both with the TCB signing chain and the root CRL)
// and the quote against the PCK certificate, PCK CRL, TCB info and QE
// identity. Only the first three take the time.
var intelSteps = []string{"PCK certificate chain", "TCB info", "QeIdentity", "Quote"}

var stepLine = regexp.MustCompile(`^(PCK certificate chain|TCB info|QeIdentity|Quote) verification (?:(OK)!|failed with status: (\w+)(?:\(\d+\))?)$`)

// intelOutcome is what AttestationApp printed: one status per step
// ("STATUS_OK" when it passed), or a crash.
type intelOutcome struct {
	status map[string]string
	crash  string
	out    string
}

// splitPEMChain cuts the type-5 certification data into certificates the way
// Intel's quote verification enclave hands them to the library: the text up
// to and including each END CERTIFICATE line. The first is the PCK
// certificate, the rest its signing chain. Trailing bytes after the last
// END line (a NUL in most real quotes) are dropped.
func splitPEMChain(data []byte) (pck, chain []byte) {
	const end = "-----END CERTIFICATE-----"
	var blocks [][]byte
	rest := data
	for {
		i := bytes.Index(rest, []byte(end))
		if i < 0 {
			break
		}
		n := i + len(end)
		blk := append(append([]byte{}, rest[:n]...), '\n')
		blocks = append(blocks, bytes.TrimLeft(blk, "\n\r\x00"))
		rest = rest[n:]
	}
	if len(blocks) == 0 {
		return nil, nil
	}
	return blocks[0], bytes.Join(blocks[1:], nil)
}

// wrapSigned builds the PCS body AttestationApp reads from the bundle's
// signed JSON text and its signature.
func wrapSigned(key, body, sig string) []byte {
	return []byte(`{"` + key + `":` + body + `,"signature":"` + sig + `"}`)
}

func decodeCRL(s string) []byte {
	if strings.HasPrefix(strings.TrimSpace(s), "-----BEGIN") {
		return []byte(s)
	}
	b, err := hex.DecodeString(s)
	if err != nil {
		// A mutated hex string: hand Intel the text as it is, as a caller would.
		return []byte(s)
	}
	return b
}

// run verifies quote with bundle at t against root (PEM) and returns what
// AttestationApp reported. pckChain is the type-5 certification data of the
// quote (the PCK chain source for Intel's library).
func (a *intelApp) run(ctx context.Context, quote, pckChain []byte, b *pcs.Bundle, rootPEM []byte, at time.Time) (intelOutcome, error) {
	pck, chain := splitPEMChain(pckChain)
	files := map[string][]byte{
		fQuote: quote, fPCK: pck, fPCKChain: chain, fTCBChain: []byte(b.TCBInfoIssuerChain),
		fTCBInfo: wrapSigned("tcbInfo", b.TCBInfo, b.TCBInfoSignature),
		fQEID:    wrapSigned("enclaveIdentity", b.QEIdentity, b.QEIdentitySignature),
		fRootCRL: decodeCRL(b.RootCACRL), fPCKCRL: decodeCRL(b.PCKCRL), fTrustRoot: rootPEM,
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(a.dir, name), data, 0o600); err != nil {
			return intelOutcome{}, err
		}
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	p := func(n string) string { return filepath.Join(a.dir, n) }
	cmd := exec.CommandContext(ctx, a.path,
		"--quote="+p(fQuote), "--pckCert="+p(fPCK), "--pckSignChain="+p(fPCKChain),
		"--tcbSignChain="+p(fTCBChain), "--tcbInfo="+p(fTCBInfo), "--qeIdentity="+p(fQEID),
		"--rootCaCrl="+p(fRootCRL), "--intermediateCaCrl="+p(fPCKCRL),
		"--trustedRootCaCert="+p(fTrustRoot), "--expirationDate="+strconv.FormatInt(at.Unix(), 10))
	cmd.Dir = a.dir
	out, err := cmd.CombinedOutput()
	o := intelOutcome{status: map[string]string{}, out: string(out)}
	if ctx.Err() != nil {
		return o, fmt.Errorf("AttestationApp: %w", ctx.Err())
	}
	if err != nil {
		// An uncaught exception aborts the app: that is a verdict (a crash)
		// on this input, not a harness failure.
		o.crash = err.Error()
		return o, nil
	}
	for _, line := range strings.Split(string(out), "\n") {
		m := stepLine.FindStringSubmatch(strings.TrimSpace(line))
		if m == nil {
			continue
		}
		if m[2] == "OK" {
			o.status[m[1]] = "STATUS_OK"
		} else {
			o.status[m[1]] = m[3]
		}
	}
	if strings.Contains(string(out), "ERROR while trying to read input files") {
		o.crash = "input files unreadable"
	}
	return o, nil
}

// verdict is a result on the common scale: "ok:<TCB status>" or
// "fail:<class>".
type verdict string

// Failure classes shared by both verifiers.
const (
	clsMalformed  = "malformed" // parse or format error, unsupported type
	clsSignature  = "signature" // a signature or the QE report data binding does not verify
	clsChain      = "chain"     // certificate chain: issuer, untrusted root, missing certificate
	clsRevoked    = "revoked"   // a certificate is on a CRL
	clsExpired    = "expired"   // outside a validity window
	clsNotSupp    = "tcb-not-supported"
	clsMismatch   = "mismatch"   // collateral does not belong to this quote (FMSPC, PCE-ID, QE identity, TDX module)
	clsCrash      = "crash"      // AttestationApp aborted
	clsMissing    = "missing"    // required input absent
	clsUnexpected = "unexpected" // a status this harness does not know
)

// intelStatusClass maps AttestationApp's failure statuses (QuoteVerification.h)
// to failure classes; TCB statuses are in intelTCBStatus.
var intelStatusClass = map[string]string{
	"STATUS_UNSUPPORTED_CERT_FORMAT":                  clsMalformed,
	"STATUS_SGX_ROOT_CA_MISSING":                      clsChain,
	"STATUS_SGX_ROOT_CA_INVALID":                      clsChain,
	"STATUS_SGX_ROOT_CA_INVALID_EXTENSIONS":           clsChain,
	"STATUS_SGX_ROOT_CA_INVALID_ISSUER":               clsChain,
	"STATUS_SGX_ROOT_CA_UNTRUSTED":                    clsChain,
	"STATUS_SGX_INTERMEDIATE_CA_MISSING":              clsChain,
	"STATUS_SGX_INTERMEDIATE_CA_INVALID":              clsChain,
	"STATUS_SGX_INTERMEDIATE_CA_INVALID_EXTENSIONS":   clsChain,
	"STATUS_SGX_INTERMEDIATE_CA_INVALID_ISSUER":       clsChain,
	"STATUS_SGX_INTERMEDIATE_CA_REVOKED":              clsRevoked,
	"STATUS_SGX_PCK_MISSING":                          clsChain,
	"STATUS_SGX_PCK_INVALID":                          clsChain,
	"STATUS_SGX_PCK_INVALID_EXTENSIONS":               clsMalformed,
	"STATUS_SGX_PCK_INVALID_ISSUER":                   clsChain,
	"STATUS_SGX_PCK_REVOKED":                          clsRevoked,
	"STATUS_TRUSTED_ROOT_CA_INVALID":                  clsChain,
	"STATUS_SGX_PCK_CERT_CHAIN_UNTRUSTED":             clsChain,
	"STATUS_SGX_TCB_INFO_UNSUPPORTED_FORMAT":          clsMalformed,
	"STATUS_SGX_TCB_INFO_INVALID":                     clsMalformed,
	"STATUS_TCB_INFO_INVALID_SIGNATURE":               clsSignature,
	"STATUS_SGX_TCB_SIGNING_CERT_MISSING":             clsChain,
	"STATUS_SGX_TCB_SIGNING_CERT_INVALID":             clsChain,
	"STATUS_SGX_TCB_SIGNING_CERT_INVALID_EXTENSIONS":  clsChain,
	"STATUS_SGX_TCB_SIGNING_CERT_INVALID_ISSUER":      clsChain,
	"STATUS_SGX_TCB_SIGNING_CERT_CHAIN_UNTRUSTED":     clsChain,
	"STATUS_SGX_TCB_SIGNING_CERT_REVOKED":             clsRevoked,
	"STATUS_SGX_CRL_UNSUPPORTED_FORMAT":               clsMalformed,
	"STATUS_SGX_CRL_UNKNOWN_ISSUER":                   clsChain,
	"STATUS_SGX_CRL_INVALID":                          clsMalformed,
	"STATUS_SGX_CRL_INVALID_EXTENSIONS":               clsMalformed,
	"STATUS_SGX_CRL_INVALID_SIGNATURE":                clsSignature,
	"STATUS_SGX_CA_CERT_UNSUPPORTED_FORMAT":           clsMalformed,
	"STATUS_SGX_CA_CERT_INVALID":                      clsChain,
	"STATUS_TRUSTED_ROOT_CA_UNSUPPORTED_FORMAT":       clsMalformed,
	"STATUS_MISSING_PARAMETERS":                       clsMissing,
	"STATUS_UNSUPPORTED_QUOTE_FORMAT":                 clsMalformed,
	"STATUS_UNSUPPORTED_PCK_CERT_FORMAT":              clsMalformed,
	"STATUS_INVALID_PCK_CERT":                         clsMalformed,
	"STATUS_UNSUPPORTED_PCK_RL_FORMAT":                clsMalformed,
	"STATUS_INVALID_PCK_CRL":                          clsMalformed,
	"STATUS_UNSUPPORTED_TCB_INFO_FORMAT":              clsMalformed,
	"STATUS_PCK_REVOKED":                              clsRevoked,
	"STATUS_TCB_INFO_MISMATCH":                        clsMismatch,
	"STATUS_TCB_NOT_SUPPORTED":                        clsNotSupp,
	"STATUS_TCB_UNRECOGNIZED_STATUS":                  clsMalformed,
	"STATUS_UNSUPPORTED_QE_CERTIFICATION":             clsMalformed,
	"STATUS_INVALID_QE_CERTIFICATION_DATA_SIZE":       clsMalformed,
	"STATUS_UNSUPPORTED_QE_CERTIFICATION_DATA_TYPE":   clsMalformed,
	"STATUS_PCK_CERT_MISMATCH":                        clsMismatch,
	"STATUS_INVALID_QE_REPORT_SIGNATURE":              clsSignature,
	"STATUS_INVALID_QE_REPORT_DATA":                   clsSignature,
	"STATUS_INVALID_QUOTE_SIGNATURE":                  clsSignature,
	"STATUS_SGX_QE_IDENTITY_UNSUPPORTED_FORMAT":       clsMalformed,
	"STATUS_SGX_QE_IDENTITY_INVALID":                  clsMalformed,
	"STATUS_SGX_QE_IDENTITY_INVALID_SIGNATURE":        clsSignature,
	"STATUS_SGX_ENCLAVE_REPORT_UNSUPPORTED_FORMAT":    clsMalformed,
	"STATUS_SGX_ENCLAVE_IDENTITY_UNSUPPORTED_FORMAT":  clsMalformed,
	"STATUS_SGX_ENCLAVE_IDENTITY_INVALID":             clsMalformed,
	"STATUS_SGX_ENCLAVE_IDENTITY_UNSUPPORTED_VERSION": clsMalformed,
	"STATUS_SGX_ENCLAVE_IDENTITY_OUT_OF_DATE":         clsExpired,
	"STATUS_SGX_ENCLAVE_REPORT_MISCSELECT_MISMATCH":   clsMismatch,
	"STATUS_SGX_ENCLAVE_REPORT_ATTRIBUTES_MISMATCH":   clsMismatch,
	"STATUS_SGX_ENCLAVE_REPORT_MRENCLAVE_MISMATCH":    clsMismatch,
	"STATUS_SGX_ENCLAVE_REPORT_MRSIGNER_MISMATCH":     clsMismatch,
	"STATUS_SGX_ENCLAVE_REPORT_ISVPRODID_MISMATCH":    clsMismatch,
	"STATUS_SGX_ENCLAVE_REPORT_ISVSVN_OUT_OF_DATE":    clsMismatch,
	"STATUS_UNSUPPORTED_QE_IDENTITY_FORMAT":           clsMalformed,
	"STATUS_QE_IDENTITY_OUT_OF_DATE":                  clsExpired,
	"STATUS_QE_IDENTITY_MISMATCH":                     clsMismatch,
	"STATUS_SGX_TCB_INFO_EXPIRED":                     clsExpired,
	"STATUS_SGX_ENCLAVE_IDENTITY_INVALID_SIGNATURE":   clsSignature,
	"STATUS_INVALID_PARAMETER":                        clsMalformed,
	"STATUS_SGX_PCK_CERT_CHAIN_EXPIRED":               clsExpired,
	"STATUS_SGX_CRL_EXPIRED":                          clsExpired,
	"STATUS_SGX_SIGNING_CERT_CHAIN_EXPIRED":           clsExpired,
	"STATUS_SGX_ENCLAVE_IDENTITY_EXPIRED":             clsExpired,
	"STATUS_SGX_ENCLAVE_REPORT_ISVSVN_REVOKED":        clsRevoked,
	"STATUS_TDX_MODULE_MISMATCH":                      clsMismatch,
	"STATUS_SGX_ENCLAVE_REPORT_ISVSVN_NOT_SUPPORTED":  clsNotSupp,
}

// intelTCBStatus maps the statuses verifyQuote returns for a quote that
// verified to Cloister's TCB status names. STATUS_OK is UpToDate.
var intelTCBStatus = map[string]string{
	"STATUS_OK":                                           "UpToDate",
	"STATUS_TCB_SW_HARDENING_NEEDED":                      "SWHardeningNeeded",
	"STATUS_TCB_CONFIGURATION_NEEDED":                     "ConfigurationNeeded",
	"STATUS_TCB_CONFIGURATION_AND_SW_HARDENING_NEEDED":    "ConfigurationAndSWHardeningNeeded",
	"STATUS_TCB_OUT_OF_DATE":                              "OutOfDate",
	"STATUS_TCB_OUT_OF_DATE_CONFIGURATION_NEEDED":         "OutOfDateConfigurationNeeded",
	"STATUS_TCB_REVOKED":                                  "Revoked",
	"STATUS_TCB_TD_RELAUNCH_ADVISED":                      "TDRelaunchAdvised+relaunch",
	"STATUS_TCB_TD_RELAUNCH_ADVISED_CONFIGURATION_NEEDED": "TDRelaunchAdvisedConfigurationNeeded+relaunch",
}

// verdict puts AttestationApp's result on the common scale: the first
// failing step decides; when the first three pass, the quote step's TCB
// status is the verdict.
func (o intelOutcome) verdict() (verdict, string) {
	if o.crash != "" {
		return verdict("fail:" + clsCrash), o.crash
	}
	for _, step := range intelSteps {
		s, ok := o.status[step]
		if !ok {
			return verdict("fail:" + clsUnexpected), "no result for step " + step
		}
		if s == "STATUS_OK" && step != "Quote" {
			continue
		}
		if step == "Quote" {
			if st, ok := intelTCBStatus[s]; ok {
				return verdict("ok:" + st), s
			}
		}
		cls, ok := intelStatusClass[s]
		if !ok {
			cls = clsUnexpected
		}
		return verdict("fail:" + cls), step + ": " + s
	}
	return verdict("fail:" + clsUnexpected), "no steps"
}

// failClasses lists the failure class of every step that failed. Intel's
// steps are independent (each reports its own status), so a quote with two
// faults names both; Cloister stops at the first in its own order (DESIGN.md,
// "Order of DCAP checks"), which may be either.
func (o intelOutcome) failClasses() []verdict {
	var out []verdict
	for _, step := range intelSteps {
		s, ok := o.status[step]
		if !ok || s == "STATUS_OK" {
			continue
		}
		if _, tcb := intelTCBStatus[s]; tcb && step == "Quote" {
			continue
		}
		if cls, ok := intelStatusClass[s]; ok {
			out = append(out, verdict("fail:"+cls))
		}
	}
	return out
}

// pemCert encodes der as one PEM certificate.
func pemCert(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}
