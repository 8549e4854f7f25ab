package dcap

import (
	"bytes"
	"encoding/binary"
	"fmt"

	"github.com/cloister-dev/cloister/evidence/internal/le"
	"github.com/cloister-dev/cloister/evidence/internal/verr"
)

// The layouts shared by every Intel DCAP quote: the 48-byte header, the
// 384-byte enclave report (the ISV report of an SGX quote and the QE report
// of every quote) and the signature data. Offsets follow the Intel SGX ECDSA
// Quote Library API and the Intel TDX DCAP Quoting Library API.
const (
	// HeaderSize is the size of the quote header.
	HeaderSize = 48
	// EnclaveReportSize is the size of an SGX enclave report body.
	EnclaveReportSize = 384
	// SignatureSize is the size of a raw ECDSA P-256 signature (r||s).
	SignatureSize = 64
	// AttestationKeySize is the size of a raw P-256 public key (X||Y).
	AttestationKeySize = 64

	// AttestationKeyECDSAP256 is the only attestation key type Cloister verifies.
	AttestationKeyECDSAP256 = 2

	// TEETypeSGX and TEETypeTDX are the header's TEE type values.
	TEETypeSGX = 0x00000000
	TEETypeTDX = 0x00000081

	// CertDataPCKChain is certification data type 5: the PCK certificate
	// chain in PEM. It is the only innermost type Cloister verifies.
	CertDataPCKChain = 5
	// CertDataQEReport is certification data type 6: QE report
	// certification data, wrapping type 5 in TDX (and v4+) quotes.
	CertDataQEReport = 6
)

// IntelQEVendorID is the QE vendor ID of Intel's quoting enclaves.
var IntelQEVendorID = [16]byte{0x93, 0x9a, 0x72, 0x33, 0xf7, 0x9c, 0x4c, 0xa9, 0x94, 0x0a, 0x0d, 0xb3, 0x95, 0x7f, 0x06, 0x07}

// certDataTypeNames explains the certification data types that are not
// verified, so the error says what was received.
var certDataTypeNames = map[uint16]string{
	1: "PPID in cleartext",
	2: "PPID encrypted with RSA-2048-OAEP",
	3: "PPID encrypted with RSA-3072-OAEP",
	4: "PCK leaf certificate only",
	5: "PCK certificate chain",
	6: "QE report certification data",
	7: "platform manifest",
}

// Header is the quote header.
type Header struct {
	Version            uint16
	AttestationKeyType uint16
	// TEEType is 0 for SGX and 0x81 for TDX (reserved, zero, in v3).
	TEEType    uint32
	QESVN      uint16
	PCESVN     uint16
	QEVendorID [16]byte
	UserData   [20]byte
}

// ParseHeader parses the 48-byte header at the start of b.
func ParseHeader(b []byte) (Header, error) {
	var h Header
	r := le.New(b)
	if !r.U16(&h.Version) || !r.U16(&h.AttestationKeyType) || !r.U32(&h.TEEType) ||
		!r.U16(&h.QESVN) || !r.U16(&h.PCESVN) || !r.Copy(h.QEVendorID[:]) || !r.Copy(h.UserData[:]) {
		return h, verr.New("dcap", "quote header", verr.Malformed, "need %d bytes, got %d", HeaderSize, len(b))
	}
	return h, nil
}

// EnclaveReport is an SGX enclave report body (REPORTBODY).
type EnclaveReport struct {
	CPUSVN       [16]byte
	MiscSelect   uint32
	ISVExtProdID [16]byte
	Attributes   [16]byte
	MRENCLAVE    [32]byte
	MRSIGNER     [32]byte
	ConfigID     [64]byte
	ISVProdID    uint16
	ISVSVN       uint16
	ConfigSVN    uint16
	ISVFamilyID  [16]byte
	ReportData   [64]byte
}

// Debug reports whether the enclave's DEBUG attribute (bit 1 of the flags) is set.
func (e *EnclaveReport) Debug() bool { return e.Attributes[0]&0x02 != 0 }

// KSS reports whether the enclave's KSS attribute (bit 7 of the flags) is
// set: only such enclaves can carry a config ID, config SVN, extended
// product ID and family ID.
func (e *EnclaveReport) KSS() bool { return e.Attributes[0]&0x80 != 0 }

