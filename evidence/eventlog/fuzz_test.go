package eventlog

import (
	"bytes"
	"crypto/sha512"
	"errors"
	"testing"
)

// FuzzParse: the event-log entry point (Parse, then Replay) never panics
// and fails only with its named errors. Seeds: the real CCEL (its events,
// then padding, as a trimmed log area) and a runtime log.
func FuzzParse(f *testing.F) {
	v := loadCCEL(f)
	trimmed := append(bytes.TrimRight(v.log, "\xff"), bytes.Repeat([]byte{0xff}, 8)...)
	rt, _ := runtimeLog(testApp(1), testApp(2))
	f.Add(trimmed, rt)
	f.Add(rt, []byte(nil))
	f.Add(v.table, rt)
	f.Fuzz(func(t *testing.T, a, b []byte) {
		logs := [][]byte{a}
		if len(b) > 0 {
			logs = append(logs, b)
		}
		events, err := Parse(logs...)
		if err != nil {
			if !errors.Is(err, ErrFormat) {
				t.Fatalf("unnamed error: %v", err)
			}
			return
		}
		// Replay against the registers the events give, then zero.
		var rtmr [Registers][DigestSize]byte
		for _, e := range events {
			rtmr[e.Register] = sha512.Sum384(append(rtmr[e.Register][:], e.Digest[:]...))
		}
		for _, regs := range [][Registers][DigestSize]byte{rtmr, {}} {
			res, err := Replay(events, regs)
			if err != nil {
				if !errors.Is(err, ErrReplay) && !errors.Is(err, ErrFormat) && !errors.Is(err, ErrAppDigest) {
					t.Fatalf("unnamed error: %v", err)
				}
				continue
			}
			if len(res.Events)+len(res.Uncovered) != len(events) {
				t.Fatalf("%d covered + %d uncovered != %d events", len(res.Events), len(res.Uncovered), len(events))
			}
		}
		_, _ = ParseTable(a)
		_, _, _ = ParseAppEvent(a)
	})
}
