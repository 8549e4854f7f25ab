package kv

import (
	"crypto/hmac"
	"crypto/sha256"
	"fmt"
	"maps"
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
	counter uint64 // the trusted counter value this core knows is committed
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

// recordWrite is one record to seal and write: the value under rid, sealed
// with recordLabel(store, rid, version).
type recordWrite struct {
	rid   rid
	value []byte
}

// ready is the work of one commit, returned by propose.
//
// Ordering contract; the driver MUST, in this order:
//
//  1. seal every write under recordLabel(store, rid, version) and state
//     under stateLabel(locator, store, version);
//  2. make all of them and the deletes durable on the host in ONE atomic
//     batch (storage.commit: one bbolt transaction);
//  3. only then move the trusted counter to version;
//  4. only then call advance and acknowledge the groups to their callers.
//
// If step 1 fails nothing was sent: call abort. If step 2 or 3 fails (or
// its answer is lost) the outcome is unknown: stop using the store and
// reopen it, which recovers from the durable state.
//
// Why writes before counter: after a crash between 2 and 3 the host holds
// state version = counter+1, which Open accepts as the commit that was in
// flight (only this enclave can seal a state, so the host cannot make one
// up) and finishes by moving the counter. The opposite order would leave
// counter = state+1 after such a crash, which is indistinguishable from the
// host rolling the state back: a false rollback alarm on every crash at
// that point. And since step 2 is atomic, a crash leaves all of a commit's
// records or none: nothing is ever half-there.
type ready struct {
	version uint64
	writes  []recordWrite
	deletes []rid
	state   []byte       // encoded state plaintext at version
	touched map[rid]bool // every rid written (true) or deleted (false), for Get's in-flight check
	results []error      // per proposed group: nil or why it was left out
	next    *state
}

// empty reports whether the commit has nothing to write, because every
// group was left out. A forced commit (creation) is never empty.
func (r *ready) empty() bool { return r.next == nil }

// newCore returns a core for an opened (or created) state and the trusted
// counter value, after checkFresh has accepted the pair.
func newCore(loc locator, st *state, counter uint64) *core {
	return &core{loc: loc, st: st, counter: counter}
}

// checkFresh decides whether a state authenticated at Open is fresh
// enough, given the trusted counter and the operator's pin. It returns
// whether the counter must first be moved up to the state's version (the
// crash between step 2 and step 3 of the ready contract).
func checkFresh(stateVersion, counter, minVersion uint64) (catchUp bool, err error) {
	switch {
	case stateVersion < minVersion:
		return false, fmt.Errorf("%w: state version %d, pinned minimum %d", ErrRollback, stateVersion, minVersion)
	case stateVersion < counter:
		return false, fmt.Errorf("%w: state version %d, trusted counter %d", ErrRollback, stateVersion, counter)
	case stateVersion == counter:
		return false, nil
	case stateVersion == counter+1:
		return true, nil
	default:
		// Commits move the counter one step at a time and one commit is in
		// flight at most, so this is not a crash: it is the wrong counter,
		// or the counter itself was rolled back.
		return false, fmt.Errorf("%w: trusted counter %d is behind state version %d by more than one commit", ErrRollback, counter, stateVersion)
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

// propose turns groups into the next commit. Groups whose reads changed get
// ErrConflict and groups that would push the index over its cap get
// ErrTooLarge in results; they are left out and the rest commit. force
// makes a commit even with no groups (store creation). It is an error to
// propose while a commit is pending.
func (c *core) propose(groups []group, force bool) (*ready, error) {
	if c.pending != nil {
		return nil, fmt.Errorf("kv: internal: propose with a commit in flight")
	}
	version := c.st.version + 1
	entries := maps.Clone(c.st.entries)
	size := stateFixedSize
	for n := range entries {
		size += ridSize + 8 + 2 + len(n)
	}
	rd := &ready{version: version, results: make([]error, len(groups)), touched: map[rid]bool{}}
	// values holds the last write of each name in this commit; nil value
	// with present=false means deleted.
	type last struct {
		value []byte
		del   bool
	}
	final := map[string]last{}
	applied := 0
	for i, g := range groups {
		conflict := false
		for name, seen := range g.reads {
			if entries[name].version != seen {
				conflict = true
				break
			}
		}
		if conflict {
			rd.results[i] = fmt.Errorf("%w: a key it read changed", ErrConflict)
			continue
		}
		// Apply to a scratch copy so a group that does not fit leaves no trace.
		undo := map[string]*entry{}
		undoFinal := map[string]*last{}
		newSize := size
		for _, ch := range g.changes {
			if _, saved := undo[ch.name]; !saved {
				if e, ok := entries[ch.name]; ok {
					undo[ch.name] = &e
				} else {
					undo[ch.name] = nil
				}
				if f, ok := final[ch.name]; ok {
					undoFinal[ch.name] = &f
				} else {
					undoFinal[ch.name] = nil
				}
			}
			_, had := entries[ch.name]
			if ch.del {
				if had {
					newSize -= ridSize + 8 + 2 + len(ch.name)
				}
				delete(entries, ch.name)
				final[ch.name] = last{del: true}
				continue
			}
			if !had {
				newSize += ridSize + 8 + 2 + len(ch.name)
			}
			entries[ch.name] = entry{rid: ridFor(&c.st.macKey, ch.name), version: version}
			final[ch.name] = last{value: ch.value}
		}
		if newSize > maxStateSize {
			for name, e := range undo {
				if e == nil {
					delete(entries, name)
				} else {
					entries[name] = *e
				}
				if f := undoFinal[name]; f == nil {
					delete(final, name)
				} else {
					final[name] = *f
				}
			}
			rd.results[i] = fmt.Errorf("%w: index would be %d bytes, limit %d", ErrTooLarge, newSize, maxStateSize)
			continue
		}
		size = newSize
		applied++
	}
	if applied == 0 && !force {
		return rd, nil
	}
	for _, name := range sortedKeys(final) {
		f := final[name]
		r := ridFor(&c.st.macKey, name)
		rd.touched[r] = !f.del
		if f.del {
			// Deleting a key that never existed in the committed state
			// still sends a delete: harmless, and keeps the rule simple.
			rd.deletes = append(rd.deletes, r)
			continue
		}
		rd.writes = append(rd.writes, recordWrite{rid: r, value: f.value})
	}
	rd.next = &state{store: c.st.store, macKey: c.st.macKey, version: version, entries: entries, names: mergeNames(c.st.names, entries, final)}
	rd.state = encodeState(rd.next)
	c.pending = rd
	return rd, nil
}

// advance records that the pending commit is durable and the trusted
// counter is at its version (steps 2 and 3 of the ready contract).
func (c *core) advance() {
	if c.pending == nil {
		return
	}
	c.st = c.pending.next
	c.counter = c.pending.version
	c.pending = nil
}

// abort drops the pending commit. Only valid when nothing of it was sent.
func (c *core) abort() { c.pending = nil }

// inFlight reports whether r is written or deleted by the pending commit,
// so that a Get racing it may find the host one commit ahead of the
// committed state: the pending commit's records are authentic and may
// already be durable (step 2 done, step 3 not yet).
func (c *core) inFlight(r rid) (version uint64, written, ok bool) {
	if c.pending == nil {
		return 0, false, false
	}
	w, ok := c.pending.touched[r]
	if !ok {
		return 0, false, false
	}
	return c.pending.version, w, true
}

// mergeNames returns the sorted names of entries, given the sorted names
// before this commit and the names it touched: a merge, O(n + k log k),
// instead of sorting every name on every commit.
func mergeNames[V any](old []string, entries map[string]entry, touched map[string]V) []string {
	changed := sortedKeys(touched)
	out := make([]string, 0, len(entries))
	i, j := 0, 0
	for i < len(old) || j < len(changed) {
		var n string
		switch {
		case j == len(changed) || (i < len(old) && old[i] < changed[j]):
			n = old[i]
			i++
		case i == len(old) || changed[j] < old[i]:
			n = changed[j]
			j++
		default: // equal
			n = old[i]
			i++
			j++
		}
		if _, ok := entries[n]; ok {
			out = append(out, n)
		}
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sortStrings(out)
	return out
}
