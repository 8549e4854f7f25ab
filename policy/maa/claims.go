package maa

import (
	"encoding/binary"
	"encoding/hex"

	"github.com/cloister-dev/cloister/evidence"
)

// Attestation types as MAA writes them in x-ms-attestation-type. Simulator
// evidence keeps its own "sim-sgx"/"sim-tdx" name, so a policy that checks
// for "sgx" or "tdxvm" never passes simulator evidence by accident.
const (
	// AttestationTypeSGX is the type of SGX enclave evidence.
	AttestationTypeSGX = "sgx"
	// AttestationTypeTDX is the type of TDX trust domain evidence.
	AttestationTypeTDX = "tdxvm"
	// AttestationTypeSNP is the type of SEV-SNP guest evidence.
	AttestationTypeSNP = "sevsnpvm"
)

// ClaimsFromEvidence maps verified evidence claims to the incoming claims
// MAA defines, so MAA policies written for Azure run unchanged. The
// attestation service uses the same function, so `cloister policy test`
// and the service agree. All claims carry issuer AttestationService; byte
// strings are lowercase hex as in MAA's tokens; integers are int64.
//
// Every kind gets x-ms-attestation-type, tcb_status (Cloister's status,
// DESIGN.md "Common claims") and x-ms-ver "1.0". Then:
//
// SGX (and sim-sgx): x-ms-sgx-is-debuggable, x-ms-sgx-mrenclave,
// x-ms-sgx-mrsigner, x-ms-sgx-product-id, x-ms-sgx-svn,
// x-ms-sgx-report-data (Cloister's addition: MAA shows runtime data as
// x-ms-sgx-ehd, which the service adds from the request), and the deprecated names MAA still accepts in
// policies: $is-debuggable, $sgx-mrenclave, $sgx-mrsigner, $product-id,
// $svn, $tee. For enclaves using Key Separation and Sharing (the evidence
// has SGXKSSClaims) also x-ms-sgx-config-id, x-ms-sgx-config-svn,
// x-ms-sgx-isv-extended-product-id and x-ms-sgx-isv-family-id, which MAA
// issues only for such enclaves.
//
// TDX (and sim-tdx), MAA's TDX EAT profile names: tdx_mrtd, tdx_rtmr0..3,
// tdx_mrseam, tdx_mrconfigid, tdx_mrowner, tdx_mrownerconfig,
// tdx_report_data, tdx_td_attributes, tdx_xfam, tdx_tee_tcb_svn,
// tdx_td_attributes_debug, _key_locker, _perfmon, _protection_keys,
// _septve_disable (bits 31, 63, 30, 28 of TDATTRIBUTES), attester_tcb_status.
//
// SEV-SNP: x-ms-sevsnpvm-is-debuggable, -launchmeasurement, -hostdata,
// -idkeydigest, -authorkeydigest, -reportid, -reportdata, -vmpl, -guestsvn,
// -migration-allowed and -smt-allowed (guest policy bits 18 and 16), and
// -bootloader-svn, -tee-svn, -snpfw-svn, -microcode-svn from the reported
// TCB (bytes 0, 1, 6, 7, the Milan/Genoa layout).
//
// Claims the evidence cannot back (tdx_mrsignerseam,
// tdx_seamsvn, x-ms-sevsnpvm-familyId/-imageId, x-ms-runtime) are absent,
// so a policy that needs them denies instead of reading a made-up value.
func ClaimsFromEvidence(c *evidence.Claims) []Claim {
	if c == nil {
		return nil
	}
	var out []Claim
	add := func(t string, v any) { out = append(out, Claim{Type: t, Value: v, Issuer: IssuerService}) }
	hx := func(b []byte) string { return hex.EncodeToString(b) }

	typ := c.TEE
	switch c.TEE {
	case evidence.TEESGX:
		typ = AttestationTypeSGX
	case evidence.TEETDX:
		typ = AttestationTypeTDX
	case evidence.TEESNP:
		typ = AttestationTypeSNP
	}
	add("x-ms-attestation-type", typ)
	add("x-ms-ver", "1.0")
	add("tcb_status", c.TCBStatus)

	if s := c.SGXClaims; s != nil {
		add("x-ms-sgx-is-debuggable", c.Debug)
		add("x-ms-sgx-mrenclave", hx(s.MRENCLAVE))
		add("x-ms-sgx-mrsigner", hx(s.MRSIGNER))
		add("x-ms-sgx-product-id", int64(s.ISVProdID))
		add("x-ms-sgx-svn", int64(s.ISVSVN))
		add("x-ms-sgx-report-data", hx(c.ReportData))
		if k := s.SGXKSSClaims; k != nil {
			add("x-ms-sgx-config-id", hx(k.ConfigID))
			add("x-ms-sgx-config-svn", int64(k.ConfigSVN))
			add("x-ms-sgx-isv-extended-product-id", hx(k.ISVExtProdID))
			add("x-ms-sgx-isv-family-id", hx(k.ISVFamilyID))
		}
		// Deprecated names: MAA's first default SGX policy reads these.
		add("$is-debuggable", c.Debug)
		add("$sgx-mrenclave", hx(s.MRENCLAVE))
		add("$sgx-mrsigner", hx(s.MRSIGNER))
		add("$product-id", int64(s.ISVProdID))
		add("$svn", int64(s.ISVSVN))
		add("$tee", typ)
	}
	if t := c.TDXClaims; t != nil {
		add("tdx_mrtd", hx(t.MRTD))
		add("tdx_rtmr0", hx(t.RTMR0))
		add("tdx_rtmr1", hx(t.RTMR1))
		add("tdx_rtmr2", hx(t.RTMR2))
		add("tdx_rtmr3", hx(t.RTMR3))
		add("tdx_mrseam", hx(t.MRSEAM))
		add("tdx_mrconfigid", hx(t.MRConfigID))
		add("tdx_mrowner", hx(t.MROwner))
		add("tdx_mrownerconfig", hx(t.MROwnerConfig))
		add("tdx_report_data", hx(c.ReportData))
		add("tdx_td_attributes", hx(t.TDAttributes))
		add("tdx_xfam", hx(t.XFAM))
		add("tdx_tee_tcb_svn", hx(t.TEETCBSVN))
		add("tdx_td_attributes_debug", c.Debug)
		if len(t.TDAttributes) == 8 {
			// TDATTRIBUTES is little-endian in the TD report.
			a := binary.LittleEndian.Uint64(t.TDAttributes)
			add("tdx_td_attributes_septve_disable", a&(1<<28) != 0)
			add("tdx_td_attributes_protection_keys", a&(1<<30) != 0)
			add("tdx_td_attributes_key_locker", a&(1<<31) != 0)
			add("tdx_td_attributes_perfmon", a&(1<<63) != 0)
		}
		add("attester_tcb_status", c.TCBStatus)
	}
	if s := c.SNPClaims; s != nil {
		p := "x-ms-sevsnpvm-"
		add(p+"is-debuggable", c.Debug)
		add(p+"launchmeasurement", hx(s.Measurement))
		add(p+"hostdata", hx(s.HostData))
		add(p+"idkeydigest", hx(s.IDKeyDigest))
		add(p+"authorkeydigest", hx(s.AuthorKeyDigest))
		add(p+"reportid", hx(s.ReportID))
		add(p+"reportdata", hx(c.ReportData))
		add(p+"vmpl", int64(s.VMPL))
		add(p+"guestsvn", int64(s.GuestSVN))
		add(p+"migration-allowed", s.Policy&(1<<18) != 0)
		add(p+"smt-allowed", s.Policy&(1<<16) != 0)
		tcb := s.ReportedTCB
		add(p+"bootloader-svn", int64(tcb&0xff))
		add(p+"tee-svn", int64(tcb>>8&0xff))
		add(p+"snpfw-svn", int64(tcb>>48&0xff))
		add(p+"microcode-svn", int64(tcb>>56&0xff))
	}
	return out
}

// ClaimsObject turns claims into the name → value object a Rego policy
// reads as its input: a name that occurs more than once becomes an array of
// its values, in order. The attestation service and `cloister policy test`
// both use it, so a policy sees the same input offline and in the service.
func ClaimsObject(claims []Claim) map[string]any {
	count := map[string]int{}
	for _, c := range claims {
		count[c.Type]++
	}
	obj := make(map[string]any, len(count))
	for _, c := range claims {
		if count[c.Type] == 1 {
			obj[c.Type] = c.Value
			continue
		}
		arr, _ := obj[c.Type].([]any)
		obj[c.Type] = append(arr, c.Value)
	}
	return obj
}
