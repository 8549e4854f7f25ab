package sim

import (
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math/big"
	"strings"
	"time"

	"github.com/cloister-dev/cloister/evidence/pcs"
)

// CollateralValidity is how long generated sim collateral stays valid.
const CollateralValidity = 30 * 24 * time.Hour

type simComponent struct {
	SVN int `json:"svn"`
}

type simTCB struct {
	SGX    []simComponent `json:"sgxtcbcomponents"`
	PCESVN int            `json:"pcesvn"`
	TDX    []simComponent `json:"tdxtcbcomponents,omitempty"`
}

type simLevel struct {
	TCB         any      `json:"tcb"`
	TCBDate     string   `json:"tcbDate"`
	TCBStatus   string   `json:"tcbStatus"`
	AdvisoryIDs []string `json:"advisoryIDs,omitempty"`
}

type simModule struct {
	ID             string     `json:"id,omitempty"`
	MRSIGNER       string     `json:"mrsigner"`
	Attributes     string     `json:"attributes"`
	AttributesMask string     `json:"attributesMask"`
	TCBLevels      []simLevel `json:"tcbLevels,omitempty"`
}

type simTCBInfo struct {
	ID                      string      `json:"id"`
	Version                 int         `json:"version"`
	IssueDate               string      `json:"issueDate"`
	NextUpdate              string      `json:"nextUpdate"`
	FMSPC                   string      `json:"fmspc"`
	PCEID                   string      `json:"pceId"`
	TCBType                 int         `json:"tcbType"`
	TCBEvaluationDataNumber int         `json:"tcbEvaluationDataNumber"`
	TDXModule               *simModule  `json:"tdxModule,omitempty"`
	TDXModuleIdentities     []simModule `json:"tdxModuleIdentities,omitempty"`
	TCBLevels               []simLevel  `json:"tcbLevels"`
}

type simQEIdentity struct {
	ID                      string     `json:"id"`
	Version                 int        `json:"version"`
	IssueDate               string     `json:"issueDate"`
	NextUpdate              string     `json:"nextUpdate"`
	TCBEvaluationDataNumber int        `json:"tcbEvaluationDataNumber"`
	MiscSelect              string     `json:"miscselect"`
	MiscSelectMask          string     `json:"miscselectMask"`
	Attributes              string     `json:"attributes"`
	AttributesMask          string     `json:"attributesMask"`
	MRSIGNER                string     `json:"mrsigner"`
	ISVProdID               int        `json:"isvprodid"`
	TCBLevels               []simLevel `json:"tcbLevels"`
}

func components(svns []byte) []simComponent {
	out := make([]simComponent, len(svns))
	for i, s := range svns {
		out[i] = simComponent{SVN: int(s)}
	}
	return out
}

func upperHex(b []byte) string { return strings.ToUpper(hex.EncodeToString(b)) }

// Collateral returns a signed collateral bundle for the sim platform, valid
// from an hour before now for CollateralValidity. tdx selects the TDX TCB
// info and TD_QE identity; otherwise they are SGX's. The sim platform
// matches its first (UpToDate) TCB level.
func (p *PKI) Collateral(rnd io.Reader, now time.Time, tdx bool) (*pcs.Bundle, error) {
	return p.CollateralWith(rnd, now, tdx, nil)
}

// CollateralEdit changes the TCB info and QE identity (the JSON objects,
// decoded into maps) before they are signed.
type CollateralEdit func(tcbInfo, qeIdentity map[string]any)