// ParseEnclaveReport parses a 384-byte enclave report. Reserved ranges must
// be zero: the hardware writes zeros there, so anything else is not a report.
func ParseEnclaveReport(b []byte, what string) (*EnclaveReport, error) {
	if len(b) != EnclaveReportSize {
		return nil, verr.New("dcap", what, verr.Malformed, "need %d bytes, got %d", EnclaveReportSize, len(b))
	}
	var e EnclaveReport
	var res1, res2, res3, res4 []byte
	r := le.New(b)
	ok := r.Copy(e.CPUSVN[:]) && r.U32(&e.MiscSelect) && r.Bytes(&res1, 12) && r.Copy(e.ISVExtProdID[:]) &&
		r.Copy(e.Attributes[:]) && r.Copy(e.MRENCLAVE[:]) && r.Bytes(&res2, 32) && r.Copy(e.MRSIGNER[:]) &&
		r.Bytes(&res3, 32) && r.Copy(e.ConfigID[:]) && r.U16(&e.ISVProdID) && r.U16(&e.ISVSVN) &&
		r.U16(&e.ConfigSVN) && r.Bytes(&res4, 42) && r.Copy(e.ISVFamilyID[:]) && r.Copy(e.ReportData[:]) && r.Empty()
	if !ok {
		return nil, verr.New("dcap", what, verr.Malformed, "layout does not add up to %d bytes", EnclaveReportSize)
	}
	for _, rr := range []struct {
		off int
		b   []byte
	}{{0x14, res1}, {0x60, res2}, {0xA0, res3}, {0x106, res4}} {
		if err := mbz(rr.b, what, rr.off); err != nil {
			return nil, err
		}
	}
	return &e, nil
}

// mbz rejects a reserved range that is not all zero, naming where it is.
func mbz(b []byte, what string, off int) error {
	for _, c := range b {
		if c != 0 {
			return verr.New("dcap", what, verr.Malformed, "reserved bytes 0x%x..0x%x must be zero, got %x", off, off+len(b), b)
		}
	}
	return nil
}

// SignatureData is the part of a quote after the signed region: the quote
// signature, the attestation key, and the QE's certification of that key.
type SignatureData struct {
	// Signature is the raw r||s ECDSA signature by the attestation key over
	// the quote's signed region.
	Signature [SignatureSize]byte
	// AttestationKey is the raw X||Y P-256 attestation public key.
	AttestationKey [AttestationKeySize]byte
	// QEReport is the raw 384-byte QE report, kept as signed.
	QEReport []byte
	// QEReportSignature is the PCK key's raw r||s signature over QEReport.
	QEReportSignature [SignatureSize]byte
	// QEAuthData is the QE authentication data hashed into the QE report data.
	QEAuthData []byte
	// PCKChainPEM is the type-5 certification data: the PEM PCK chain.
	PCKChainPEM []byte
}

// ParseSignatureData parses b, which must hold exactly the signature data.
// wrapped selects the v4/v5 layout, where the QE report and the PCK chain sit
// inside certification data of type 6; otherwise (v3) they follow directly.
func ParseSignatureData(b []byte, wrapped bool) (*SignatureData, error) {
	const step = "signature data"
	s := &SignatureData{}
	r := le.New(b)
	if !r.Copy(s.Signature[:]) || !r.Copy(s.AttestationKey[:]) {
		return nil, verr.New("dcap", step, verr.Malformed, "truncated: %d bytes cannot hold the signature and attestation key", len(b))
	}
	if wrapped {
		typ, data, err := readCertData(r, "outer certification data")
		if err != nil {
			return nil, err
		}
		if typ != CertDataQEReport {
			return nil, unsupportedCertData(typ, CertDataQEReport)
		}
		if !r.Empty() {
			return nil, verr.New("dcap", step, verr.Malformed, "%d trailing bytes after the certification data", r.Len())
		}
		r = le.New(data)
	}
	if !r.Bytes(&s.QEReport, EnclaveReportSize) || !r.Copy(s.QEReportSignature[:]) {
		return nil, verr.New("dcap", step, verr.Malformed, "truncated QE report or QE report signature")
	}
	var authLen uint16
	if !r.U16(&authLen) {
		return nil, verr.New("dcap", step, verr.Malformed, "truncated QE authentication data size")
	}
	if int(authLen) > MaxAuthDataSize || !r.Bytes(&s.QEAuthData, int(authLen)) {
		return nil, verr.New("dcap", step, verr.Malformed, "QE authentication data declares %d bytes, %d remain (cap %d)", authLen, r.Len(), MaxAuthDataSize)
	}
	typ, data, err := readCertData(r, "certification data")
	if err != nil {
		return nil, err
	}
	if typ != CertDataPCKChain {
		return nil, unsupportedCertData(typ, CertDataPCKChain)
	}
	if !r.Empty() {
		return nil, verr.New("dcap", step, verr.Malformed, "%d trailing bytes after the certification data", r.Len())
	}
	s.PCKChainPEM = data
	return s, nil
}

