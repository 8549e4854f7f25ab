package dcap

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"strings"
	"time"

	"github.com/cloister-dev/cloister/evidence/internal/verr"
)

// TCB statuses as Intel spells them in TCB info and QE identity.
const (
	UpToDate                          = "UpToDate"
	SWHardeningNeeded                 = "SWHardeningNeeded"
	ConfigurationNeeded               = "ConfigurationNeeded"
	ConfigurationAndSWHardeningNeeded = "ConfigurationAndSWHardeningNeeded"
	OutOfDate                         = "OutOfDate"
	OutOfDateConfigurationNeeded      = "OutOfDateConfigurationNeeded"
	Revoked                           = "Revoked"
)

var knownStatus = map[string]bool{
	UpToDate: true, SWHardeningNeeded: true, ConfigurationNeeded: true,
	ConfigurationAndSWHardeningNeeded: true, OutOfDate: true,
	OutOfDateConfigurationNeeded: true, Revoked: true,
}

// TCBInfo is Intel's signed TCB information for one FMSPC (TCB info v2 or
// v3, SGX or TDX). It is parsed only after its signature was verified.
type TCBInfo struct {
	ID                      string // "SGX" or "TDX"; empty in v2 (SGX)
	Version                 int
	IssueDate               time.Time
	NextUpdate              time.Time
	FMSPC                   [6]byte
	PCEID                   [2]byte
	TCBType                 int
	TCBEvaluationDataNumber int
	TDXModule               *TDXModule
	TDXModuleIdentities     []TDXModuleIdentity
	Levels                  []TCBLevel
}

// TCBLevel is one row of TCB info, best first.
type TCBLevel struct {
	SGXComponents [16]byte
	PCESVN        uint16
	// TDXComponents is set for TDX TCB info.
	TDXComponents *[16]byte
	Date          time.Time
	Status        string
	AdvisoryIDs   []string
}

// TDXModule is the expected TDX module signer and attributes (TCB info v3).
type TDXModule struct {
	MRSIGNER       []byte // 48 bytes
	Attributes     [8]byte
	AttributesMask [8]byte
}

// TDXModuleIdentity is a TDX module version's identity and TCB levels.
type TDXModuleIdentity struct {
	ID string // "TDX_01", ...
	TDXModule
	Levels []SVNLevel
}

// SVNLevel is a level keyed by one ISVSVN (QE identity, TDX module).
type SVNLevel struct {
	ISVSVN      uint16
	Date        time.Time
	Status      string
	AdvisoryIDs []string
}

type jsonComponent struct {
	SVN *int `json:"svn"`
}

type jsonTCB struct {
	SGXComponents []jsonComponent `json:"sgxtcbcomponents"`
	TDXComponents []jsonComponent `json:"tdxtcbcomponents"`
	PCESVN        *int            `json:"pcesvn"`
	ISVSVN        *int            `json:"isvsvn"`
	// TCB info v2 spells the components out.
	V2 map[string]json.RawMessage `json:"-"`
}

type jsonLevel struct {
	TCB         json.RawMessage `json:"tcb"`
	TCBDate     string          `json:"tcbDate"`
	TCBStatus   string          `json:"tcbStatus"`
	AdvisoryIDs []string        `json:"advisoryIDs"`
}

type jsonModule struct {
	ID             string      `json:"id"`
	MRSIGNER       string      `json:"mrsigner"`
	Attributes     string      `json:"attributes"`
	AttributesMask string      `json:"attributesMask"`
	TCBLevels      []jsonLevel `json:"tcbLevels"`
}

type jsonTCBInfo struct {
	ID                      string       `json:"id"`
	Version                 int          `json:"version"`
	IssueDate               string       `json:"issueDate"`
	NextUpdate              string       `json:"nextUpdate"`
	FMSPC                   string       `json:"fmspc"`
	PCEID                   string       `json:"pceId"`
	TCBType                 int          `json:"tcbType"`
	TCBEvaluationDataNumber int          `json:"tcbEvaluationDataNumber"`
	TDXModule               *jsonModule  `json:"tdxModule"`
	TDXModuleIdentities     []jsonModule `json:"tdxModuleIdentities"`
	TCBLevels               []jsonLevel  `json:"tcbLevels"`
}

