package tsm

import (
	"bytes"
	"context"
	"crypto/sha512"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/cloister-dev/cloister/evidence/eventlog"
)

// DefaultRuntimeLog is where `cloister run` keeps Cloister's RTMR3 event
// log. /run is a tmpfs emptied at boot, exactly when RTMR3 is reset, so
// the log and the register always describe the same boot.
const DefaultRuntimeLog = "/run/cloister/rtmr3.log"

// LockSuffix names the launch lock next to a runtime log (log path +
// suffix, mode 0600): MeasureApp holds an exclusive flock on it.
const LockSuffix = ".lock"

// ErrLogMismatch is returned by MeasureApp when RTMR3 holds extensions the
// log does not: something else extended RTMR3, or the log was lost. A
// verifier could never replay such a register, so nothing is extended.
var ErrLogMismatch = errors.New("tsm: RTMR3 does not match the runtime event log")

// Measured reports what MeasureApp did.
type Measured struct {
	// Digest is the value extended into RTMR3.
	Digest [eventlog.DigestSize]byte
	// RTMR3 is the register's value after the extension, as read back.
	RTMR3 [eventlog.DigestSize]byte
	// Dropped counts events that an earlier launch logged but never
	// extended (it stopped in between); they were removed from the log.
	Dropped int
}

