package evidence

import (
	"github.com/cloister-dev/cloister/evidence/internal/verr"
)

func (v *Verifier) verifySNP(raw, certTable []byte, opts Options) (*Claims, error) {
	return nil, verr.New("evidence", "snp", verr.Unsupported, "SEV-SNP verification is being wired in")
}

func (v *Verifier) verifyTSM(raw []byte, opts Options) (*Claims, error) {
	return nil, verr.New("evidence", "tsm", verr.Unsupported, "configfs-tsm reports are being wired in")
}
