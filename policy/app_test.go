package policy

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/cloister-dev/cloister/evidence"
)

func appClaims(events ...evidence.EventClaim) *evidence.Claims {
	c := &evidence.Claims{TEE: evidence.TEETDX, TCBStatus: evidence.StatusUpToDate, TDXClaims: &evidence.TDXClaims{MRTD: bytes.Repeat([]byte{1}, 48)}}
	el := &evidence.EventLogClaims{Format: evidence.EventLogFormat, Events: events, AppDigests: []evidence.HexBytes{}}
	for _, e := range events {
		if e.App != nil {
			el.AppDigests = append(el.AppDigests, e.App.Digest)
		}
	}
	c.EventLog = el
	return c
}

func appEvent(b byte) evidence.EventClaim {
	return evidence.EventClaim{Register: "rtmr3", Type: "EV_EVENT_TAG", Digest: bytes.Repeat([]byte{b}, 48),
		App: &evidence.AppClaim{Digest: bytes.Repeat([]byte{b}, 32), Signer: make([]byte, 32)}}
}

func TestAppDigests(t *testing.T) {
	d1, d2 := bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{2}, 32)
	fw := evidence.EventClaim{Register: "rtmr1", Type: "EV_EFI_ACTION", Digest: make([]byte, 48)}
	foreign := evidence.EventClaim{Register: "rtmr3", Type: "EV_EVENT_TAG", Digest: make([]byte, 48)}
	noLog := appClaims()
	noLog.EventLog = nil
	snp := &evidence.Claims{TEE: evidence.TEESNP, TCBStatus: evidence.StatusNotEvaluated, SNPClaims: &evidence.SNPClaims{}}
	for _, tc := range []struct {
		name string
		c    *evidence.Claims
		want [][]byte
		ok   bool
	}{
		{"one listed app", appClaims(fw, appEvent(1)), [][]byte{d1}, true},
		{"two listed apps", appClaims(fw, appEvent(1), appEvent(2)), [][]byte{d2, d1}, true},
		{"unlisted app", appClaims(fw, appEvent(2)), [][]byte{d1}, false},
		{"one listed, one not", appClaims(appEvent(1), appEvent(2)), [][]byte{d1}, false},
		{"foreign RTMR3 event", appClaims(appEvent(1), foreign), [][]byte{d1}, false},
		{"no app launch", appClaims(fw), [][]byte{d1}, false},
		{"no event log", noLog, [][]byte{d1}, false},
		{"SNP evidence", snp, [][]byte{d1}, false},
	} {
		err := Appraise(tc.c, Policy{AppDigests: tc.want, AnyIdentity: true})
		var m *Mismatch
		if tc.ok != (err == nil) || (err != nil && (!errors.As(err, &m) || !(strings.HasPrefix(m.Field, "app_digests") || strings.HasPrefix(m.Field, "event_log")))) {
			t.Errorf("%s: %v", tc.name, err)
		}
	}
	// An app digest is not an identity: the TD must be pinned too.
	if err := (Policy{AppDigests: [][]byte{d1}}).RequireIdentity(); !errors.Is(err, ErrNoIdentity) {
		t.Errorf("AppDigests alone: %v, want ErrNoIdentity", err)
	}
	if err := (Policy{AppDigests: [][]byte{d1[:31]}}).Validate(); err == nil {
		t.Error("a 31-byte app digest validates")
	}
}
