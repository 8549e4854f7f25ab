package dcap

import (
	"bytes"
	"fmt"
	"slices"

	"github.com/cloister-dev/cloister/evidence/internal/verr"
)

// matchPlatformLevel walks the TCB levels (in Intel's order, best first)
// as Intel's library does (QVL matchTcbLevels): sgx is the first level whose
// every SGX component SVN and PCESVN are at most the platform's; for TDX,
// tdx is the first such level whose TDX components are also at most the
// TEE TCB SVNs (indexes 0 and 1, the module's SVN and major version, are
// skipped when the major version is not zero, since the module is then
// judged by its own identity). For SGX, tdx is sgx. No level is a "TCB
// level not supported" error.
func matchPlatformLevel(ti *TCBInfo, pck *PCKExtensions, teeTCBSVN *[16]byte) (sgx, tdx *TCBLevel, err error) {
	for i := range ti.Levels {
		l := &ti.Levels[i]
		if !svnsAtLeast(pck.CompSVN[:], l.SGXComponents[:], 0) || pck.PCESVN < l.PCESVN {
			continue
		}
		if teeTCBSVN == nil {
			return l, l, nil
		}
		if sgx == nil {
			sgx = l
		}
		if l.TDXComponents == nil {
			return nil, nil, verr.New("dcap", "TCB level", verr.Malformed, "TDX TCB info level %d has no tdxtcbcomponents", i)
		}
		start := 0
		if teeTCBSVN[1] > 0 {
			start = 2
		}
		if svnsAtLeast(teeTCBSVN[:], l.TDXComponents[:], start) {
			return sgx, l, nil
		}
	}
	detail := fmt.Sprintf("TCB level not supported: none of the %d levels of the TCB info for FMSPC %x matches the platform (comp SVNs %v, PCESVN %d",
		len(ti.Levels), ti.FMSPC, pck.CompSVN, pck.PCESVN)
	if teeTCBSVN != nil {
		detail += fmt.Sprintf(", TEE TCB SVN %x", teeTCBSVN[:])
	}
	return nil, nil, verr.New("dcap", "TCB level", verr.TCBNotSupported, "%s)", detail)
}

func svnsAtLeast(have, need []byte, start int) bool {
	for i := start; i < len(need); i++ {
		if have[i] < need[i] {
			return false
		}
	}
	return true
}

// moduleIdentityFor returns the TDX module identity "TDX_<version>"
// (compared without regard to case, as Intel upper-cases the id), or nil.
func moduleIdentityFor(ti *TCBInfo, version byte) *TDXModuleIdentity {
	id := fmt.Sprintf("TDX_%02X", version)
	for i := range ti.TDXModuleIdentities {
		if equalFoldID(ti.TDXModuleIdentities[i].ID, id) {
			return &ti.TDXModuleIdentities[i]
		}
	}
	return nil
}

// checkTDXModule is QVL step 4.1.2.4.11: the TD report's MRSIGNERSEAM and
// SEAMATTRIBUTES against tdxModule, or, for a v4+ quote whose module major
// version (TEE TCB SVN[1]) is not zero, against the identity "TDX_<version>",
// whose values then replace tdxModule's. SEAMATTRIBUTES must be all zero
// and equal the expected attributes byte for byte: Intel does not apply the
// attributes mask here. It returns the module identity used, or nil.
func checkTDXModule(ti *TCBInfo, quoteVersion uint16, teeTCBSVN [16]byte, mrSignerSeam []byte, seamAttributes [8]byte) (*TDXModuleIdentity, error) {
	if ti.TDXModule == nil {
		return nil, verr.New("dcap", "TCB info", verr.Malformed, "TDX TCB info has no tdxModule")
	}
	want, what := ti.TDXModule, "tdxModule"
	var ident *TDXModuleIdentity
	if quoteVersion > 3 && teeTCBSVN[1] > 0 {
		if ti.TDXModuleIdentities == nil {
			return nil, verr.New("dcap", "TCB info", verr.CollateralMismatch, "the TDX module's major version is %d but the TCB info has no tdxModuleIdentities", teeTCBSVN[1])
		}
		if ident = moduleIdentityFor(ti, teeTCBSVN[1]); ident == nil {
			return nil, verr.New("dcap", "TDX module", verr.IdentityMismatch, "TCB info has no TDX module identity TDX_%02X (module major version %d)", teeTCBSVN[1], teeTCBSVN[1])
		}
		want, what = &ident.TDXModule, ident.ID
	}
	if !bytes.Equal(want.MRSIGNER, mrSignerSeam) {
		return nil, verr.New("dcap", "TDX module", verr.IdentityMismatch, "%s: MRSIGNERSEAM %x, want %x", what, mrSignerSeam, want.MRSIGNER)
	}
	if seamAttributes != ([8]byte{}) || seamAttributes != want.Attributes {
		return nil, verr.New("dcap", "TDX module", verr.IdentityMismatch, "%s: SEAMATTRIBUTES %x, want all zero and equal to the TCB info's %x", what, seamAttributes, want.Attributes)
	}
	return ident, nil
}

