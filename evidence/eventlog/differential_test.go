package eventlog

import (
	"testing"
	"time"

	"github.com/google/go-tdx-guest/abi"
	tdxrtmr "github.com/google/go-tdx-guest/rtmr"
	"github.com/google/go-tdx-guest/verify"
)

// TestCCELAgainstGoTDXGuest: go-tdx-guest's ParseCcelWithTdQuote (its own
// quote check at a fixed time, then go-eventlog's replay) accepts the
// vector we replay, and refuses it with one digest changed, as we do.
// go-tdx-guest is the differential oracle in tests only (DESIGN.md).
func TestCCELAgainstGoTDXGuest(t *testing.T) {
	v := loadCCEL(t)
	raw, err := readTestdata("cos-113-tdx-quote.dat")
	if err != nil {
		t.Fatal(err)
	}
	quote, err := abi.QuoteToProto(raw)
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2024, 8, 1, 0, 0, 0, 0, time.UTC)
	opts := tdxrtmr.TdxDefaultOpts(make([]byte, 64))
	opts.Verification = &verify.Options{Now: &verify.TimeSet{PckCertChain: at, TcbInfo: at, QeIdentity: at, PckCrl: at, RootCaCrl: at}}
	if _, err := tdxrtmr.ParseCcelWithTdQuote(v.log, v.table, quote, &opts); err != nil {
		t.Fatalf("go-tdx-guest refuses the vector: %v", err)
	}
	events, err := Parse(v.log)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Replay(events, v.rtmr); err != nil {
		t.Fatal(err)
	}
	// The first event's digest (offset 79) changed: both refuse.
	bad := append([]byte(nil), v.log...)
	bad[79] ^= 1
	if _, err := tdxrtmr.ParseCcelWithTdQuote(bad, v.table, quote, &opts); err == nil {
		t.Error("go-tdx-guest accepts a changed digest")
	}
	events, err = Parse(bad)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Replay(events, v.rtmr); err == nil {
		t.Error("a changed digest replays")
	}
}
