package tsm

import (
	"bytes"
	"fmt"
	"math"

	"github.com/cloister-dev/cloister/evidence/snp"
	"github.com/cloister-dev/cloister/evidence/tdx"
	"github.com/cloister-dev/cloister/tee"
	"github.com/google/go-sev-guest/abi"
)

// snpPolicyDebug is guest policy bit 19 (DEBUG): the host may debug, that
// is read and write, the guest (SEV-SNP ABI, table "Guest Policy Structure").
const snpPolicyDebug = 1 << 19

// outBlob is what this package reads from an outblob: the running identity
// and the VMPL of the report. All of it is UNVERIFIED; it is only used by
// the guest about itself.
type outBlob struct {
	id   tee.Identity
	vmpl uint32
}

// parseOutBlob parses an outblob of kind (format only: the signature is
// evidence.Verify's business) and checks that its REPORT_DATA equals want.
// The kernel's generation check already keeps a concurrent writer's inblob
// out of our report; this check makes the binding explicit, and catches a
// provider that ignored or truncated the inblob.
func parseOutBlob(kind tee.Kind, b, want []byte) (*outBlob, error) {
	switch kind {
	case tee.KindTDX:
		q, err := tdx.Parse(b)
		if err != nil {
			return nil, fmt.Errorf("TDX quote: %w", err)
		}
		if err := checkReportData(q.Body.ReportData[:], want); err != nil {
			return nil, err
		}
		return &outBlob{id: tee.Identity{
			Measurement: bytes.Clone(q.Body.MRTD[:]),
			Debug:       q.Body.Debug(),
		}}, nil
	case tee.KindSNP:
		r, err := snp.Parse(b)
		if err != nil {
			return nil, fmt.Errorf("SEV-SNP report: %w", err)
		}
		if err := checkReportData(r.GetReportData(), want); err != nil {
			return nil, err
		}
		if r.GetGuestSvn() > math.MaxUint16 {
			return nil, fmt.Errorf("SEV-SNP report: GUEST_SVN %d does not fit tee.Identity.SVN (uint16)", r.GetGuestSvn())
		}
		id := tee.Identity{
			Measurement: bytes.Clone(r.GetMeasurement()),
			SVN:         uint16(r.GetGuestSvn()),
			Debug:       r.GetPolicy()&snpPolicyDebug != 0,
		}
		// An all-zero AUTHOR_KEY_DIGEST means the ID block had no author
		// key: there is no signer to report.
		if ak := r.GetAuthorKeyDigest(); len(ak) == abi.AuthorKeyDigestSize && !allZero(ak) {
			id.Signer = bytes.Clone(ak)
		}
		return &outBlob{id: id, vmpl: r.GetVmpl()}, nil
	default:
		// Open admits only the two kinds above.
		return nil, fmt.Errorf("no outblob parser for %q", kind)
	}
}

// checkReportData compares the report's REPORT_DATA with what was written.
func checkReportData(got, want []byte) error {
	if !bytes.Equal(got, want) {
		return fmt.Errorf("report data mismatch: the report carries %x, we wrote %x: it was not made for this request", got, want)
	}
	return nil
}

// allZero reports whether b has only zero bytes.
func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}