func readCertData(r *le.Reader, what string) (uint16, []byte, error) {
	var typ uint16
	var size uint32
	var data []byte
	if !r.U16(&typ) || !r.U32(&size) {
		return 0, nil, verr.New("dcap", what, verr.Malformed, "truncated type or size")
	}
	if size > MaxCertDataSize || !r.Bytes(&data, int(size)) {
		return 0, nil, verr.New("dcap", what, verr.Malformed, "declares %d bytes, %d remain (cap %d)", size, r.Len(), MaxCertDataSize)
	}
	return typ, data, nil
}

func unsupportedCertData(got, want uint16) error {
	name, ok := certDataTypeNames[got]
	if !ok {
		name = "unknown"
	}
	return verr.New("dcap", "certification data", verr.Unsupported,
		"unsupported certification data type %d (%s); want type %d (%s)", got, name, want, certDataTypeNames[want])
}

// CheckHeader checks the header fields every verifiable quote shares.
func CheckHeader(h Header, wantTEE uint32) error {
	if h.AttestationKeyType != AttestationKeyECDSAP256 {
		return verr.New("dcap", "quote header", verr.Unsupported, "attestation key type %d; only %d (ECDSA-256 with P-256) is supported", h.AttestationKeyType, AttestationKeyECDSAP256)
	}
	if h.TEEType != wantTEE {
		return verr.New("dcap", "quote header", verr.Malformed, "TEE type 0x%x, want 0x%x", h.TEEType, wantTEE)
	}
	if !bytes.Equal(h.QEVendorID[:], IntelQEVendorID[:]) {
		return verr.New("dcap", "quote header", verr.Unsupported, "QE vendor ID %x is not Intel's (%x)", h.QEVendorID, IntelQEVendorID)
	}
	return nil
}

// String names a header for messages.
func (h Header) String() string {
	return fmt.Sprintf("quote v%d, key type %d, TEE 0x%x", h.Version, h.AttestationKeyType, h.TEEType)
}

// Marshal encodes h in the 48-byte header layout.
func (h Header) Marshal() []byte {
	b := make([]byte, 0, HeaderSize)
	b = binary.LittleEndian.AppendUint16(b, h.Version)
	b = binary.LittleEndian.AppendUint16(b, h.AttestationKeyType)
	b = binary.LittleEndian.AppendUint32(b, h.TEEType)
	b = binary.LittleEndian.AppendUint16(b, h.QESVN)
	b = binary.LittleEndian.AppendUint16(b, h.PCESVN)
	b = append(b, h.QEVendorID[:]...)
	return append(b, h.UserData[:]...)
}

// Marshal encodes e in the 384-byte enclave report layout, reserved bytes
// zero. ParseEnclaveReport(e.Marshal()) returns e.
func (e *EnclaveReport) Marshal() []byte {
	b := make([]byte, 0, EnclaveReportSize)
	b = append(b, e.CPUSVN[:]...)
	b = binary.LittleEndian.AppendUint32(b, e.MiscSelect)
	b = append(b, make([]byte, 12)...)
	b = append(b, e.ISVExtProdID[:]...)
	b = append(b, e.Attributes[:]...)
	b = append(b, e.MRENCLAVE[:]...)
	b = append(b, make([]byte, 32)...)
	b = append(b, e.MRSIGNER[:]...)
	b = append(b, make([]byte, 32)...)
	b = append(b, e.ConfigID[:]...)
	b = binary.LittleEndian.AppendUint16(b, e.ISVProdID)
	b = binary.LittleEndian.AppendUint16(b, e.ISVSVN)
	b = binary.LittleEndian.AppendUint16(b, e.ConfigSVN)
	b = append(b, make([]byte, 42)...)
	b = append(b, e.ISVFamilyID[:]...)
	return append(b, e.ReportData[:]...)
}

// Marshal encodes s in the v3 (wrapped false) or v4/v5 (wrapped true)
// signature data layout, without the leading length.
func (s *SignatureData) Marshal(wrapped bool) []byte {
	var inner []byte
	inner = append(inner, s.QEReport...)
	inner = append(inner, s.QEReportSignature[:]...)
	inner = binary.LittleEndian.AppendUint16(inner, uint16(len(s.QEAuthData)))
	inner = append(inner, s.QEAuthData...)
	inner = binary.LittleEndian.AppendUint16(inner, CertDataPCKChain)
	inner = binary.LittleEndian.AppendUint32(inner, uint32(len(s.PCKChainPEM)))
	inner = append(inner, s.PCKChainPEM...)
	b := append(append([]byte{}, s.Signature[:]...), s.AttestationKey[:]...)
	if wrapped {
		b = binary.LittleEndian.AppendUint16(b, CertDataQEReport)
		b = binary.LittleEndian.AppendUint32(b, uint32(len(inner)))
	}
	return append(b, inner...)
}