// tdxModuleLevel is QVL checkTdxModuleTcbStatus: nil for a v4+ quote whose
// module major version is 0 (no module level applies); else the first
// level (highest ISVSVN first) at most the module's SVN, TEE TCB SVN[0].
// No such level is "TCB level not supported"; a matched level whose status
// is not UpToDate, OutOfDate or Revoked is an error.
func tdxModuleLevel(ti *TCBInfo, quoteVersion uint16, teeTCBSVN [16]byte, ident *TDXModuleIdentity) (*SVNLevel, error) {
	if quoteVersion > 3 && teeTCBSVN[1] == 0 {
		return nil, nil
	}
	if ident == nil {
		if ident = moduleIdentityFor(ti, teeTCBSVN[1]); ident == nil {
			return nil, verr.New("dcap", "TDX module", verr.IdentityMismatch, "TCB info has no TDX module identity TDX_%02X", teeTCBSVN[1])
		}
	}
	for j := range ident.Levels {
		l := &ident.Levels[j]
		if uint16(teeTCBSVN[0]) >= l.ISVSVN {
			if !moduleStatus[l.Status] {
				return nil, verr.New("dcap", "TDX module", verr.Malformed, "%s level ISVSVN %d: tcbStatus %q is not a module status (UpToDate, OutOfDate, Revoked)", ident.ID, l.ISVSVN, l.Status)
			}
			return l, nil
		}
	}
	return nil, verr.New("dcap", "TDX module", verr.TCBNotSupported, "TCB level not supported: no level of %s matches module SVN %d", ident.ID, teeTCBSVN[0])
}

// matchQE checks the QE report against the QE identity, as Intel's
// EnclaveReportVerifier does: the masked MISCSELECT and ATTRIBUTES must
// equal the identity's values as they stand (Intel does not mask those).
// It returns the QE's TCB level, with any status other than UpToDate and
// Revoked counted as OutOfDate, or nil when the QE's ISVSVN is below every
// level: Intel's "TCB not supported", which the caller turns into an error
// once the platform level is known (QVL convergeTcbStatusWithQeTcbStatus).
func matchQE(qi *QEIdentity, qe *EnclaveReport) (*SVNLevel, error) {
	if !bytes.Equal(qe.MRSIGNER[:], qi.MRSIGNER[:]) {
		return nil, verr.New("dcap", "QE identity", verr.IdentityMismatch, "QE MRSIGNER %x, want %x", qe.MRSIGNER, qi.MRSIGNER)
	}
	if qe.ISVProdID != qi.ISVProdID {
		return nil, verr.New("dcap", "QE identity", verr.IdentityMismatch, "QE ISVPRODID %d, want %d", qe.ISVProdID, qi.ISVProdID)
	}
	if qe.MiscSelect&qi.MiscSelectMask != qi.MiscSelect {
		return nil, verr.New("dcap", "QE identity", verr.IdentityMismatch, "QE MISCSELECT %08x under mask %08x, want %08x", qe.MiscSelect, qi.MiscSelectMask, qi.MiscSelect)
	}
	for i := range qe.Attributes {
		if qe.Attributes[i]&qi.AttributesMask[i] != qi.Attributes[i] {
			return nil, verr.New("dcap", "QE identity", verr.IdentityMismatch, "QE ATTRIBUTES %x under mask %x, want %x", qe.Attributes, qi.AttributesMask, qi.Attributes)
		}
	}
	for _, l := range qi.Levels {
		if qe.ISVSVN >= l.ISVSVN {
			if l.Status != UpToDate && l.Status != Revoked {
				l.Status = OutOfDate
			}
			return &l, nil
		}
	}
	return nil, nil
}

