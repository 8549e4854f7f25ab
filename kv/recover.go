package kv

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
)

// Recovery is the operator's explicit acceptance of lost commits, for
// Recover. Both bounds must name exactly the versions the trusted counter
// committed and the host no longer holds, so that an operator never
// accepts more loss than they read in Open's ErrRollback, as far as the
// counter can tell: it keeps the digest of its latest version only, so
// Recover cannot tell the state acknowledged at From-1 from another
// authentic state of that version (a commit the host applied but reported
// as failed, or a fork's). A host holding such a state loses From-1 too
// and brings back what it wrote (TestLimitRecoverCannotTellWhichStateAtTheVersionBefore).
type Recovery struct {
	// From and To are the first and last lost versions, inclusive.
	From, To uint64
	// Log receives the record of the recovery (at warning level); required,
	// so that a recovery is never silent.
	Log *slog.Logger
}

// Recover reopens a store whose trusted counter is ahead of the state the
// host holds (Open fails with ErrRollback): the host lost, or rolled back,
// the commits From..To, and the operator accepts their loss. Recover checks
// that the host's state is authentic and fresh in every other way (policy,
// SVN, store name, every record present), that [From, To] is exactly
// (host state version, counter version] (or [v, v] when the host holds
// another state than the committed one at the counter's version v: a
// commit it applied but reported as failed), logs the loss, and commits the
// host's contents as the version after the counter's, so that the
// counter never moves back and no state the host kept from the lost
// range can be served later. If the host holds no state at all (a wipe),
// From must be 1 and the store starts empty under a new store id.
//
// Recover needs Options.Counter (a fresh in-memory counter is never
// ahead) and ignores Options.Create and Options.MinVersion.
func Recover(ctx context.Context, b Backend, name string, opts Options, r Recovery) (*Store, error) {
	if opts.Counter == nil {
		return nil, errors.New("kv: recover: Options.Counter is required")
	}
	if r.Log == nil {
		return nil, errors.New("kv: recover: Recovery.Log is required")
	}
	opts.MinVersion, opts.Create = 0, false
	s, err := newStore(b, name, opts)
	if err != nil {
		return nil, err
	}
	fail := func(err error) (*Store, error) { return nil, fmt.Errorf("kv: recover %q: %w", name, err) }
	c, err := s.opts.Counter.Read(ctx)
	if err != nil {
		return fail(fmt.Errorf("counter: %w", err))
	}
	raw, ok, err := b.Get(ctx, stateKey(s.loc))
	if err != nil {
		return fail(fmt.Errorf("state: %w", err))
	}
	var st *state
	if ok {
		if st, _, err = s.openState(ctx, raw); err != nil {
			return fail(err)
		}
		if err := s.checkRecords(ctx, st); err != nil {
			return fail(err)
		}
	} else {
		if st, err = s.newState(); err != nil {
			return fail(err)
		}
	}
	// The lost versions are those after the host's state, and the host's
	// own version too if its state is not the one committed at it.
	from := st.version + 1
	switch {
	case ok && st.version == c.Version && sha256.Sum256(raw) != c.Digest:
		from = st.version
	case st.version >= c.Version:
		return fail(fmt.Errorf("the host holds version %d and the counter %d: nothing was lost; use Open", st.version, c.Version))
	}
	if r.From != from || r.To != c.Version {
		return fail(fmt.Errorf("the lost versions are %d to %d, the recovery names %d to %d", from, c.Version, r.From, r.To))
	}
	r.Log.Warn("kv: recovery: accepting the loss of committed versions",
		"store", name, "lost_from", r.From, "lost_to", r.To,
		"host_version", st.version, "host_state_sha256", fmt.Sprintf("%x", sha256.Sum256(raw)),
		"new_version", c.Version+1, "keys", st.keys)
	// Renumber the host's contents as the counter's version; the commit
	// below makes them version counter+1 under the usual contract.
	renum := *st
	renum.version = c.Version
	s.core = newCore(s.loc, &renum, c)
	if err := s.forceCommit(ctx); err != nil {
		return fail(err)
	}
	return s, nil
}
