package ledger

import "errors"

// Sentinel errors callers branch on. Each is wrapped with what was wrong
// and where.
var (
	// ErrBadTxID: a transaction id is not "view.seqno".
	ErrBadTxID = errors.New("ledger: bad transaction id")
	// ErrNotFound: no such transaction, entry, user or counter.
	ErrNotFound = errors.New("ledger: not found")
	// ErrInvalid: an entry, user or counter request is malformed or too large.
	ErrInvalid = errors.New("ledger: invalid request")
	// ErrCounterConflict: a compare-and-increment did not find the expected
	// counter version.
	ErrCounterConflict = errors.New("ledger: counter conflict")
	// ErrStopped: the node stopped (closed, or a storage write failed and
	// it fails closed until restarted from storage).
	ErrStopped = errors.New("ledger: node stopped")

	// ErrSegmentTorn: a stored segment is shorter than its header and tag
	// or has the wrong magic.
	ErrSegmentTorn = errors.New("ledger: storage: torn segment")
	// ErrSegmentAuth: a stored segment does not authenticate at its
	// position: edited, or moved or replayed from another position.
	ErrSegmentAuth = errors.New("ledger: storage: segment does not authenticate")
	// ErrSegmentGap: a segment number is missing between the first and the
	// last (dropped by the host).
	ErrSegmentGap = errors.New("ledger: storage: segment missing")
	// ErrSegmentChain: a segment does not continue the hash chain of the one
	// before it (a segment from another history, e.g. after a rollback).
	ErrSegmentChain = errors.New("ledger: storage: segment chain broken")
	// ErrSegmentFormat: an authenticated segment does not decode or does not
	// continue the ledger (a bug or a key compromise, never a crash).
	ErrSegmentFormat = errors.New("ledger: storage: bad segment contents")
	// ErrKeys: the sealed key record is missing while segments exist, or
	// does not open.
	ErrKeys = errors.New("ledger: storage: key record")
)
