package kv

import "errors"

// The sentinels below are what callers and tests branch on with errors.Is.
// Each names one thing the host did (or a crash left behind) that the store
// detected; every error the store returns for an attack wraps exactly one
// of them, and the message says which record and which versions.
var (
	// ErrNotFound means the key has no value in the store. It is the only
	// "absent" answer: a record the state lists but the host does not serve
	// is ErrMissingRecord, never ErrNotFound.
	ErrNotFound = errors.New("kv: not found")

	// ErrStoreNotFound means Open found no state record for the name and
	// Options.Create was false.
	ErrStoreNotFound = errors.New("kv: store not found")

	// ErrRollback means the host served a whole-store state older than the
	// trusted counter (or Options.MinVersion) says it must be, or another
	// state than the one committed at the counter's version, or a record
	// newer than the state that lists it (the state was rolled back under
	// it), or deleted the state of a store the counter says exists. If the
	// host really lost commits, Recover is the way on.
	ErrRollback = errors.New("kv: rollback detected")

	// ErrReplay means the host served an authentic value of a record other
	// than its current one: an older value, or a value of the current
	// version that the store never acknowledged (a commit the host applied
	// and reported as failed).
	ErrReplay = errors.New("kv: replayed record")

	// ErrSwapped means the host served another record of the same store
	// under a record's id.
	ErrSwapped = errors.New("kv: swapped record")

	// ErrTampered means a record or state does not decode or does not
	// authenticate: bytes were changed, truncated or made up.
	ErrTampered = errors.New("kv: tampered record")

	// ErrMissingRecord means the state lists a record the host does not
	// serve, or the state is missing while records of the store remain.
	ErrMissingRecord = errors.New("kv: missing record")

	// ErrForeignStore means the host served a record or state that belongs
	// to another store.
	ErrForeignStore = errors.New("kv: record of another store")

	// ErrUnseal means the state record exists but cannot be unsealed by
	// this enclave (the wrapped seal error says why, e.g.
	// seal.ErrWrongIdentity or seal.ErrSVNTooHigh). The store is left
	// exactly as it was: never re-created, never truncated.
	ErrUnseal = errors.New("kv: cannot unseal store")

	// ErrConflict means an Update's reads changed before it committed; Update
	// retries a few times before returning it.
	ErrConflict = errors.New("kv: update conflict")

	// ErrCommitUnknown means a commit was sent but its outcome is unknown
	// (the host call or the counter failed). The store refuses further use
	// until it is reopened, which recovers whichever state is durable.
	ErrCommitUnknown = errors.New("kv: commit outcome unknown; reopen the store")

	// ErrFork means the trusted counter shows a history this store did not
	// make: another instance of the store (on a copy of the host's
	// records, sharing the counter) moved it, or the host served a state
	// at one version past the counter that is not the commit this store
	// prepared. The store refuses further use until reopened.
	ErrFork = errors.New("kv: fork detected")

	// ErrDowngrade means the state was sealed by an enclave whose SVN is
	// below Options.MinSVN: an older, possibly vulnerable, release of the
	// same signer wrote it.
	ErrDowngrade = errors.New("kv: state sealed by a lower SVN")

	// ErrClosed means the Store was closed.
	ErrClosed = errors.New("kv: store closed")

	// ErrTooLarge means a key, value or the store's index exceeds the caps
	// in limits.go.
	ErrTooLarge = errors.New("kv: too large")
)
