package evidence

import (
	"errors"
	"fmt"

	"github.com/cloister-dev/cloister/evidence/eventlog"
	"github.com/cloister-dev/cloister/evidence/internal/verr"
)

// EventLogFormat is EventLogClaims.Format: the TCG PC Client crypto-agile
// log (TCG_PCR_EVENT2 records after a "Spec ID Event03" header), the format
// of the firmware's CCEL and of Cloister's runtime log alike.
const EventLogFormat = "tcg2-crypto-agile"

// EventLogClaims are what ReplayEventLog proved: the events that replay to
// the quote's RTMR0-3 and the apps `cloister run` measured into RTMR3.
type EventLogClaims struct {
	// Format is EventLogFormat.
	Format string `json:"format"`
	// Events are the covered events, in log order.
	Events []EventClaim `json:"events"`
	// AppDigests are the app digests (what `cloister measure` prints as
	// MRENCLAVE) of the covered Cloister app events, in launch order.
	// Empty when nothing was measured at run time. Complete only when
	// every covered RTMR3 event is an app launch (Claims.Warnings says
	// when one is not; policy.AppDigests refuses it).
	AppDigests []HexBytes `json:"app_digests"`
	// UncoveredEvents counts RTMR3 events after the ones the quote covers
	// (logged after the quote was taken); they are not listed.
	UncoveredEvents int `json:"uncovered_events,omitempty"`
}

// EventClaim is one replayed event.
type EventClaim struct {
	// Register is "rtmr0".."rtmr3".
	Register string `json:"register"`
	// Type is the TCG event type, e.g. "EV_EFI_ACTION", "EV_EVENT_TAG".
	Type string `json:"type"`
	// Digest is the SHA-384 digest that was extended.
	Digest HexBytes `json:"digest"`
	// App is set for a Cloister app event.
	App *AppClaim `json:"app,omitempty"`
}

// AppClaim is an app launch that `cloister run` measured into RTMR3.
type AppClaim struct {
	// Digest is the app digest: MRENCLAVE as `cloister measure` computes
	// it (binary and signed configuration).
	Digest HexBytes `json:"app_digest"`
	// Signer is MRSIGNER (zero for an unsigned app).
	Signer    HexBytes `json:"app_signer"`
	ProductID uint16   `json:"product_id"`
	SVN       uint16   `json:"svn"`
	Debug     bool     `json:"debug"`
}

// ReplayEventLog replays TCG2 crypto-agile event logs (in order: the
// firmware's CCEL log area, then Cloister's runtime log) against the
// RTMRs of c, claims Verify returned for a TDX quote, and records the
// result in c.EventLog. table, when not nil, is the ACPI CCEL table of the
// first log; it is checked (TDX type, checksum) and must describe that
// log's size. RTMR0-2 must replay exactly and RTMR3 to a prefix of its
// events (see eventlog.Replay); otherwise the error is a VerifyError with
// reason BadBinding. When RTMR3 covers no app launch, c gets a warning: the
// evidence then does not say which app runs.
func ReplayEventLog(c *Claims, logs [][]byte, table []byte) error {
	if c == nil || c.TDXClaims == nil {
		return verr.New("eventlog", "replay", verr.Unsupported, "event logs replay only against TDX evidence (RTMRs); SEV-SNP has no runtime measurement register")
	}
	if len(logs) == 0 {
		return verr.New("eventlog", "replay", verr.Malformed, "no event log given")
	}
	if table != nil {
		t, err := eventlog.ParseTable(table)
		if err != nil {
			return verr.Wrap("eventlog", "CCEL table", verr.Malformed, err, "%v", err)
		}
		if err := t.CheckLog(logs[0]); err != nil {
			return verr.Wrap("eventlog", "CCEL table", verr.Malformed, err, "%v", err)
		}
	}
	events, err := eventlog.Parse(logs...)
	if err != nil {
		return verr.Wrap("eventlog", "parse", verr.Malformed, err, "%v", err)
	}
	var rtmr [eventlog.Registers][eventlog.DigestSize]byte
	for i, r := range []HexBytes{c.RTMR0, c.RTMR1, c.RTMR2, c.RTMR3} {
		if len(r) != eventlog.DigestSize {
			return verr.New("eventlog", "replay", verr.Malformed, "RTMR%d claim is %d bytes", i, len(r))
		}
		rtmr[i] = [eventlog.DigestSize]byte(r)
	}
	res, err := eventlog.Replay(events, rtmr)
	if err != nil {
		r := verr.BadBinding
		if errors.Is(err, eventlog.ErrFormat) {
			r = verr.Malformed
		}
		return verr.Wrap("eventlog", "replay", r, err, "%v", err)
	}
	apps := make(map[int]eventlog.App, len(res.Apps))
	for _, a := range res.Apps {
		apps[a.Seq] = a.App
	}
	el := &EventLogClaims{Format: EventLogFormat, Events: []EventClaim{}, AppDigests: []HexBytes{}, UncoveredEvents: len(res.Uncovered)}
	for _, e := range res.Events {
		ec := EventClaim{Register: fmt.Sprintf("rtmr%d", e.Register), Type: e.TypeName, Digest: HexBytes(e.Digest[:])}
		if a, ok := apps[e.Seq]; ok {
			ec.App = &AppClaim{Digest: HexBytes(a.Measurement[:]), Signer: HexBytes(a.Signer[:]), ProductID: a.ProductID, SVN: a.SVN, Debug: a.Debug}
			el.AppDigests = append(el.AppDigests, ec.App.Digest)
		}
		el.Events = append(el.Events, ec)
	}
	c.EventLog = el
	if len(el.AppDigests) == 0 {
		c.Warnings = append(c.Warnings, "RTMR3 holds no Cloister app launch: nothing was measured at run time "+
			"('cloister run --no-runtime-measurement', or an app not started by 'cloister run'), so the evidence does not say which app runs")
	}
	foreign := 0
	for _, e := range el.Events {
		if e.Register == "rtmr3" && e.App == nil {
			foreign++
		}
	}
	if foreign > 0 {
		c.Warnings = append(c.Warnings, fmt.Sprintf("RTMR3 covers %d event(s) that are not Cloister app launches: their data is not measured, so they may be anything "+
			"(another app, or a launch record the host rewrote); app_digests lists the launches the log proves, not everything that ran", foreign))
	}
	if n := len(res.Uncovered); n > 0 {
		c.Warnings = append(c.Warnings, fmt.Sprintf("%d RTMR3 event(s) at the end of the log are not covered by the quote (logged after it was taken, or a launch that stopped before extending): ignored", n))
	}
	return nil
}
