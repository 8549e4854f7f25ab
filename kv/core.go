package kv

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
)

// core is the freshness and commit logic of one store as a pure state
// machine: no I/O, no goroutines, no clock, no sealing (sealing may call
// the host for keys on the simulator, so it belongs to the driver). Input
// arrives through propose (a set of change groups) and the driver reports
// back with advance (the commit is durable and the counter moved) or abort
// (nothing was sent). It is not safe for concurrent use: Store holds its
// mutex around every call.
type core struct {
	loc     locator
	st      *state // the committed state; never mutated, replaced by advance
	count   Count  // the trusted Count this core knows is committed
	pending *ready // the commit in flight, if any
}

// change is one key's new value, or its deletion.
type change struct {
	name  string
	value []byte
	del   bool
}

// group is the unit that commits atomically: one Put, one Delete, or one
// Update's writes. reads, set by Update only, maps each name the Update read
// to the entry version it saw (0: absent); the group commits only if all
// of them are unchanged.
type group struct {
	changes []change
	reads   map[string]uint64
}

// recordWrite is one record to seal and write: the value of name under
// rid, sealed with recordLabel(store, rid, version).
type recordWrite struct {
	name  string
	rid   rid
	value []byte
}

// ready is the work of one commit, returned by propose.
//
// Ordering contract; the driver MUST, in this order:
//
//  1. seal every write under recordLabel(store, rid, version), give the
//     SHA-256 of each host record to finish, seal every index page finish
//     returns under pageLabel(store, ref), and seal the state under
//     stateLabel(locator, store, version);
//  2. prepare: CompareAndSwap the trusted counter from core.count to the
//     same Count with Next = SHA-256 of the state's host record;
//  3. make all records, pages, deletes and the state durable on the host
//     in ONE atomic batch (storage.commit: one bbolt transaction);
//  4. commit: CompareAndSwap the counter to {version, that digest};
//  5. only then call advance and acknowledge the groups to their callers.
//
// If step 1 fails nothing was sent: call abort. If step 2 fails with a
// conflict, another instance moved the counter (a fork): stop. If step 2,
// 3 or 4 fails otherwise (or its answer is lost) the outcome is unknown:
// stop using the store and reopen it, which recovers from the durable state.
//
// Why prepare: after a crash between 3 and 4 the host holds the state at
// counter+1, and Open must tell the commit this store prepared from any
// other authentic state at that version (a fork's, or one an old release
// of the same signer sealed). Next names it by content. Why host before
// commit: the opposite order would leave the counter ahead of the host
// after such a crash, which is indistinguishable from the host rolling the
// state back. And since step 3 is atomic, a crash leaves all of a commit's
// records and pages or none: nothing is ever half-there.
type ready struct {
	version uint64
	writes  []recordWrite
	deletes []rid
	changes []treeChange // the index changes, sorted by name; sums filled by finish
	touched map[rid]bool // every rid written (true) or deleted (false)
	results []error      // per proposed group: nil or why it was left out
	next    *state
	done    chan struct{} // closed when the commit is resolved (advanced, aborted or failed)
}

// empty reports whether the commit has nothing to write, because every
// group was left out. A forced commit (creation) is never empty.
func (r *ready) empty() bool { return r.next == nil }

// finish records the SHA-256 of each write's host record (sums, in the
// order of writes) in the index, applies the changes to the index, and
// returns the pages to write and delete and the encoded state plaintext.
// It reads the pages on the changed paths from src.
func (r *ready) finish(src pageSource, sums [][32]byte) (*treeCommit, []byte, error) {
	sum := make(map[string][32]byte, len(r.writes))
	for i, w := range r.writes {
		sum[w.name] = sums[i]
	}
	for i := range r.changes {
		if !r.changes[i].del {
			r.changes[i].e.sum = sum[r.changes[i].name]
		}
	}
	tc, err := r.next.index.apply(src, r.changes)
	if err != nil {
		return nil, nil, err
	}
	r.next.index = tc.next
	return tc, encodeState(r.next), nil
}

// newCore returns a core for an opened (or created) state and the trusted
// Count, after checkFresh has accepted the pair.
func newCore(loc locator, st *state, c Count) *core {
	return &core{loc: loc, st: st, count: c}
}

// freshness is what Open must do with the counter after checkFresh
// accepted a state.
type freshness int

const (
	freshOK      freshness = iota // the state is the committed one; no commit in flight
	freshAbandon                  // the state is the committed one; clear the stale Next
	freshCatchUp                  // the state is exactly Next: finish its commit (step 4)
)