func tcbErr(format string, args ...any) error {
	return verr.New("dcap", "TCB info", verr.Malformed, format, args...)
}

// ParseTCBInfo parses the signed tcbInfo JSON text. It must only be called
// on text whose signature has been verified.
func ParseTCBInfo(text []byte) (*TCBInfo, error) {
	var j jsonTCBInfo
	if err := strictJSON(text, &j); err != nil {
		return nil, verr.Wrap("dcap", "TCB info", verr.Malformed, err, "not valid tcbInfo JSON")
	}
	t := &TCBInfo{ID: j.ID, Version: j.Version, TCBType: j.TCBType, TCBEvaluationDataNumber: j.TCBEvaluationDataNumber}
	switch {
	case j.Version == 2 && (j.ID == "" || j.ID == "SGX"):
		t.ID = "SGX"
	case j.Version == 3 && (j.ID == "SGX" || j.ID == "TDX"):
	default:
		return nil, verr.New("dcap", "TCB info", verr.Unsupported, "id %q version %d; want SGX v2/v3 or TDX v3", j.ID, j.Version)
	}
	if j.TCBType != 0 {
		return nil, verr.New("dcap", "TCB info", verr.Unsupported, "tcbType %d; only 0 is defined", j.TCBType)
	}
	var err error
	if t.IssueDate, err = parseTime(j.IssueDate, "TCB info issueDate"); err != nil {
		return nil, err
	}
	if t.NextUpdate, err = parseTime(j.NextUpdate, "TCB info nextUpdate"); err != nil {
		return nil, err
	}
	if err := hexInto(t.FMSPC[:], j.FMSPC, "TCB info fmspc"); err != nil {
		return nil, err
	}
	if err := hexInto(t.PCEID[:], j.PCEID, "TCB info pceId"); err != nil {
		return nil, err
	}
	if j.TDXModule != nil {
		m, err := parseModule(j.TDXModule, "tdxModule")
		if err != nil {
			return nil, err
		}
		t.TDXModule = &m
	}
	for i := range j.TDXModuleIdentities {
		jm := &j.TDXModuleIdentities[i]
		m, err := parseModule(jm, "tdxModuleIdentities "+jm.ID)
		if err != nil {
			return nil, err
		}
		levels, err := parseSVNLevels(jm.TCBLevels, "TDX module "+jm.ID)
		if err != nil {
			return nil, err
		}
		t.TDXModuleIdentities = append(t.TDXModuleIdentities, TDXModuleIdentity{ID: jm.ID, TDXModule: m, Levels: levels})
	}
	if len(j.TCBLevels) == 0 || len(j.TCBLevels) > MaxTCBLevels {
		return nil, tcbErr("%d TCB levels (want 1..%d)", len(j.TCBLevels), MaxTCBLevels)
	}
	for i, jl := range j.TCBLevels {
		l, err := parseTCBLevel(jl, t.ID == "TDX", t.Version)
		if err != nil {
			return nil, verr.Wrap("dcap", "TCB info", verr.Malformed, err, "TCB level %d", i)
		}
		t.Levels = append(t.Levels, l)
	}
	return t, nil
}

func parseModule(j *jsonModule, what string) (TDXModule, error) {
	var m TDXModule
	sig, err := hex.DecodeString(j.MRSIGNER)
	if err != nil || len(sig) != 48 {
		return m, tcbErr("%s mrsigner: want 48 bytes of hex", what)
	}
	m.MRSIGNER = sig
	if err := hexInto(m.Attributes[:], j.Attributes, what+" attributes"); err != nil {
		return m, err
	}
	if err := hexInto(m.AttributesMask[:], j.AttributesMask, what+" attributesMask"); err != nil {
		return m, err
	}
	return m, nil
}

