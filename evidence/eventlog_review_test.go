package evidence

import (
	"crypto/sha512"
	"encoding/binary"
	"errors"
	"strings"
	"testing"

	"github.com/cloister-dev/cloister/evidence/eventlog"
)

// runtimeClaims are TDX claims whose RTMR0-2 are zero and whose RTMR3 is
// the extension of digests, as a quote of a TD that ran them would say.
func runtimeClaims(digests ...[eventlog.DigestSize]byte) *Claims {
	var v [eventlog.DigestSize]byte
	for _, d := range digests {
		v = sha512.Sum384(append(v[:], d[:]...))
	}
	z := make(HexBytes, eventlog.DigestSize)
	return &Claims{TEE: TEETDX, TDXClaims: &TDXClaims{RTMR0: z, RTMR1: z, RTMR2: z, RTMR3: HexBytes(v[:])}}
}

func reviewApp(b byte) eventlog.App {
	var a eventlog.App
	a.Measurement[0], a.SVN = b, uint16(b)
	return a
}

// TestAppHiddenByEventType: the TCG event type is not measured. A TD ran
// app M, then app B; the host relabels M's event as EV_IPL (type 0x0D).
// The register still replays, so app_digests must not quietly read [B]:
// a Cloister app record whose digest is SHA-384 of its data under another
// type is refused as malformed.
func TestAppHiddenByEventType(t *testing.T) {
	m, b := reviewApp(1), reviewApp(2)
	log := eventlog.EncodeHeader()
	ev := eventlog.EncodeAppEvent(m)
	binary.LittleEndian.PutUint32(ev[4:], 0x0D) // EV_IPL
	log = append(log, ev...)
	log = append(log, eventlog.EncodeAppEvent(b)...)
	c := runtimeClaims(m.Digest(), b.Digest())
	err := ReplayEventLog(c, [][]byte{log}, nil)
	if !isReason(err, Malformed) || !errors.Is(err, eventlog.ErrFormat) {
		t.Fatalf("relabelled app event: %v (claims %+v), want Malformed", err, c.EventLog)
	}
}

// TestForeignRTMR3EventWarns: an RTMR3 event that is not a provable
// Cloister launch (its data is not measured: it may be an app record the
// host rewrote) makes app_digests incomplete, and the claims say so.
func TestForeignRTMR3EventWarns(t *testing.T) {
	b := reviewApp(2)
	foreign := sha512.Sum384([]byte("something else ran"))
	log := eventlog.EncodeHeader()
	log = append(log, eventlog.EncodeEvent(3, 0x0D, foreign, []byte("not the measured bytes"))...)
	log = append(log, eventlog.EncodeAppEvent(b)...)
	c := runtimeClaims(foreign, b.Digest())
	if err := ReplayEventLog(c, [][]byte{log}, nil); err != nil {
		t.Fatal(err)
	}
	if len(c.EventLog.AppDigests) != 1 {
		t.Fatalf("app_digests %v", c.EventLog.AppDigests)
	}
	found := false
	for _, w := range c.Warnings {
		found = found || strings.Contains(w, "not Cloister app launches")
	}
	if !found {
		t.Fatalf("warnings %q: none says app_digests is incomplete", c.Warnings)
	}
	// Only app launches: no such warning.
	c = runtimeClaims(b.Digest())
	if err := ReplayEventLog(c, [][]byte{append(eventlog.EncodeHeader(), eventlog.EncodeAppEvent(b)...)}, nil); err != nil {
		t.Fatal(err)
	}
	if len(c.Warnings) != 0 {
		t.Fatalf("warnings %q for a log of app launches only", c.Warnings)
	}
}
