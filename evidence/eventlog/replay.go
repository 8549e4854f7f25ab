package eventlog

import (
	"bytes"
	"crypto/sha512"
	"errors"
	"fmt"

	"github.com/google/go-eventlog/register"
	"github.com/google/go-eventlog/tcg"
)

// Event is one measurement event read from a log. Nothing in it is
// trustworthy until Replay has matched it against verified registers.
type Event struct {
	// Seq is the event's position among the measurement events of all the
	// logs given to Parse, from 0, in order.
	Seq int
	// Log is the index of the log it came from (the argument order).
	Log int
	// Register is the RTMR it was extended into (0..3).
	Register int
	// Type is the TCG event type; TypeName its TCG spelling.
	Type     uint32
	TypeName string
	// Digest is the SHA-384 digest that was extended.
	Digest [DigestSize]byte
	// Data is the event data (the description of what was measured).
	Data []byte
}

// Parse reads one or more TCG2 crypto-agile event logs, in order, with
// go-eventlog's parser: typically the firmware's CCEL log area then
// Cloister's runtime log. Each must start with a "Spec ID Event03" header
// that lists SHA-384; a log area's trailing padding (0xFF after the last
// event, as TDVF leaves it) ends a log. EV_NO_ACTION events extend nothing
// and are dropped; every other event must name an RTMR (CC MR index 1..4)
// and carry a SHA-384 digest.
func Parse(logs ...[]byte) ([]Event, error) {
	var out []Event
	for i, raw := range logs {
		if len(raw) == 0 {
			return nil, fmt.Errorf("%w: log %d is empty", ErrFormat, i)
		}
		if len(raw) > MaxLogSize {
			return nil, fmt.Errorf("%w: log %d is %d bytes, more than the %d allowed", ErrFormat, i, len(raw), MaxLogSize)
		}
		el, err := parseTCG(raw)
		if err != nil {
			return nil, fmt.Errorf("%w: log %d: %w", ErrFormat, i, err)
		}
		hasSHA384 := false
		for _, a := range el.Algs {
			hasSHA384 = hasSHA384 || a == register.HashSHA384
		}
		if !hasSHA384 {
			return nil, fmt.Errorf("%w: log %d: not a crypto-agile log with SHA-384 digests (algorithms %v)", ErrFormat, i, el.Algs)
		}
		for n, e := range el.Events(register.HashSHA384) {
			if uint32(e.Type) == evNoAction {
				continue
			}
			if len(out) == MaxEvents {
				return nil, fmt.Errorf("%w: more than %d events", ErrFormat, MaxEvents)
			}
			if e.Index < 1 || e.Index > Registers {
				return nil, fmt.Errorf("%w: log %d event %d: measurement register index %d is not an RTMR (CC MR index 1..4)", ErrFormat, i, n, e.Index)
			}
			if len(e.Digest) != DigestSize {
				return nil, fmt.Errorf("%w: log %d event %d: no SHA-384 digest", ErrFormat, i, n)
			}
			out = append(out, Event{
				Seq: len(out), Log: i, Register: e.Index - 1,
				Type: uint32(e.Type), TypeName: e.Type.TCGString(),
				Digest: [DigestSize]byte(e.Digest), Data: bytes.Clone(e.Data),
			})
		}
	}
	return out, nil
}

// parseTCG runs go-eventlog's parser, turning a panic on hostile input
// into an error: no panic crosses this package's line.
func parseTCG(raw []byte) (el *tcg.EventLog, err error) {
	defer func() {
		if r := recover(); r != nil {
			el, err = nil, fmt.Errorf("event log parser failed: %v", r)
		}
	}()
	return tcg.ParseEventLog(raw, tcg.ParseOpts{AllowPadding: true})
}

// ErrReplay is wrapped by every *ReplayError.
var ErrReplay = errors.New("eventlog: replay does not match the quote")

// ReplayError says which register did not replay to the quote's value.
type ReplayError struct {
	// Register is the RTMR (0..3).
	Register int
	// Events is how many events the logs hold for it.
	Events int
	// Replayed is the value the events give (for RTMR3, after all of
	// them); Quoted is the quote's.
	Replayed, Quoted [DigestSize]byte
}