func parseTCBLevel(jl jsonLevel, tdx bool, version int) (TCBLevel, error) {
	var l TCBLevel
	var err error
	if l.Date, err = parseTime(jl.TCBDate, "tcbDate"); err != nil && version >= 3 {
		return l, err
	}
	if !knownStatus[jl.TCBStatus] {
		return l, tcbErr("unknown tcbStatus %q", jl.TCBStatus)
	}
	l.Status = jl.TCBStatus
	l.AdvisoryIDs = jl.AdvisoryIDs
	if version == 2 {
		var v2 map[string]int
		if err := json.Unmarshal(jl.TCB, &v2); err != nil {
			return l, tcbErr("v2 tcb: %v", err)
		}
		for i := range 16 {
			svn, ok := v2[componentKey(i)]
			if !ok || svn < 0 || svn > 255 {
				return l, tcbErr("v2 tcb: %s missing or out of range", componentKey(i))
			}
			l.SGXComponents[i] = byte(svn)
		}
		p, ok := v2["pcesvn"]
		if !ok || p < 0 || p > 0xffff {
			return l, tcbErr("v2 tcb: pcesvn missing or out of range")
		}
		l.PCESVN = uint16(p)
		return l, nil
	}
	var jt jsonTCB
	if err := json.Unmarshal(jl.TCB, &jt); err != nil {
		return l, tcbErr("tcb: %v", err)
	}
	if err := components(jt.SGXComponents, &l.SGXComponents, "sgxtcbcomponents"); err != nil {
		return l, err
	}
	if jt.PCESVN == nil || *jt.PCESVN < 0 || *jt.PCESVN > 0xffff {
		return l, tcbErr("pcesvn missing or out of range")
	}
	l.PCESVN = uint16(*jt.PCESVN)
	if tdx {
		var c [16]byte
		if err := components(jt.TDXComponents, &c, "tdxtcbcomponents"); err != nil {
			return l, err
		}
		l.TDXComponents = &c
	}
	return l, nil
}

func componentKey(i int) string {
	return "sgxtcbcomp" + string(rune('0'+(i+1)/10)) + string(rune('0'+(i+1)%10)) + "svn"
}

func components(in []jsonComponent, out *[16]byte, what string) error {
	if len(in) != 16 {
		return tcbErr("%s: want 16 components, got %d", what, len(in))
	}
	for i, c := range in {
		if c.SVN == nil || *c.SVN < 0 || *c.SVN > 255 {
			return tcbErr("%s[%d]: svn missing or out of range", what, i)
		}
		out[i] = byte(*c.SVN)
	}
	return nil
}

func parseSVNLevels(in []jsonLevel, what string) ([]SVNLevel, error) {
	if len(in) == 0 || len(in) > MaxTCBLevels {
		return nil, tcbErr("%s: %d TCB levels (want 1..%d)", what, len(in), MaxTCBLevels)
	}
	out := make([]SVNLevel, 0, len(in))
	for i, jl := range in {
		var jt jsonTCB
		if err := json.Unmarshal(jl.TCB, &jt); err != nil || jt.ISVSVN == nil || *jt.ISVSVN < 0 || *jt.ISVSVN > 0xffff {
			return nil, tcbErr("%s level %d: isvsvn missing or out of range", what, i)
		}
		if !knownStatus[jl.TCBStatus] {
			return nil, tcbErr("%s level %d: unknown tcbStatus %q", what, i, jl.TCBStatus)
		}
		d, err := parseTime(jl.TCBDate, what+" tcbDate")
		if err != nil {
			return nil, err
		}
		out = append(out, SVNLevel{ISVSVN: uint16(*jt.ISVSVN), Date: d, Status: jl.TCBStatus, AdvisoryIDs: jl.AdvisoryIDs})
	}
	return out, nil
}

// strictJSON decodes one JSON value and rejects trailing data.
func strictJSON(text []byte, v any) error {
	d := json.NewDecoder(bytes.NewReader(text))
	if err := d.Decode(v); err != nil {
		return err
	}
	if d.More() {
		return errTrailing
	}
	if _, err := d.Token(); err == nil {
		return errTrailing
	}
	return nil
}

var errTrailing = verr.New("dcap", "collateral", verr.Malformed, "trailing data after the JSON value")

func parseTime(s, what string) (time.Time, error) {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, verr.Wrap("dcap", what, verr.Malformed, err, "%q is not an RFC 3339 time", s)
	}
	return t, nil
}

func hexInto(out []byte, s, what string) error {
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != len(out) {
		return verr.New("dcap", what, verr.Malformed, "%q: want %d bytes of hex", s, len(out))
	}
	copy(out, b)
	return nil
}

// equalFoldID compares module identity IDs without regard to case, since
// TDX_0A and TDX_0a name the same module.
func equalFoldID(a, b string) bool { return strings.EqualFold(a, b) }