// checkFresh decides whether a state authenticated at Open, with version
// v and host-record digest d, is the one the trusted Count c and the
// operator's pin allow.
func checkFresh(v uint64, d [32]byte, c Count, minVersion uint64) (freshness, error) {
	switch {
	case v < minVersion:
		return 0, fmt.Errorf("%w: state version %d, pinned minimum %d", ErrRollback, v, minVersion)
	case v < c.Version:
		return 0, fmt.Errorf("%w: state version %d, trusted counter %d", ErrRollback, v, c.Version)
	case v == c.Version:
		if subtle.ConstantTimeCompare(d[:], c.Digest[:]) != 1 {
			return 0, fmt.Errorf("%w: the state at version %d is not the one committed at that version (Recover from %d to %d accepts its loss)", ErrRollback, v, v, v)
		}
		if c.Next != ([32]byte{}) {
			return freshAbandon, nil
		}
		return freshOK, nil
	case v == c.Version+1:
		if c.Next == ([32]byte{}) || subtle.ConstantTimeCompare(d[:], c.Next[:]) != 1 {
			return 0, fmt.Errorf("%w: state at version %d, one past the trusted counter, is not the commit this store prepared", ErrFork, v)
		}
		return freshCatchUp, nil
	default:
		// Commits move the counter one step at a time and one commit is in
		// flight at most, so this is not a crash: it is the wrong counter,
		// or the counter itself was rolled back.
		return 0, fmt.Errorf("%w: trusted counter %d is behind state version %d by more than one commit", ErrRollback, c.Version, v)
	}
}

// ridFor is the record id of a key name: HMAC-SHA256 under the store's MAC
// key, so the host learns equality of names over time and nothing else.
func ridFor(macKey *[32]byte, name string) rid {
	m := hmac.New(sha256.New, macKey[:])
	m.Write([]byte(name))
	var r rid
	m.Sum(r[:0])
	return r
}

// propose turns groups into the next commit over the committed state st,
// reading the entries that Updates read from the index through src.
// Groups whose reads changed get ErrConflict in results and are left out;
// the rest commit. force makes a commit even with no groups (store
// creation). It does not touch the core: the driver installs the result
// with setPending.
func propose(src pageSource, st *state, groups []group, force bool) (*ready, error) {
	version := st.version + 1
	rd := &ready{version: version, results: make([]error, len(groups)), touched: map[rid]bool{}, done: make(chan struct{})}
	// final holds the last change of each name in this commit.
	type last struct {
		value []byte
		del   bool
	}
	final := map[string]last{}
	// versionOf is the entry version a read sees: this batch's earlier
	// groups first, then the committed index.
	versionOf := func(name string) (uint64, error) {
		if f, ok := final[name]; ok {
			if f.del {
				return 0, nil
			}
			return version, nil
		}
		e, ok, err := st.index.lookup(src, name)
		if err != nil || !ok {
			return 0, err
		}
		return e.version, nil
	}
	applied := 0
	for i, g := range groups {
		conflict := false
		for name, seen := range g.reads {
			v, err := versionOf(name)
			if err != nil {
				return nil, err
			}
			if v != seen {
				conflict = true
				break
			}
		}
		if conflict {
			rd.results[i] = fmt.Errorf("%w: a key it read changed", ErrConflict)
			continue
		}
		for _, ch := range g.changes {
			final[ch.name] = last{value: ch.value, del: ch.del}
		}
		applied++
	}
	if applied == 0 && !force {
		return rd, nil
	}
	keys := st.keys
	for _, name := range sortedKeys(final) {
		f := final[name]
		r := ridFor(&st.macKey, name)
		rd.touched[r] = !f.del
		_, had, err := st.index.lookup(src, name)
		if err != nil {
			return nil, err
		}
		switch {
		case f.del && had:
			keys--
		case !f.del && !had:
			keys++
		}
		rd.changes = append(rd.changes, treeChange{name: name, e: entry{rid: r, version: version}, del: f.del})
		if f.del {
			// Deleting a key that never existed in the committed state
			// still sends a delete: harmless, and keeps the rule simple.
			rd.deletes = append(rd.deletes, r)
			continue
		}
		rd.writes = append(rd.writes, recordWrite{name: name, rid: r, value: f.value})
	}
	next := *st
	next.version, next.keys = version, keys
	rd.next = &next
	return rd, nil
}

// setPending installs rd as the commit in flight. It is an error to do so
// while one is pending.
func (c *core) setPending(rd *ready) error {
	if c.pending != nil {
		return fmt.Errorf("kv: internal: a second commit while one is in flight")
	}
	c.pending = rd
	return nil
}

// advance records that the pending commit is durable and the trusted
// counter holds committed (steps 3 and 4 of the ready contract).
func (c *core) advance(committed Count) {
	if c.pending == nil {
		return
	}
	c.st = c.pending.next
	c.count = committed
	close(c.pending.done)
	c.pending = nil
}

// abort drops the pending commit. Only valid when nothing of it was sent.
func (c *core) abort() { c.resolve() }

// resolve drops the pending commit without advancing: it was aborted, or
// its outcome is unknown and the store stops.
func (c *core) resolve() {
	if c.pending != nil {
		close(c.pending.done)
		c.pending = nil
	}
}

// inFlight returns the done channel of the pending commit if it writes or
// deletes r, else nil. A Get of r waits on it: the host may already hold
// that commit's record, which is not acknowledged until the commit is.
func (c *core) inFlight(r rid) chan struct{} {
	if c.pending == nil {
		return nil
	}
	if _, ok := c.pending.touched[r]; !ok {
		return nil
	}
	return c.pending.done
}

// pendingDone returns the done channel of the pending commit, whatever it
// writes, or nil. A read that failed on the committed tree waits on it:
// the commit deletes the pages its new tree replaced (the old root at
// least) on the host before the store advances, so a page of the
// committed tree the cache no longer holds can vanish under the reader.
func (c *core) pendingDone() chan struct{} {
	if c.pending == nil {
		return nil
	}
	return c.pending.done
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sortStrings(out)
	return out
}
