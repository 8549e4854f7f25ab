package sim

import (
	"crypto/ecdsa"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"io"
	"sync"

	"github.com/cloister-dev/cloister/evidence/dcap"
	"github.com/cloister-dev/cloister/evidence/tdx"
)

// The simulated quoting enclave: its identity appears in every sim quote's
// QE report and in the sim QE identity collateral.
var (
	QEMRSIGNER  = sha256.Sum256([]byte("Cloister Simulated Quoting Enclave signer"))
	qeMRENCLAVE = sha256.Sum256([]byte("Cloister Simulated Quoting Enclave"))
)

// QE facts of the simulated quoting enclave.
const (
	QESVN          = 8
	qeProdIDSGX    = 1
	qeProdIDTDX    = 2
	qeAttributes   = 0x11 // INIT | PROVISIONKEY... as the real QE's low byte
	qeAttrMaskByte = 0xFB
)

// TEE TCB SVN of the simulated TDX module: module SVN 3, major version 1.
var TEETCBSVN = [16]byte{3, 1, 2}

// SGXReport is what the sim enclave reports about itself.
type SGXReport struct {
	MRENCLAVE  [32]byte
	MRSIGNER   [32]byte
	ISVProdID  uint16
	ISVSVN     uint16
	Debug      bool
	ReportData [64]byte

	// ConfigID, ConfigSVN, ISVExtProdID and ISVFamilyID are the Key
	// Separation and Sharing fields the host sets at enclave creation.
	// When any is not zero the quote also carries the KSS attribute, as a
	// real enclave must have KSS to hold them; all zero gives a pre-KSS
	// report, as before.
	ConfigID     [64]byte
	ConfigSVN    uint16
	ISVExtProdID [16]byte
	ISVFamilyID  [16]byte
}

// QuoteSGX returns an SGX ECDSA quote v3, certification data type 5, for r,
// signed by the sim attestation key, whose QE report the sim PCK key signs.
func (p *PKI) QuoteSGX(rnd io.Reader, r SGXReport) ([]byte, error) {
	body := dcap.EnclaveReport{
		CPUSVN: [16]byte{5, 5, 2, 2, 3, 1, 0, 5}, MRENCLAVE: r.MRENCLAVE, MRSIGNER: r.MRSIGNER,
		ISVProdID: r.ISVProdID, ISVSVN: r.ISVSVN, ReportData: r.ReportData,
		ConfigID: r.ConfigID, ConfigSVN: r.ConfigSVN, ISVExtProdID: r.ISVExtProdID, ISVFamilyID: r.ISVFamilyID,
	}
	// INIT | MODE64BIT, and DEBUG when the configuration asks for it.
	body.Attributes[0] = 0x05
	if r.Debug {
		body.Attributes[0] |= 0x02
	}
	if r.ConfigID != ([64]byte{}) || r.ConfigSVN != 0 || r.ISVExtProdID != ([16]byte{}) || r.ISVFamilyID != ([16]byte{}) {
		body.Attributes[0] |= 0x80 // KSS
	}
	body.Attributes[8] = 0xE7 // XFRM: x87, SSE, AVX, AVX-512
	signed := append(p.header(3, dcap.TEETypeSGX).Marshal(), body.Marshal()...)
	return p.finish(rnd, signed, false, qeProdIDSGX)
}

// QuoteTDX returns a TDX quote v4 for the TD report body b (its TEE TCB
// SVN is set to the sim module's).
func (p *PKI) QuoteTDX(rnd io.Reader, b tdx.Body) ([]byte, error) {
	b.TEETCBSVN = TEETCBSVN
	b.TEETCBSVN2, b.MRServiceTD = nil, nil
	signed := append(p.header(4, dcap.TEETypeTDX).Marshal(), b.Marshal()...)
	return p.finish(rnd, signed, true, qeProdIDTDX)
}