// MeasureApp records app's launch in the runtime log at logPath and
// extends RTMR3 (reg) with its digest, in that order, holding an exclusive
// lock (flock on logPath+LockSuffix, a file only its owner can open)
// throughout, so concurrent launches extend in the order they log:
//
//  1. read the log (created with its header if absent) and RTMR3, and
//     find the prefix of the log's RTMR3 events that replays to RTMR3; if
//     none does, fail with ErrLogMismatch; events after that prefix were
//     logged by a launch that never extended (a crash between steps 2
//     and 3): drop them; a log whose bytes are not exactly this writer's
//     encoding of its events (trailing bytes the parser skips, another
//     writer's header) is refused untouched;
//  2. append the app event in one write (cut back if it fails part way,
//     so no torn record outlives a full /run) and fsync the log;
//  3. extend RTMR3 and read it back: it must be the replay of the log.
//
// Logging first means a crash can only leave a logged event that was not
// extended, which a verifier ignores (eventlog.Replay's prefix rule) and
// the next launch removes; the other order could leave an extension no
// log explains, which no verifier could ever replay until reboot. A killed
// process cannot tear a record (each is one write), and a machine crash
// empties /run and resets RTMR3 together; a log kept elsewhere that
// outlives RTMR3 is cut back to its header the same way (RTMR3 zero
// covers no event).
//
// The lock is waited for until ctx ends (a launch stuck while holding it
// cannot hang the next one forever).
func MeasureApp(ctx context.Context, reg Register, logPath string, app eventlog.App) (*Measured, error) {
	if err := os.MkdirAll(filepath.Dir(logPath), 0o755); err != nil {
		return nil, fmt.Errorf("tsm: runtime log: %w", err)
	}
	// The lock is a file of its own that only its owner may open: flock
	// needs no write access, so a lock on the world-readable log could be
	// held by any user of the TD and would stop every launch.
	lockPath := logPath + LockSuffix
	lf, err := os.OpenFile(lockPath, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("tsm: runtime log lock: %w", err)
	}
	defer lf.Close()
	if err := lf.Chmod(0o600); err != nil {
		return nil, fmt.Errorf("tsm: runtime log lock %s: %w", lockPath, err)
	}
	if err := lockFile(ctx, lf); err != nil {
		return nil, fmt.Errorf("tsm: runtime log: lock %s: %w", lockPath, err)
	}
	defer syscall.Flock(int(lf.Fd()), syscall.LOCK_UN)
	f, err := os.OpenFile(logPath, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("tsm: runtime log: %w", err)
	}
	defer f.Close()

	cur, err := reg.Read()
	if err != nil {
		return nil, err
	}
	raw, err := io.ReadAll(io.LimitReader(f, eventlog.MaxLogSize+1))
	if err != nil {
		return nil, fmt.Errorf("tsm: runtime log: read %s: %w", logPath, err)
	}
	var events []eventlog.Event
	if len(raw) > 0 {
		if events, err = eventlog.Parse(raw); err != nil {
			return nil, fmt.Errorf("tsm: runtime log %s: %w", logPath, err)
		}
	}
	keep, ok := coveredPrefix(events, cur)
	if !ok {
		return nil, fmt.Errorf("%w: RTMR3 (%s) is %x, which no prefix of the %d events in %s gives: RTMR3 was extended outside this log or the log was lost; reboot, or run with --no-runtime-measurement",
			ErrLogMismatch, reg.How(), cur, len(events), logPath)
	}
	m := &Measured{Dropped: len(events) - keep, Digest: app.Digest()}
	// The log must be exactly this writer's encoding of the events it
	// parses to: the parser skips what follows 0xFF "padding", so bytes
	// after the last event would hide the event appended next from every
	// verifier while RTMR3 holds it. The covered prefix is then a prefix of
	// the file's bytes, and one truncate cuts what a stopped launch left.
	end := int64(0)
	if len(raw) > 0 {
		b := eventlog.EncodeHeader()
		for i, e := range events {
			if i == keep {
				end = int64(len(b))
			}
			b = append(b, eventlog.EncodeEvent(e.Register, e.Type, e.Digest, e.Data)...)
		}
		if keep == len(events) {
			end = int64(len(b))
		}
		if !bytes.Equal(raw, b) {
			return nil, fmt.Errorf("tsm: runtime log %s was not written by cloister (its bytes are not the encoding of the %d events it parses to)", logPath, len(events))
		}
		if m.Dropped > 0 {
			if err := f.Truncate(end); err != nil {
				return nil, fmt.Errorf("tsm: runtime log %s: %w", logPath, err)
			}
		}
	}
	rec := eventlog.EncodeAppEvent(app)
	if len(raw) == 0 {
		rec = append(eventlog.EncodeHeader(), rec...)
	}
	// One write; if it fails part way (a full /run), cut the torn bytes so
	// the log still parses for the next launch.
	if _, err := f.WriteAt(rec, end); err != nil {
		if terr := f.Truncate(end); terr != nil {
			return nil, fmt.Errorf("tsm: runtime log %s: append: %w (and cutting the torn record: %w)", logPath, err, terr)
		}
		return nil, fmt.Errorf("tsm: runtime log %s: append: %w", logPath, err)
	}
	if err := f.Sync(); err != nil {
		return nil, fmt.Errorf("tsm: runtime log %s: sync: %w", logPath, err)
	}
	if err := reg.Extend(m.Digest); err != nil {
		return nil, err
	}
	if m.RTMR3, err = reg.Read(); err != nil {
		return nil, err
	}
	if want := sha512.Sum384(append(cur[:], m.Digest[:]...)); m.RTMR3 != want {
		return nil, fmt.Errorf("%w: after extending, RTMR3 (%s) is %x, want %x: another writer extended it at the same time", ErrLogMismatch, reg.How(), m.RTMR3, want)
	}
	return m, nil
}

// coveredPrefix returns how many of events (all RTMR3 in a runtime log)
// replay to cur, and false when no prefix does.
func coveredPrefix(events []eventlog.Event, cur [eventlog.DigestSize]byte) (int, bool) {
	var v [eventlog.DigestSize]byte
	if v == cur {
		return 0, true
	}
	for i, e := range events {
		if e.Register != eventlog.RuntimeRegister {
			return 0, false
		}
		v = sha512.Sum384(append(v[:], e.Digest[:]...))
		if v == cur {
			return i + 1, true
		}
	}
	return 0, false
}

// lockPoll is how often lockFile retries a lock another launch holds.
const lockPoll = 10 * time.Millisecond

// lockFile takes an exclusive flock on f, retrying until ctx ends.
func lockFile(ctx context.Context, f *os.File) error {
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			return err
		}
		t := time.NewTimer(lockPoll)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("another launch holds the lock: %w", ctx.Err())
		case <-t.C:
		}
	}
}
