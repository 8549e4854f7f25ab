package dcap

import (
	"bytes"
	"cmp"
	"encoding/hex"
	"encoding/json"
	"slices"
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

// Statuses Intel's TD relaunch rule gives (QVL TDRelaunchCheck): the TD
// runs on an out-of-date module, and relaunching it would bring it to the
// platform's newest TDX level.
const (
	TDRelaunchAdvised                    = "TDRelaunchAdvised"
	TDRelaunchAdvisedConfigurationNeeded = "TDRelaunchAdvisedConfigurationNeeded"
)

// knownStatus are the statuses a TCB info level may have (QVL
// VALID_TCB_INFO_STATUSES).
var knownStatus = map[string]bool{
	UpToDate: true, SWHardeningNeeded: true, ConfigurationNeeded: true,
	ConfigurationAndSWHardeningNeeded: true, OutOfDate: true,
	OutOfDateConfigurationNeeded: true, Revoked: true,
}

// qeStatus are the statuses a QE identity level may have (QVL
// parseStringToTcbStatus): the SW hardening ones are not among them.
var qeStatus = map[string]bool{
	UpToDate: true, ConfigurationNeeded: true, OutOfDate: true,
	OutOfDateConfigurationNeeded: true, Revoked: true,
}

// moduleStatus are the statuses a TDX module level may have when it is
// used (QVL VALID_MODULE_TCB_STATUSES). Intel parses any string there and
// judges it only when the level is matched, so evidence/dcap does too.
var moduleStatus = map[string]bool{UpToDate: true, OutOfDate: true, Revoked: true}

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
	// TDXModule is set exactly when ID is "TDX" (Intel requires it there
	// and forbids it in SGX TCB info).
	TDXModule *TDXModule
	// TDXModuleIdentities is nil when the TDX TCB info has none, which
	// Intel accepts for modules of major version 0 only.
	TDXModuleIdentities []TDXModuleIdentity
	Levels              []TCBLevel
}

// TCBLevel is one row of TCB info. TCBInfo.Levels holds them in Intel's
// order (see compareLevels), best first, whatever the order of the JSON.
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

// TDXModuleIdentity is a TDX module version's identity and TCB levels,
// ordered by ISVSVN, highest first (Intel's order, not the JSON's).
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

