package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/cloister-dev/cloister/evidence"
	"github.com/cloister-dev/cloister/policy"
)

// verifyEventLogHelp is the part of 'verify evidence --help' about TDX
// event logs.
const verifyEventLogHelp = `
TDX event logs: --event-log FILE (repeatable) replays TCG2 crypto-agile
event logs, in the order given, against the verified quote's RTMR0-3:
normally the firmware's CCEL log area (/sys/firmware/acpi/tables/data/CCEL)
and then Cloister's runtime log (what 'cloister run' extended into RTMR3,
default /run/cloister/rtmr3.log). --ccel-table FILE
(/sys/firmware/acpi/tables/CCEL) checks the first log against its ACPI
table. RTMR0-2 must replay exactly (a register without events must be
zero) and RTMR3 to a prefix of its events (later launches in the log are
reported, not trusted); otherwise exit 1. The claims then list the events
and the app digests in "event_log". --app-digest HEX (what 'cloister
measure' prints; repeatable, any-of) is a policy flag: every RTMR3 event
the quote covers must be a Cloister launch of a listed app, at least one.
An app digest does not name the TD (any TD can extend RTMR3): pin --mrtd
too.
`

// eventLogFlags are the TDX event-log flags of 'verify evidence'.
type eventLogFlags struct {
	logs       stringList
	table      string
	appDigests hexList
}

func (f *eventLogFlags) register(fs *flag.FlagSet) {
	fs.Var(&f.logs, "event-log", "TDX: TCG2 crypto-agile event log `FILE` to replay against RTMR0-3 (repeatable: the CCEL log area, then Cloister's runtime log)")
	fs.StringVar(&f.table, "ccel-table", "", "TDX: the ACPI CCEL table `FILE` of the first --event-log")
	fs.Var(&f.appDigests, "app-digest", "policy: accepted app digest (`HEX`, 32 bytes, as 'cloister measure' prints; repeatable, any-of); needs --event-log")
}

// check refuses flag combinations that cannot work (usage errors).
func (f *eventLogFlags) check() error {
	if f.table != "" && len(f.logs) == 0 {
		return usagef("--ccel-table needs --event-log (the CCEL log area it describes)")
	}
	if len(f.appDigests) > 0 && len(f.logs) == 0 {
		return usagef("--app-digest needs --event-log: the app is named only by the runtime log replayed against RTMR3")
	}
	return nil
}

// policyGiven reports whether --app-digest (a policy flag) was given.
func (f *eventLogFlags) policyGiven() bool { return len(f.appDigests) > 0 }

// apply adds the flags' policy to p.
func (f *eventLogFlags) apply(p *policy.Policy) { p.AppDigests = f.appDigests }

// replay reads the logs and replays them into c (see evidence.ReplayEventLog).
func (f *eventLogFlags) replay(c *evidence.Claims, file string) error {
	if len(f.logs) == 0 {
		return nil
	}
	logs := make([][]byte, len(f.logs))
	for i, name := range f.logs {
		b, err := os.ReadFile(name)
		if err != nil {
			return fmt.Errorf("reading event log: %w", err)
		}
		logs[i] = b
	}
	var table []byte
	if f.table != "" {
		var err error
		if table, err = os.ReadFile(f.table); err != nil {
			return fmt.Errorf("reading CCEL table: %w", err)
		}
	}
	if err := evidence.ReplayEventLog(c, logs, table); err != nil {
		reason, _ := evidence.ReasonOf(err)
		return fmt.Errorf("%s: event log %s does not replay against the quote: %w [reason: %s]", file, strings.Join(f.logs, ", "), err, reason)
	}
	return nil
}

// writeEventLogReport is the text form of c.EventLog.
func writeEventLogReport(w io.Writer, c *evidence.Claims) {
	el := c.EventLog
	if el == nil {
		return
	}
	per := map[string]int{}
	for _, e := range el.Events {
		per[e.Register]++
	}
	fmt.Fprintf(w, "\nEvent log: %d events replayed (RTMR0 %d, RTMR1 %d, RTMR2 %d, RTMR3 %d)", len(el.Events), per["rtmr0"], per["rtmr1"], per["rtmr2"], per["rtmr3"])
	if el.UncoveredEvents > 0 {
		fmt.Fprintf(w, "; %d later RTMR3 events not covered", el.UncoveredEvents)
	}
	fmt.Fprintln(w)
	for _, e := range el.Events {
		if e.App != nil {
			fmt.Fprintf(w, "App launched: %s (signer %s, product %d, svn %d, debug %v)\n", e.App.Digest, e.App.Signer, e.App.ProductID, e.App.SVN, e.App.Debug)
		}
	}
	if len(el.AppDigests) == 0 {
		fmt.Fprintln(w, "App launched: none measured")
	}
}