func (e *ReplayError) Error() string {
	if e.Register == RuntimeRegister {
		return fmt.Sprintf("eventlog: RTMR3: no prefix of its %d events replays to the quote's %x (all of them give %x): an event was changed, dropped or reordered, or RTMR3 was extended outside this log",
			e.Events, e.Quoted, e.Replayed)
	}
	return fmt.Sprintf("eventlog: RTMR%d: its %d events replay to %x, the quote has %x", e.Register, e.Events, e.Replayed, e.Quoted)
}

// Unwrap makes errors.Is(err, ErrReplay) true.
func (e *ReplayError) Unwrap() error { return ErrReplay }

// ErrAppDigest is returned when a Cloister app event's digest is not the
// SHA-384 of its data: its record is not what was extended.
var ErrAppDigest = errors.New("eventlog: app event digest is not SHA-384 of its data")

// AppEvent is a replayed Cloister app launch.
type AppEvent struct {
	// Seq is the event's Seq.
	Seq int
	App App
}

// Result is what a successful Replay proved.
type Result struct {
	// Events are the events the quote covers, in log order.
	Events []Event
	// Apps are the covered Cloister app launches, in order.
	Apps []AppEvent
	// Uncovered are RTMR3 events after the prefix the quote covers:
	// written to the log after the quote was taken (or by a launch that
	// stopped between logging and extending). They prove nothing.
	Uncovered []Event
}

// Replay replays events into RTMR0-3 from zero and compares them with
// rtmr, the registers of a verified quote. RTMR0-2 must match exactly
// (with no events a register must be zero: go-eventlog's own replay would
// accept any value there). RTMR3 must equal the replay of a prefix of its
// events: Cloister's runtime log only grows, so a log read after the quote
// may hold later launches, which are returned as Uncovered. Changing,
// dropping or reordering a covered event always fails. Every covered
// Cloister app event must carry SHA-384 of its own data as its digest.
func Replay(events []Event, rtmr [Registers][DigestSize]byte) (*Result, error) {
	var byReg [Registers][]Event
	for _, e := range events {
		byReg[e.Register] = append(byReg[e.Register], e)
	}
	res := &Result{}
	covered := make(map[int]bool, len(events))
	for r := range Registers {
		var v [DigestSize]byte
		n := -1 // events covered; -1: none matched yet
		if v == rtmr[r] {
			n = 0
		}
		for i, e := range byReg[r] {
			v = sha512.Sum384(append(v[:], e.Digest[:]...))
			if r == RuntimeRegister && n < 0 && v == rtmr[r] {
				n = i + 1
			}
		}
		if r != RuntimeRegister {
			if v != rtmr[r] {
				return nil, &ReplayError{Register: r, Events: len(byReg[r]), Replayed: v, Quoted: rtmr[r]}
			}
			n = len(byReg[r])
		}
		if n < 0 {
			return nil, &ReplayError{Register: r, Events: len(byReg[r]), Replayed: v, Quoted: rtmr[r]}
		}
		for _, e := range byReg[r][:n] {
			covered[e.Seq] = true
		}
		res.Uncovered = append(res.Uncovered, byReg[r][n:]...)
	}
	for _, e := range events {
		if !covered[e.Seq] {
			continue
		}
		res.Events = append(res.Events, e)
		if e.Register != RuntimeRegister {
			continue
		}
		if e.Type != evEventTag {
			// The type is not measured: an app record that is what was
			// extended, under another type, is an app launch relabelled
			// to drop out of Apps. No honest writer does that.
			if a, ok, err := ParseAppEvent(e.Data); err == nil && ok && sha512.Sum384(e.Data) == e.Digest {
				return nil, fmt.Errorf("%w: event %d: the app event of %x is labelled %s, not EV_EVENT_TAG (the event type is not measured: it was changed)",
					ErrFormat, e.Seq, a.Measurement, e.TypeName)
			}
			continue
		}
		a, ok, err := ParseAppEvent(e.Data)
		if err != nil {
			return nil, fmt.Errorf("event %d: %w", e.Seq, err)
		}
		if !ok {
			continue
		}
		if sha512.Sum384(e.Data) != e.Digest {
			return nil, fmt.Errorf("%w: event %d", ErrAppDigest, e.Seq)
		}
		res.Apps = append(res.Apps, AppEvent{Seq: e.Seq, App: a})
	}
	return res, nil
}
