package evidence

import (
	"context"
	"errors"
	"testing"
	"time"
)

// ccelTime is inside the validity of the cos-113 quote's PCK chain.
var ccelTime = time.Date(2024, 8, 1, 0, 0, 0, 0, time.UTC)

// TestCCELVectorClaims: go-tdx-guest's cos-113 quote verifies (signatures
// and Intel's PCK chain; no collateral is published for it, so its TCB is
// not evaluated) and its CCEL replays against the verified RTMRs; the
// claims list the events, and say that nothing was measured at run time.
func TestCCELVectorClaims(t *testing.T) {
	c, err := Verify(context.Background(), readVector(t, "tdx/ccel/cos-113-tdx-quote.dat"), Options{Time: ccelTime, SkipTCBEvaluation: true})
	if err != nil {
		t.Fatal(err)
	}
	if c.TEE != TEETDX {
		t.Fatalf("tee %q", c.TEE)
	}
	warnings := len(c.Warnings)
	if err := ReplayEventLog(c, [][]byte{readVector(t, "tdx/ccel/ccel_data.dat")}, readVector(t, "tdx/ccel/ccel_table.dat")); err != nil {
		t.Fatal(err)
	}
	el := c.EventLog
	if el == nil || el.Format != EventLogFormat || len(el.Events) != 43 || len(el.AppDigests) != 0 || el.UncoveredEvents != 0 {
		t.Fatalf("event log claims %+v", el)
	}
	per := map[string]int{}
	for _, e := range el.Events {
		per[e.Register]++
	}
	if per["rtmr0"] != 16 || per["rtmr1"] != 7 || per["rtmr2"] != 20 || el.Events[0].Type != "EV_EFI_HANDOFF_TABLES2" {
		t.Errorf("events per register %v, first %q", per, el.Events[0].Type)
	}
	if len(c.Warnings) != warnings+1 {
		t.Errorf("warnings %q: want one saying no app was measured", c.Warnings)
	}
}

// TestReplayEventLogRefuses: a changed RTMR claim fails as BadBinding; the
// table must describe the log; SNP claims have no RTMRs.
func TestReplayEventLogRefuses(t *testing.T) {
	logs := [][]byte{readVector(t, "tdx/ccel/ccel_data.dat")}
	table := readVector(t, "tdx/ccel/ccel_table.dat")
	c, err := Verify(context.Background(), readVector(t, "tdx/ccel/cos-113-tdx-quote.dat"), Options{Time: ccelTime, SkipTCBEvaluation: true})
	if err != nil {
		t.Fatal(err)
	}
	c.RTMR1 = append(HexBytes(nil), c.RTMR1...)
	c.RTMR1[5] ^= 1
	if err := ReplayEventLog(c, logs, table); !isReason(err, BadBinding) {
		t.Errorf("RTMR1 changed: %v, want BadBinding", err)
	}
	if err := ReplayEventLog(c, [][]byte{logs[0][:len(logs[0])-8]}, table); !isReason(err, Malformed) {
		t.Errorf("log shorter than the table says: %v, want Malformed", err)
	}
	if err := ReplayEventLog(&Claims{SNPClaims: &SNPClaims{}}, logs, nil); !isReason(err, Unsupported) {
		t.Errorf("SNP claims: %v, want Unsupported", err)
	}
}

func isReason(err error, r Reason) bool {
	var ve *VerifyError
	return errors.As(err, &ve) && ve.Reason == r
}
