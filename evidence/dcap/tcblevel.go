package dcap

import (
	"bytes"
	"fmt"
	"slices"

	"github.com/cloister-dev/cloister/evidence/internal/verr"
)

// matchPlatformLevel returns the first TCB level (levels are ordered best
// first) whose every SGX component SVN and PCESVN are at most the
// platform's, as Intel's quote verification library does. For TDX, the TEE
// TCB SVNs must also be at least the level's TDX components; indexes 0 and
// 1 (TDX module SVN and major version) are skipped when the module version
// is non-zero, since the module is then judged by its own identity.
func matchPlatformLevel(ti *TCBInfo, pck *PCKExtensions, teeTCBSVN *[16]byte) (*TCBLevel, error) {
	for i := range ti.Levels {
		l := &ti.Levels[i]
		if !svnsAtLeast(pck.CompSVN[:], l.SGXComponents[:], 0) || pck.PCESVN < l.PCESVN {
			continue
		}
		if teeTCBSVN != nil {
			if l.TDXComponents == nil {
				return nil, verr.New("dcap", "TCB level", verr.Malformed, "TDX TCB info level %d has no tdxtcbcomponents", i)
			}
			start := 0
			if teeTCBSVN[1] > 0 {
				start = 2
			}
			if !svnsAtLeast(teeTCBSVN[:], l.TDXComponents[:], start) {
				continue
			}
		}
		return l, nil
	}
	detail := fmt.Sprintf("TCB level not supported: none of the %d levels of the TCB info for FMSPC %x matches the platform (comp SVNs %v, PCESVN %d",
		len(ti.Levels), ti.FMSPC, pck.CompSVN, pck.PCESVN)
	if teeTCBSVN != nil {
		detail += fmt.Sprintf(", TEE TCB SVN %x", teeTCBSVN[:])
	}
	return nil, verr.New("dcap", "TCB level", verr.TCBNotSupported, "%s)", detail)
}

func svnsAtLeast(have, need []byte, start int) bool {
	for i := start; i < len(need); i++ {
		if have[i] < need[i] {
			return false
		}
	}
	return true
}

// matchTDXModule judges the TDX module: against tdxModule always (signer and
// masked attributes), and, when the module's major version (TEE TCB SVN[1])
// is non-zero, against the identity "TDX_<version>" and its TCB levels keyed
// by the module SVN (TEE TCB SVN[0]). It returns the matched module level,
// or nil when no module identity applies.
func matchTDXModule(ti *TCBInfo, teeTCBSVN [16]byte, mrSignerSeam []byte, seamAttributes [8]byte) (*SVNLevel, error) {
	if ti.TDXModule != nil {
		if err := checkModule(ti.TDXModule, mrSignerSeam, seamAttributes, "tdxModule"); err != nil {
			return nil, err
		}
	}
	if teeTCBSVN[1] == 0 {
		return nil, nil
	}
	id := fmt.Sprintf("TDX_%02X", teeTCBSVN[1])
	for i := range ti.TDXModuleIdentities {
		m := &ti.TDXModuleIdentities[i]
		if !equalFoldID(m.ID, id) {
			continue
		}
		if err := checkModule(&m.TDXModule, mrSignerSeam, seamAttributes, m.ID); err != nil {
			return nil, err
		}
		for j := range m.Levels {
			if uint16(teeTCBSVN[0]) >= m.Levels[j].ISVSVN {
				return &m.Levels[j], nil
			}
		}
		return nil, verr.New("dcap", "TDX module", verr.TCBNotSupported, "TCB level not supported: no level of %s matches module SVN %d", m.ID, teeTCBSVN[0])
	}
	return nil, verr.New("dcap", "TDX module", verr.TCBNotSupported, "TCB info has no TDX module identity %s (module major version %d)", id, teeTCBSVN[1])
}

func checkModule(m *TDXModule, mrSignerSeam []byte, attrs [8]byte, what string) error {
	if !bytes.Equal(m.MRSIGNER, mrSignerSeam) {
		return verr.New("dcap", "TDX module", verr.IdentityMismatch, "%s: MRSIGNERSEAM %x, want %x", what, mrSignerSeam, m.MRSIGNER)
	}
	for i := range attrs {
		if attrs[i]&m.AttributesMask[i] != m.Attributes[i]&m.AttributesMask[i] {
			return verr.New("dcap", "TDX module", verr.IdentityMismatch, "%s: SEAM attributes %x under mask %x, want %x", what, attrs, m.AttributesMask, m.Attributes)
		}
	}
	return nil
}

// matchQE checks the QE report against the QE identity and returns the QE's
// TCB level. An ISVSVN below every level is treated as Revoked, as Intel's
// library does.
func matchQE(qi *QEIdentity, qe *EnclaveReport) (SVNLevel, error) {
	if !bytes.Equal(qe.MRSIGNER[:], qi.MRSIGNER[:]) {
		return SVNLevel{}, verr.New("dcap", "QE identity", verr.IdentityMismatch, "QE MRSIGNER %x, want %x", qe.MRSIGNER, qi.MRSIGNER)
	}
	if qe.ISVProdID != qi.ISVProdID {
		return SVNLevel{}, verr.New("dcap", "QE identity", verr.IdentityMismatch, "QE ISVPRODID %d, want %d", qe.ISVProdID, qi.ISVProdID)
	}
	if qe.MiscSelect&qi.MiscSelectMask != qi.MiscSelect&qi.MiscSelectMask {
		return SVNLevel{}, verr.New("dcap", "QE identity", verr.IdentityMismatch, "QE MISCSELECT %08x under mask %08x, want %08x", qe.MiscSelect, qi.MiscSelectMask, qi.MiscSelect)
	}
	for i := range qe.Attributes {
		if qe.Attributes[i]&qi.AttributesMask[i] != qi.Attributes[i]&qi.AttributesMask[i] {
			return SVNLevel{}, verr.New("dcap", "QE identity", verr.IdentityMismatch, "QE ATTRIBUTES %x under mask %x, want %x", qe.Attributes, qi.AttributesMask, qi.Attributes)
		}
	}
	for _, l := range qi.Levels {
		if qe.ISVSVN >= l.ISVSVN {
			return l, nil
		}
	}
	return SVNLevel{ISVSVN: qe.ISVSVN, Status: Revoked}, nil
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