// QuoteTDXBody returns a TDX quote for b exactly as given (TEE TCB SVN,
// MRSIGNERSEAM and SEAM attributes included), for tests of the verifier's
// TDX module rules. v5 selects quote version 5, with body type 3 (TDX 1.5)
// when b has TEETCBSVN2 and MRSERVICETD, else 2; otherwise version 4, which
// requires a TDX 1.0 body.
func (p *PKI) QuoteTDXBody(rnd io.Reader, b tdx.Body, v5 bool) ([]byte, error) {
	if !v5 {
		if b.TEETCBSVN2 != nil || b.MRServiceTD != nil {
			return nil, fmt.Errorf("sim: a TDX 1.5 body needs quote version 5")
		}
		return p.finish(rnd, append(p.header(4, dcap.TEETypeTDX).Marshal(), b.Marshal()...), true, qeProdIDTDX)
	}
	if (b.TEETCBSVN2 == nil) != (b.MRServiceTD == nil) {
		return nil, fmt.Errorf("sim: a TDX 1.5 body has both TEETCBSVN2 and MRSERVICETD")
	}
	typ := uint16(tdx.BodyType10)
	if b.TEETCBSVN2 != nil {
		typ = tdx.BodyType15
	}
	body := b.Marshal()
	signed := p.header(5, dcap.TEETypeTDX).Marshal()
	signed = binary.LittleEndian.AppendUint16(signed, typ)
	signed = binary.LittleEndian.AppendUint32(signed, uint32(len(body)))
	return p.finish(rnd, append(signed, body...), true, qeProdIDTDX)
}

func (p *PKI) header(version uint16, tee uint32) dcap.Header {
	h := dcap.Header{Version: version, AttestationKeyType: dcap.AttestationKeyECDSAP256, TEEType: tee,
		QEVendorID: dcap.IntelQEVendorID}
	if version == 3 {
		h.QESVN, h.PCESVN = QESVN, PCESVN
	}
	return h
}

// finish signs the signed region and appends the signature data.
func (p *PKI) finish(rnd io.Reader, signed []byte, wrapped bool, qeProdID uint16) ([]byte, error) {
	qe, err := p.qeSection(rnd, qeProdID)
	if err != nil {
		return nil, err
	}
	s := &dcap.SignatureData{PCKChainPEM: p.PCKChainPEM(), AttestationKey: qe.attKey, QEReport: qe.report,
		QEReportSignature: qe.sig, QEAuthData: qeAuthData[:]}
	if err := rawSign(rnd, p.qeKey, signed, s.Signature[:]); err != nil {
		return nil, err
	}
	sd := s.Marshal(wrapped)
	out := append([]byte{}, signed...)
	out = binary.LittleEndian.AppendUint32(out, uint32(len(sd)))
	return append(out, sd...), nil
}

// qeAuthData is the QE authentication data of every sim quote: the bytes
// 0..31, as Intel's quoting library supplies by default (both real vectors
// in testdata carry exactly these).
var qeAuthData = func() (b [32]byte) {
	for i := range b {
		b[i] = byte(i)
	}
	return b
}()

// qeSection is a QE's certification of the attestation key: its report
// (binding the key and auth data) and the PCK key's signature over it.
type qeSection struct {
	attKey [dcap.AttestationKeySize]byte
	report []byte
	sig    [dcap.SignatureSize]byte
}

// qeSections holds one qeSection per QE (SGX and TDX QEs differ in product
// ID). A real QE certifies its attestation key once, when the key is made,
// and every later quote repeats that report and signature; the simulator
// does the same, so verifiers see sim quotes shaped like real ones.
type qeSections struct {
	mu       sync.Mutex
	byProdID map[uint16]qeSection
}

func (p *PKI) qeSection(rnd io.Reader, qeProdID uint16) (qeSection, error) {
	p.qe.mu.Lock()
	defer p.qe.mu.Unlock()
	if s, ok := p.qe.byProdID[qeProdID]; ok {
		return s, nil
	}
	var s qeSection
	pub, err := p.qeKey.PublicKey.Bytes()
	if err != nil {
		return s, fmt.Errorf("sim: attestation key: %w", err)
	}
	copy(s.attKey[:], pub[1:])
	qe := dcap.EnclaveReport{MRENCLAVE: qeMRENCLAVE, MRSIGNER: QEMRSIGNER, ISVProdID: qeProdID, ISVSVN: QESVN}
	qe.Attributes[0] = qeAttributes
	bind := sha256.Sum256(append(append([]byte{}, s.attKey[:]...), qeAuthData[:]...))
	copy(qe.ReportData[:], bind[:])
	s.report = qe.Marshal()
	if err := rawSign(rnd, p.pckKey, s.report, s.sig[:]); err != nil {
		return s, err
	}
	p.qe.byProdID[qeProdID] = s
	return s, nil
}

// rawSign writes the raw r||s ECDSA P-256 signature over SHA-256(msg).
func rawSign(rnd io.Reader, k *ecdsa.PrivateKey, msg []byte, out []byte) error {
	h := sha256.Sum256(msg)
	r, s, err := ecdsa.Sign(rnd, k, h[:])
	if err != nil {
		return fmt.Errorf("sim: sign: %w", err)
	}
	r.FillBytes(out[:32])
	s.FillBytes(out[32:64])
	return nil
}
