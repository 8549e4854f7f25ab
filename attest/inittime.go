package attest

import (
	"bytes"
	"crypto/sha256"
	"fmt"

	"github.com/cloister-dev/cloister/evidence"
)

// bindInitTimeData checks that a request's initTimeData (already decoded)
// is the data the TEE was launched with. It returns the CloudError code and
// a message saying what differed when it is not. The rules are those of
// docs/maa-contract.md (§1 binding rules, §6 decisions):
//
//   - SGX: SHA-256(data) = CONFIGID[0:32], MAA's rule; CONFIGID[32:64] is
//     left to the enclave and stays visible as x-ms-sgx-config-id.
//   - TDX: MRCONFIGID = SHA-256(data) followed by 16 zero bytes. MAA names
//     no TDX field, so this is Cloister's rule (the Confidential Containers
//     initdata layout).
//   - SEV-SNP: SHA-256(data) = HOST_DATA, MAA's rule.
//
// Hashes are compared with bytes.Equal: every value here is public (it is
// in the evidence and in the request), so timing reveals nothing.
func bindInitTimeData(typ string, c *evidence.Claims, data []byte) (code string, err error) {
	sum := sha256.Sum256(data)
	switch {
	case c.SGXClaims != nil:
		return bindSGXConfigID(c.SGXClaims, sum)
	case c.TDXClaims != nil:
		return bindTDXConfigID(c.TDXClaims, sum)
	case c.SNPClaims != nil:
		if !bytes.Equal(c.HostData, sum[:]) {
			return "InitTimeDataMismatch", fmt.Errorf(
				"initTimeData does not match the evidence: SHA-256(initTimeData.data) = %x, but host_data = %x", sum, []byte(c.HostData))
		}
		return "", nil
	}
	return "InvalidRequest", fmt.Errorf("initTimeData cannot be bound for %s: the evidence (%s) has no launch-time field to bind it to", typ, c.TEE)
}

// bindSGXConfigID applies MAA's SGX rule. An enclave without Key
// Separation and Sharing has an all-zero config ID, which no SHA-256 value
// equals, so such evidence fails here too; the message says so apart,
// because the client then needs other hardware or enclave settings, not
// other data.
func bindSGXConfigID(s *evidence.SGXClaims, sum [32]byte) (string, error) {
	var id []byte
	if s.SGXKSSClaims != nil {
		id = s.ConfigID
	}
	if len(id) < 32 || len(bytes.Trim(id, "\x00")) == 0 {
		return "InitTimeDataMismatch", fmt.Errorf(
			"initTimeData does not match the evidence: SHA-256(initTimeData.data) = %x, but the enclave's config ID is all zero: no configuration was set when it was created (SGX needs Key Separation and Sharing, Ice Lake or later, for initTimeData)", sum)
	}
	if !bytes.Equal(id[:32], sum[:]) {
		return "InitTimeDataMismatch", fmt.Errorf(
			"initTimeData does not match the evidence: SHA-256(initTimeData.data) = %x, but config_id[0:32] = %x", sum, id[:32])
	}
	return "", nil
}

// bindTDXConfigID applies Cloister's TDX rule: the hash fills MRCONFIGID's
// first 32 bytes and the other 16 must be zero, so the token's
// initTimeData accounts for every byte the host chose for MRCONFIGID.
func bindTDXConfigID(t *evidence.TDXClaims, sum [32]byte) (string, error) {
	id := []byte(t.MRConfigID)
	if len(id) != 48 {
		// evidence.Verify always reports 48 bytes; anything else is a bug.
		return "InvalidEvidence", fmt.Errorf("initTimeData cannot be bound: mr_config_id has %d bytes, want 48", len(id))
	}
	if !bytes.Equal(id[:32], sum[:]) {
		return "InitTimeDataMismatch", fmt.Errorf(
			"initTimeData does not match the evidence: SHA-256(initTimeData.data) = %x, but mr_config_id[0:32] = %x (mr_config_id = %x)", sum, id[:32], id)
	}
	if tail := id[32:]; len(bytes.Trim(tail, "\x00")) != 0 {
		return "InitTimeDataMismatch", fmt.Errorf(
			"initTimeData does not match the evidence: SHA-256(initTimeData.data) = %x = mr_config_id[0:32], but mr_config_id[32:48] = %x must be zero (Cloister binds the whole MRCONFIGID: the SHA-256, then 16 zero bytes)", sum, tail)
	}
	return "", nil
}
