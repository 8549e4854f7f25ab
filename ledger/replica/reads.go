package replica

import (
	"context"
	"fmt"

	"github.com/cloister-dev/cloister/ledger"
)

// The reads below serve this node's applied state: everything applied was
// committed by a quorum first, so none of it can be taken back.

// View is the ledger's view (the service's, the same on every node).
func (r *Replica) View() uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.m.core.View()
}

// Durable is the last seqno this node applied (committed by a quorum).
func (r *Replica) Durable() uint64 { return r.Last().Seqno }

// Status says whether tx is committed with a signature over it (its
// receipt is ready) on this node.
func (r *Replica) Status(tx ledger.TxID) (bool, Served, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	sv := r.servedLocked()
	if _, err := r.m.core.Lookup(tx, sv.At.Seqno); err != nil {
		return false, sv, err
	}
	_, ok := r.m.core.CoveringSignature(tx.Seqno, sv.At.Seqno)
	return ok, sv, nil
}

// Current returns the latest entry of a collection on this node.
func (r *Replica) Current(collection string) (ledger.Record, Served, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	sv := r.servedLocked()
	rec, ok := r.m.core.Latest(collection, sv.At.Seqno)
	if !ok {
		return ledger.Record{}, sv, fmt.Errorf("%w: collection %q has no entry", ledger.ErrNotFound, collection)
	}
	return rec, sv, nil
}

// List returns a collection's entries with seqnos in [from, to] (to 0: up
// to the last applied), at most ledger.MaxPageEntries, and whether more
// follow.
func (r *Replica) List(collection string, from, to uint64) ([]ledger.Record, bool, Served) {
	r.mu.Lock()
	defer r.mu.Unlock()
	sv := r.servedLocked()
	if to == 0 {
		to = sv.At.Seqno
	}
	recs, more := r.m.core.Entries(collection, from, to, sv.At.Seqno, ledger.MaxPageEntries)
	return recs, more, sv
}

// Collections lists the collection ids holding at least one entry.
func (r *Replica) Collections() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.m.core.Collections(r.m.core.Next() - 1)
}

// User returns a user's role on this node, ledger.RoleNone if unknown.
func (r *Replica) User(id string) ledger.Role {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.m.core.User(id)
}

// Counter returns a counter's latest committed version and value (version
// 0 if it never moved). Applied means committed here, so no wait.
func (r *Replica) Counter(_ context.Context, name string) (ledger.Record, error) {
	probe := ledger.Record{Kind: ledger.KindCounter, Name: name, Version: 1}
	if err := probe.Validate(); err != nil {
		return ledger.Record{}, err
	}
	if err := r.stopped(); err != nil {
		return ledger.Record{}, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.m.core.Counter(name), nil
}
