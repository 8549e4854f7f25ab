package attest

import (
	"crypto/sha256"
	"fmt"

	"github.com/cloister-dev/cloister/evidence"
)

// bindInitTimeData checks that a request's initTimeData (already decoded)
// is the data the TEE was launched with. It returns the CloudError code and
// a message saying what differed when it is not.
func bindInitTimeData(typ string, c *evidence.Claims, data []byte) (code string, err error) {
	if c.SNPClaims == nil {
		return "InvalidRequest", fmt.Errorf("initTimeData cannot be bound for %s: Cloister binds it only to the SEV-SNP host data (the SGX config ID is not in its claims)", typ)
	}
	sum := sha256.Sum256(data)
	if !equal(c.HostData, sum[:]) {
		return "InitTimeDataMismatch", fmt.Errorf(
			"initTimeData does not match the evidence: SHA-256(initTimeData.data) = %x, but host_data = %x", sum, []byte(c.HostData))
	}
	return "", nil
}
