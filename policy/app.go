package policy

import (
	"encoding/hex"
	"strconv"

	"github.com/cloister-dev/cloister/evidence"
)

// SizeAppDigest is the size of an app digest (MRENCLAVE as `cloister
// measure` computes it), the value `cloister run` records in RTMR3.
const SizeAppDigest = 32

// appraiseApps checks Policy.AppDigests against the replayed event log
// (evidence.ReplayEventLog): RTMR3 must cover at least one app launch, and
// every event the quote covers in RTMR3 must be a Cloister app launch of a
// listed digest. A foreign RTMR3 event (something else measured at run
// time, or an event whose unmeasured type or tag was changed) fails: the
// policy says what the TD may have run, not only that one listed app ran.
//
// An app digest does not name the TD: any TD can extend any value into
// RTMR3, so the policy must pin the TD too (MRTD, and the boot chain
// through the replayed RTMR0-2 events); RequireIdentity therefore does
// not count AppDigests as an identity.
func appraiseApps(c *evidence.Claims, want [][]byte) []*Mismatch {
	if len(want) == 0 {
		return nil
	}
	el := c.EventLog
	switch {
	case c.TDXClaims == nil:
		return []*Mismatch{{Field: "app_digests", Got: notPresent(c, "RTMR3 app launches"), Want: wantList(want)}}
	case el == nil:
		return []*Mismatch{{Field: "app_digests", Got: "nothing (no event log was replayed: pass the runtime log with --event-log)", Want: wantList(want)}}
	case len(el.AppDigests) == 0:
		return []*Mismatch{{Field: "app_digests", Got: "none (RTMR3 covers no app launch)", Want: wantList(want)}}
	}
	var out []*Mismatch
	for i, e := range el.Events {
		if e.Register != "rtmr3" {
			continue
		}
		if e.App == nil {
			out = append(out, &Mismatch{Field: "event_log.events[" + strconv.Itoa(i) + "]", Got: "an RTMR3 " + e.Type + " event that is not a Cloister app launch (digest " + hex.EncodeToString(e.Digest) + ")", Want: "only app launches of " + wantList(want)})
			continue
		}
		if m := anyOf("event_log.events["+strconv.Itoa(i)+"].app.app_digest", e.App.Digest, want); m != nil {
			out = append(out, m)
		}
	}
	return out
}
