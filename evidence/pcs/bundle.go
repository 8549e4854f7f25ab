// Package pcs holds Intel DCAP collateral: the on-disk collateral bundle that
// `cloister collateral fetch` writes and `--collateral` reads, and a client for
// the Intel Provisioning Certification Service (PCS) v4 API with an on-disk
// cache.
//
// The bundle uses the shape of dcap-qvl's QuoteCollateralV3 so that bundles
// move between tools. Signed JSON text is kept byte-exact and never
// re-serialised: the signatures cover those exact bytes.
package pcs

// Bundle is the collateral needed to evaluate one SGX or TDX quote. All
// values are strings, as in dcap-qvl's JSON. A Bundle is unverified input:
// evidence/dcap checks every signature and chain in it before using it.
type Bundle struct {
	// TCBInfo is the signed tcbInfo JSON object, byte-exact.
	TCBInfo string `json:"tcb_info"`
	// TCBInfoSignature is the hex of the raw r||s ECDSA P-256 signature over TCBInfo.
	TCBInfoSignature string `json:"tcb_info_signature"`
	// TCBInfoIssuerChain is the PEM chain (TCB signing certificate, then root).
	TCBInfoIssuerChain string `json:"tcb_info_issuer_chain"`
	// QEIdentity is the signed enclaveIdentity JSON object, byte-exact.
	QEIdentity string `json:"qe_identity"`
	// QEIdentitySignature is the hex of the raw r||s signature over QEIdentity.
	QEIdentitySignature string `json:"qe_identity_signature"`
	// QEIdentityIssuerChain is the PEM chain that signed QEIdentity.
	QEIdentityIssuerChain string `json:"qe_identity_issuer_chain"`
	// PCKCRL is the hex of the DER PCK CRL (issued by the PCK Processor or Platform CA).
	// Empty when absent.
	PCKCRL string `json:"pck_crl,omitempty"`
	// PCKCRLIssuerChain is the PEM chain of the PCK CRL issuer.
	PCKCRLIssuerChain string `json:"pck_crl_issuer_chain,omitempty"`
	// RootCACRL is the hex of the DER Intel SGX Root CA CRL. Empty when absent.
	RootCACRL string `json:"root_ca_crl,omitempty"`
}

// TEE selects the PCS endpoint family.
type TEE string

// PCS endpoint families.
const (
	SGX TEE = "sgx"
	TDX TEE = "tdx"
)

// Query names the collateral of one platform.
type Query struct {
	// TEE selects the SGX or TDX endpoints.
	TEE TEE
	// FMSPC is the 6-byte FMSPC from the PCK certificate.
	FMSPC []byte
	// CA is "processor" or "platform": the PCK CA that issued the PCK certificate.
	CA string
}