// jsonComponent is one TCB component. Category and type are optional,
// but must be strings when present, as Intel's parser requires.
type jsonComponent struct {
	SVN      *int    `json:"svn"`
	Category *string `json:"category"`
	Type     *string `json:"type"`
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
	ID                      string          `json:"id"`
	Version                 int             `json:"version"`
	IssueDate               string          `json:"issueDate"`
	NextUpdate              string          `json:"nextUpdate"`
	FMSPC                   string          `json:"fmspc"`
	PCEID                   string          `json:"pceId"`
	TCBType                 *int            `json:"tcbType"`
	TCBEvaluationDataNumber *int            `json:"tcbEvaluationDataNumber"`
	TDXModule               json.RawMessage `json:"tdxModule"`
	TDXModuleIdentities     json.RawMessage `json:"tdxModuleIdentities"`
	TCBLevels               []jsonLevel     `json:"tcbLevels"`
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
	if j.TCBType == nil || j.TCBEvaluationDataNumber == nil || *j.TCBEvaluationDataNumber < 0 {
		return nil, tcbErr("tcbType or tcbEvaluationDataNumber missing or out of range")
	}
	t := &TCBInfo{ID: j.ID, Version: j.Version, TCBType: *j.TCBType, TCBEvaluationDataNumber: *j.TCBEvaluationDataNumber}
	switch {
	case j.Version == 2:
		// v2 is SGX's; Intel's parser does not read an id there.
		t.ID = "SGX"
	case j.Version == 3 && (j.ID == "SGX" || j.ID == "TDX"):
	default:
		return nil, verr.New("dcap", "TCB info", verr.Unsupported, "id %q version %d; want SGX v2/v3 or TDX v3", j.ID, j.Version)
	}
	if t.TCBType != 0 {
		return nil, verr.New("dcap", "TCB info", verr.Unsupported, "tcbType %d; only 0 is defined", t.TCBType)
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
	// TCB info v2 has no TDX fields; Intel does not look for them there.
	if j.Version == 3 {
		if err := parseModules(t, &j); err != nil {
			return nil, err
		}
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
	if err := sortLevels(t.Levels); err != nil {
		return nil, err
	}
	return t, nil
}

// parseModules reads tdxModule and tdxModuleIdentities of TCB info v3 as
// Intel's parser does (TcbInfo::parsePartV3): SGX TCB info must have
// neither; TDX TCB info must have tdxModule, and its identities, when
// present, must be a non-empty array.
func parseModules(t *TCBInfo, j *jsonTCBInfo) error {
	if t.ID == "SGX" {
		if j.TDXModule != nil {
			return tcbErr("SGX TCB info has a tdxModule")
		}
		if j.TDXModuleIdentities != nil {
			return tcbErr("SGX TCB info has tdxModuleIdentities")
		}
		return nil
	}
	if j.TDXModule == nil {
		return tcbErr("TDX TCB info has no tdxModule")
	}
	var jm jsonModule
	if err := json.Unmarshal(j.TDXModule, &jm); err != nil {
		return verr.Wrap("dcap", "TCB info", verr.Malformed, err, "tdxModule is not an object")
	}
	m, err := parseModule(&jm, "tdxModule")
	if err != nil {
		return err
	}
	t.TDXModule = &m
	if j.TDXModuleIdentities == nil {
		return nil
	}
	var ids []jsonModule
	if err := json.Unmarshal(j.TDXModuleIdentities, &ids); err != nil || len(ids) == 0 {
		return tcbErr("tdxModuleIdentities is not a non-empty array of objects")
	}
	if len(ids) > MaxTCBLevels {
		return tcbErr("%d tdxModuleIdentities (cap %d)", len(ids), MaxTCBLevels)
	}
	if err := modulesRequired(j.TDXModuleIdentities); err != nil {
		return err
	}
	t.TDXModuleIdentities = make([]TDXModuleIdentity, 0, len(ids))
	for i := range ids {
		jm := &ids[i]
		m, err := parseModule(jm, "tdxModuleIdentities "+jm.ID)
		if err != nil {
			return err
		}
		levels, err := parseSVNLevels(jm.TCBLevels, "TDX module "+jm.ID, nil)
		if err != nil {
			return err
		}
		// Intel keeps module levels in a std::set ordered by ISVSVN,
		// highest first, and refuses two with the same ISVSVN.
		slices.SortStableFunc(levels, func(a, b SVNLevel) int { return cmp.Compare(b.ISVSVN, a.ISVSVN) })
		for k := 1; k < len(levels); k++ {
			if levels[k].ISVSVN == levels[k-1].ISVSVN {
				return tcbErr("TDX module %s: duplicate TCB levels for ISVSVN %d", jm.ID, levels[k].ISVSVN)
			}
		}
		t.TDXModuleIdentities = append(t.TDXModuleIdentities, TDXModuleIdentity{ID: jm.ID, TDXModule: m, Levels: levels})
	}
	return nil
}

// modulesRequired checks the string fields Intel's parsers require in
// every TDX module identity, whether or not a quote uses it
// (TdxModuleIdentity: id; TdxModuleTcbLevel: tcbStatus): absent or not a
// string makes the TCB info invalid there, so it does here. jsonModule
// reads them as plain strings, which cannot tell absent from empty.
func modulesRequired(raw json.RawMessage) error {
	var ids []struct {
		ID        *string `json:"id"`
		TCBLevels []struct {
			TCBStatus *string `json:"tcbStatus"`
		} `json:"tcbLevels"`
	}
	if err := json.Unmarshal(raw, &ids); err != nil {
		return verr.Wrap("dcap", "TCB info", verr.Malformed, err, "tdxModuleIdentities")
	}
	for i, id := range ids {
		if id.ID == nil {
			return tcbErr("tdxModuleIdentities[%d] has no id", i)
		}
		for k, l := range id.TCBLevels {
			if l.TCBStatus == nil {
				return tcbErr("TDX module %s level %d has no tcbStatus", *id.ID, k)
			}
		}
	}
	return nil
}

// compareLevels is Intel's order of TCB levels (QVL TcbLevel::operator>):
// by SGX component SVNs compared as a byte string, then PCESVN, then, for
// TDX, by TDX component SVNs. It returns a positive number when a comes
// first (is "greater").
func compareLevels(a, b *TCBLevel) int {
	if c := bytes.Compare(a.SGXComponents[:], b.SGXComponents[:]); c != 0 {
		return c
	}
	if a.PCESVN != b.PCESVN {
		return cmp.Compare(a.PCESVN, b.PCESVN)
	}
	if a.TDXComponents != nil && b.TDXComponents != nil {
		return bytes.Compare(a.TDXComponents[:], b.TDXComponents[:])
	}
	return 0
}

// sortLevels puts levels in Intel's order, best first, and refuses two
// levels that order equal: Intel keeps them in a std::set and rejects a
// TCB info whose insertion finds a duplicate.
func sortLevels(levels []TCBLevel) error {
	slices.SortStableFunc(levels, func(a, b TCBLevel) int { return compareLevels(&b, &a) })
	for i := 1; i < len(levels); i++ {
		if compareLevels(&levels[i-1], &levels[i]) == 0 {
			return tcbErr("duplicate TCB levels: two levels with SGX components %v and PCESVN %d", levels[i].SGXComponents, levels[i].PCESVN)
		}
	}
	return nil
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
	// Intel requires tcbDate in v2 levels as in v3 (TcbLevel::parseTcbLevelCommon).
	if l.Date, err = parseTime(jl.TCBDate, "tcbDate"); err != nil {
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

// parseSVNLevels reads QE identity or TDX module levels. statuses, when not
// nil, are the ones allowed; a nil set accepts any string (module levels,
// judged when used).
func parseSVNLevels(in []jsonLevel, what string, statuses map[string]bool) ([]SVNLevel, error) {
	if len(in) == 0 || len(in) > MaxTCBLevels {
		return nil, tcbErr("%s: %d TCB levels (want 1..%d)", what, len(in), MaxTCBLevels)
	}
	out := make([]SVNLevel, 0, len(in))
	for i, jl := range in {
		var jt jsonTCB
		if err := json.Unmarshal(jl.TCB, &jt); err != nil || jt.ISVSVN == nil || *jt.ISVSVN < 0 || *jt.ISVSVN > 0xffff {
			return nil, tcbErr("%s level %d: isvsvn missing or out of range", what, i)
		}
		if statuses != nil && !statuses[jl.TCBStatus] {
			return nil, tcbErr("%s level %d: tcbStatus %q is not one of its statuses", what, i, jl.TCBStatus)
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

// collateralTime is the one date form Intel's parser accepts
// (AttestationCommons isValidTimeString): UTC, whole seconds.
const collateralTime = "2006-01-02T15:04:05Z"

func parseTime(s, what string) (time.Time, error) {
	// time.Parse would also take a fraction after the seconds; Intel's
	// format has none, so the length must be exact.
	if len(s) != len(collateralTime) {
		return time.Time{}, verr.New("dcap", what, verr.Malformed, "%q is not a YYYY-MM-DDTHH:MM:SSZ time", s)
	}
	t, err := time.Parse(collateralTime, s)
	if err != nil {
		return time.Time{}, verr.Wrap("dcap", what, verr.Malformed, err, "%q is not a YYYY-MM-DDTHH:MM:SSZ time", s)
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
