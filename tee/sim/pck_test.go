package sim

import (
	"testing"

	"github.com/cloister-dev/cloister/evidence/dcap"
)

// A real PCK certificate's CPUSVN octets equal its 16 component SVNs; the
// sim's must too, or a verifier that reads one and not the other (Intel's
// QVL reads the components) sees two different platforms.
func TestSimPCKCPUSVNEqualsComponents(t *testing.T) {
	p := testPKI(t)
	ext, err := dcap.ParsePCKExtensions(p.PCK)
	if err != nil {
		t.Fatal(err)
	}
	if ext.CPUSVN != ext.CompSVN || ext.CompSVN != CompSVN {
		t.Errorf("CPUSVN %x, component SVNs %x; want both %x", ext.CPUSVN, ext.CompSVN, CompSVN)
	}
}
