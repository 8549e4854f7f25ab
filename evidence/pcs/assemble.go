package pcs

import "fmt"

// BundleFiles holds the contents of saved PCS responses, for building a
// bundle offline (for example from files fetched by another tool, or
// go-tdx-guest's test data).
type BundleFiles struct {
	// TCBInfoResponse is a PCS /tcb body: {"tcbInfo":{...},"signature":"hex"}.
	TCBInfoResponse []byte
	// TCBInfoIssuerChain is the TCB-Info-Issuer-Chain header value, as PEM
	// or still URL-encoded.
	TCBInfoIssuerChain []byte
	// QEIdentityResponse is a PCS /qe/identity body:
	// {"enclaveIdentity":{...},"signature":"hex"}.
	QEIdentityResponse []byte
	// QEIdentityIssuerChain is the SGX-Enclave-Identity-Issuer-Chain header
	// value, as PEM or URL-encoded PEM.
	QEIdentityIssuerChain []byte
	// PCKCRL is the PCK CRL as DER, PEM or hex; nil if not available.
	PCKCRL []byte
	// PCKCRLIssuerChain is the SGX-PCK-CRL-Issuer-Chain header value, as PEM
	// or URL-encoded PEM; required when PCKCRL is set.
	PCKCRLIssuerChain []byte
	// RootCACRL is the Intel SGX Root CA CRL as DER, PEM or hex; nil if not
	// available.
	RootCACRL []byte
}

// AssembleBundle builds a Bundle from saved PCS responses. The signed text
// is cut from each response byte-exact, exactly as Client.Fetch does, and
// CRLs are stored as lowercase hex of their DER. The bundle passes DecodeUnverified;
// it is not verified.
func AssembleBundle(f BundleFiles) (*Bundle, error) {
	var (
		b   Bundle
		err error
	)
	signed, sig, err := cutSigned("tcbInfo response", f.TCBInfoResponse, tcbInfoKey)
	if err != nil {
		return nil, err
	}
	b.TCBInfo, b.TCBInfoSignature = string(signed), sig
	if b.TCBInfoIssuerChain, err = chainText("tcb_info_issuer_chain", f.TCBInfoIssuerChain); err != nil {
		return nil, err
	}
	signed, sig, err = cutSigned("enclaveIdentity response", f.QEIdentityResponse, enclaveIdentityKey)
	if err != nil {
		return nil, err
	}
	b.QEIdentity, b.QEIdentitySignature = string(signed), sig
	if b.QEIdentityIssuerChain, err = chainText("qe_identity_issuer_chain", f.QEIdentityIssuerChain); err != nil {
		return nil, err
	}
	if f.PCKCRL != nil {
		der, err := crlDER("pck_crl", f.PCKCRL)
		if err != nil {
			return nil, err
		}
		b.PCKCRL = crlHex(der)
	}
	if f.PCKCRLIssuerChain != nil {
		if b.PCKCRLIssuerChain, err = chainText("pck_crl_issuer_chain", f.PCKCRLIssuerChain); err != nil {
			return nil, err
		}
	}
	if f.RootCACRL != nil {
		der, err := crlDER("root_ca_crl", f.RootCACRL)
		if err != nil {
			return nil, err
		}
		b.RootCACRL = crlHex(der)
	}
	if _, err := b.DecodeUnverified(); err != nil {
		return nil, fmt.Errorf("pcs: assembled bundle: %w", err)
	}
	return &b, nil
}