// converge folds another component's status (QE, TDX module) into the
// platform's, following Intel's quote verification library: an out-of-date
// component makes the whole TCB out of date (keeping "configuration
// needed"), a revoked one makes it revoked.
func converge(platform, other string) string {
	switch other {
	case OutOfDate, OutOfDateConfigurationNeeded:
		switch platform {
		case UpToDate, SWHardeningNeeded:
			return OutOfDate
		case ConfigurationNeeded, ConfigurationAndSWHardeningNeeded:
			return OutOfDateConfigurationNeeded
		}
	case Revoked:
		return Revoked
	}
	return platform
}

// mergeAdvisories returns the sorted union of the advisory lists.
func mergeAdvisories(lists ...[]string) []string {
	out := []string{}
	for _, l := range lists {
		out = append(out, l...)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// relaunchStatus is Intel's TD relaunch rule (QVL TDRelaunchCheck, step
// 4.1.2.4.17.4.3) for a TDX 1.5 quote: when the QE is up to date, the SGX
// level needs at most configuration or SW hardening, the TDX TCB is out of
// date only because its module is, and TEE_TCB_SVN2 (what the TD would run
// on if relaunched) reaches the newest TDX level, it returns
// TDRelaunchAdvised (or TDRelaunchAdvisedConfigurationNeeded when the SGX
// or TDX status needs configuration). Otherwise it returns "".
func relaunchStatus(ti *TCBInfo, svn2 [16]byte, sgxStatus, tdxStatus, moduleStatus string, qe *SVNLevel) (string, error) {
	if qe == nil || qe.Status != UpToDate {
		return "", nil
	}
	switch sgxStatus {
	case UpToDate, SWHardeningNeeded, ConfigurationNeeded, ConfigurationAndSWHardeningNeeded:
	default:
		return "", nil
	}
	if (tdxStatus != OutOfDate && tdxStatus != OutOfDateConfigurationNeeded) || moduleStatus != OutOfDate {
		return "", nil
	}
	latest := &ti.Levels[0]
	if latest.TDXComponents == nil {
		return "", verr.New("dcap", "TCB level", verr.Malformed, "TDX TCB info level 0 has no tdxtcbcomponents")
	}
	moduleSVN := uint16(latest.TDXComponents[0])
	if svn2[1] != 0 {
		ident := moduleIdentityFor(ti, svn2[1])
		if ident == nil {
			return "", verr.New("dcap", "TDX module", verr.IdentityMismatch, "TEE_TCB_SVN2 names module major version %d, and the TCB info has no identity TDX_%02X", svn2[1], svn2[1])
		}
		moduleSVN = ident.Levels[0].ISVSVN
	}
	if uint16(svn2[0]) < moduleSVN || svn2[2] < latest.TDXComponents[2] {
		return "", nil
	}
	configuration := func(s string) bool {
		return s == ConfigurationNeeded || s == OutOfDateConfigurationNeeded || s == ConfigurationAndSWHardeningNeeded || s == TDRelaunchAdvisedConfigurationNeeded
	}
	if configuration(sgxStatus) || configuration(tdxStatus) {
		return TDRelaunchAdvisedConfigurationNeeded, nil
	}
	return TDRelaunchAdvised, nil
}