// CollateralWith is Collateral with edit applied to the TCB info and QE
// identity before they are signed by the sim TCB signing key: how tests
// make validly signed collateral that says anything (other levels,
// statuses, missing fields). A nil edit gives Collateral's.
func (p *PKI) CollateralWith(rnd io.Reader, now time.Time, tdx bool, edit CollateralEdit) (*pcs.Bundle, error) {
	issue := now.Add(-time.Hour).UTC().Truncate(time.Second)
	next := issue.Add(CollateralValidity)
	date := issue.Format(time.RFC3339)
	tcbDate := issue.AddDate(0, -1, 0).Format(time.RFC3339)
	upToDate := simTCB{SGX: components(CompSVN[:]), PCESVN: int(PCESVN)}
	older := simTCB{SGX: components(make([]byte, 16)), PCESVN: 1}
	ti := simTCBInfo{ID: "SGX", Version: 3, IssueDate: date, NextUpdate: next.Format(time.RFC3339),
		FMSPC: upperHex(FMSPC[:]), PCEID: upperHex(PCEID[:]), TCBEvaluationDataNumber: 1}
	qi := simQEIdentity{ID: "QE", Version: 2, IssueDate: date, NextUpdate: next.Format(time.RFC3339), TCBEvaluationDataNumber: 1,
		MiscSelect: "00000000", MiscSelectMask: "FFFFFFFF",
		Attributes: upperHex(append([]byte{qeAttributes}, make([]byte, 15)...)), AttributesMask: upperHex(append([]byte{qeAttrMaskByte, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF}, make([]byte, 8)...)),
		MRSIGNER: upperHex(QEMRSIGNER[:]), ISVProdID: qeProdIDSGX,
		TCBLevels: []simLevel{{TCB: map[string]int{"isvsvn": QESVN}, TCBDate: tcbDate, TCBStatus: "UpToDate"}}}
	if tdx {
		ti.ID, qi.ID, qi.ISVProdID = "TDX", "TD_QE", qeProdIDTDX
		zero := upperHex(make([]byte, 48))
		ti.TDXModule = &simModule{MRSIGNER: zero, Attributes: "0000000000000000", AttributesMask: "FFFFFFFFFFFFFFFF"}
		ti.TDXModuleIdentities = []simModule{{ID: fmt.Sprintf("TDX_%02X", TEETCBSVN[1]), MRSIGNER: zero, Attributes: "0000000000000000",
			AttributesMask: "FFFFFFFFFFFFFFFF", TCBLevels: []simLevel{{TCB: map[string]int{"isvsvn": int(TEETCBSVN[0])}, TCBDate: tcbDate, TCBStatus: "UpToDate"}}}}
		upToDate.TDX = components(TEETCBSVN[:])
		older.TDX = components(make([]byte, 16))
	}
	ti.TCBLevels = []simLevel{
		{TCB: upToDate, TCBDate: tcbDate, TCBStatus: "UpToDate"},
		{TCB: older, TCBDate: issue.AddDate(-1, 0, 0).Format(time.RFC3339), TCBStatus: "OutOfDate", AdvisoryIDs: []string{"CLOISTER-SIM-0001"}},
	}
	b := &pcs.Bundle{}
	var tiv, qiv any = ti, qi
	if edit != nil {
		tm, err := toMap(ti)
		if err != nil {
			return nil, err
		}
		qm, err := toMap(qi)
		if err != nil {
			return nil, err
		}
		edit(tm, qm)
		tiv, qiv = tm, qm
	}
	var err error
	if b.TCBInfo, b.TCBInfoSignature, err = p.signJSON(rnd, tiv); err != nil {
		return nil, err
	}
	if b.QEIdentity, b.QEIdentitySignature, err = p.signJSON(rnd, qiv); err != nil {
		return nil, err
	}
	chain := string(certPEM(p.TCBSigning)) + string(certPEM(p.Root))
	b.TCBInfoIssuerChain, b.QEIdentityIssuerChain = chain, chain
	rootCRL, err := x509.CreateRevocationList(rnd, &x509.RevocationList{Number: big.NewInt(issue.Unix()), ThisUpdate: issue, NextUpdate: next}, p.Root, p.rootKey)
	if err != nil {
		return nil, fmt.Errorf("sim: root CRL: %w", err)
	}
	pckCRL, err := x509.CreateRevocationList(rnd, &x509.RevocationList{Number: big.NewInt(issue.Unix()), ThisUpdate: issue, NextUpdate: next}, p.PCKCA, p.pckCAKey)
	if err != nil {
		return nil, fmt.Errorf("sim: PCK CRL: %w", err)
	}
	b.RootCACRL, b.PCKCRL = hex.EncodeToString(rootCRL), hex.EncodeToString(pckCRL)
	b.PCKCRLIssuerChain = string(certPEM(p.PCKCA)) + string(certPEM(p.Root))
	return b, nil
}

// signJSON returns the JSON text of v and the hex of its raw r||s
// signature by the sim TCB signing key.
func (p *PKI) signJSON(rnd io.Reader, v any) (string, string, error) {
	text, err := json.Marshal(v)
	if err != nil {
		return "", "", fmt.Errorf("sim: collateral: %w", err)
	}
	sig := make([]byte, 64)
	if err := rawSign(rnd, p.tcbKey, text, sig); err != nil {
		return "", "", err
	}
	return string(text), hex.EncodeToString(sig), nil
}

// toMap turns v into its JSON object as a map, for CollateralEdit.
func toMap(v any) (map[string]any, error) {
	text, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("sim: collateral: %w", err)
	}
	var m map[string]any
	if err := json.Unmarshal(text, &m); err != nil {
		return nil, fmt.Errorf("sim: collateral: %w", err)
	}
	return m, nil
}
