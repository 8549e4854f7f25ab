package attest

import "fmt"

// submitted is the evidence of one /attest request, decoded from the
// request's quote or report member: the bytes the verifier judges and, for
// SEV-SNP, the certificates that travel with the report.
type submitted struct {
	raw   []byte
	vcek  []byte // DER or PEM VCEK/VLEK for a raw SNP report
	chain []byte // PEM ASK/ARK for SNP
}

// decodeEvidence turns the decoded quote/report member of a request to
// /attest/{typ} into what the verifier takes.
func decodeEvidence(typ string, decoded []byte) (submitted, error) {
	switch typ {
	case TypeOpenEnclave:
		return submitted{raw: stripOEHeader(decoded)}, nil
	case TypeSgxEnclave, TypeTdxVm, TypeSevSnpVm:
		return submitted{raw: decoded}, nil
	}
	return submitted{}, fmt.Errorf("unknown attestation type %q", typ)
}

// stripOEHeader removes an OpenEnclave report's 16-byte header
// (version 1, type, size) so the SGX quote inside reaches the verifier;
// anything else is passed through for the verifier to judge.
func stripOEHeader(raw []byte) []byte {
	if len(raw) > 16 && raw[0] == 1 && raw[1] == 0 && raw[2] == 0 && raw[3] == 0 {
		size := uint64(raw[8]) | uint64(raw[9])<<8 | uint64(raw[10])<<16 | uint64(raw[11])<<24 |
			uint64(raw[12])<<32 | uint64(raw[13])<<40 | uint64(raw[14])<<48 | uint64(raw[15])<<56
		if size == uint64(len(raw)-16) {
			return raw[16:]
		}
	}
	return raw
}
