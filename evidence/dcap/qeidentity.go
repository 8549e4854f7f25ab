package dcap

import (
	"encoding/binary"
	"time"

	"github.com/cloister-dev/cloister/evidence/internal/verr"
)

// QEIdentity is Intel's signed identity of the quoting enclave (enclave
// identity v2): who signs it, which attributes it may have, and the TCB
// status of each ISVSVN. It is parsed only after its signature was verified.
type QEIdentity struct {
	ID                      string // "QE" (SGX) or "TD_QE" (TDX)
	Version                 int
	IssueDate               time.Time
	NextUpdate              time.Time
	TCBEvaluationDataNumber int
	MiscSelect              uint32
	MiscSelectMask          uint32
	Attributes              [16]byte
	AttributesMask          [16]byte
	MRSIGNER                [32]byte
	ISVProdID               uint16
	Levels                  []SVNLevel
}

type jsonQEIdentity struct {
	ID                      string      `json:"id"`
	Version                 int         `json:"version"`
	IssueDate               string      `json:"issueDate"`
	NextUpdate              string      `json:"nextUpdate"`
	TCBEvaluationDataNumber *int        `json:"tcbEvaluationDataNumber"`
	MiscSelect              string      `json:"miscselect"`
	MiscSelectMask          string      `json:"miscselectMask"`
	Attributes              string      `json:"attributes"`
	AttributesMask          string      `json:"attributesMask"`
	MRSIGNER                string      `json:"mrsigner"`
	ISVProdID               *int        `json:"isvprodid"`
	TCBLevels               []jsonLevel `json:"tcbLevels"`
}

// ParseQEIdentity parses the signed enclaveIdentity JSON text. It must only
// be called on text whose signature has been verified.
func ParseQEIdentity(text []byte) (*QEIdentity, error) {
	var j jsonQEIdentity
	if err := strictJSON(text, &j); err != nil {
		return nil, verr.Wrap("dcap", "QE identity", verr.Malformed, err, "not valid enclaveIdentity JSON")
	}
	if j.Version != 2 || (j.ID != "QE" && j.ID != "TD_QE") {
		return nil, verr.New("dcap", "QE identity", verr.Unsupported, "id %q version %d; want QE or TD_QE version 2", j.ID, j.Version)
	}
	// Intel's parser requires tcbEvaluationDataNumber (EnclaveIdentityV2).
	if j.TCBEvaluationDataNumber == nil || *j.TCBEvaluationDataNumber < 0 {
		return nil, verr.New("dcap", "QE identity", verr.Malformed, "tcbEvaluationDataNumber missing or out of range")
	}
	q := &QEIdentity{ID: j.ID, Version: j.Version, TCBEvaluationDataNumber: *j.TCBEvaluationDataNumber}
	var err error
	if q.IssueDate, err = parseTime(j.IssueDate, "QE identity issueDate"); err != nil {
		return nil, err
	}
	if q.NextUpdate, err = parseTime(j.NextUpdate, "QE identity nextUpdate"); err != nil {
		return nil, err
	}
	var ms, msm [4]byte
	if err := hexInto(ms[:], j.MiscSelect, "QE identity miscselect"); err != nil {
		return nil, err
	}
	if err := hexInto(msm[:], j.MiscSelectMask, "QE identity miscselectMask"); err != nil {
		return nil, err
	}
	// The JSON spells MISCSELECT as the report stores it (little-endian).
	q.MiscSelect = binary.LittleEndian.Uint32(ms[:])
	q.MiscSelectMask = binary.LittleEndian.Uint32(msm[:])
	if err := hexInto(q.Attributes[:], j.Attributes, "QE identity attributes"); err != nil {
		return nil, err
	}
	if err := hexInto(q.AttributesMask[:], j.AttributesMask, "QE identity attributesMask"); err != nil {
		return nil, err
	}
	if err := hexInto(q.MRSIGNER[:], j.MRSIGNER, "QE identity mrsigner"); err != nil {
		return nil, err
	}
	if j.ISVProdID == nil || *j.ISVProdID < 0 || *j.ISVProdID > 0xffff {
		return nil, verr.New("dcap", "QE identity", verr.Malformed, "isvprodid missing or out of range")
	}
	q.ISVProdID = uint16(*j.ISVProdID)
	if q.Levels, err = parseSVNLevels(j.TCBLevels, "QE identity", qeStatus); err != nil {
		return nil, err
	}
	return q, nil
}
