package kv

import "github.com/cloister-dev/cloister/boundary"

// All caps of the package live here.
const (
	// MaxKeySize caps a key name. Names live in the sealed index, so the
	// cap also bounds the index.
	MaxKeySize = 512

	// MaxValueSize caps one value so its sealed record (header, seal
	// header, GCM tag) fits one host record.
	MaxValueSize = boundary.MaxStorageValue - recordHeaderSize - 256

	// maxStateSize caps the encoded state (the index of every key); it must
	// fit one host record once sealed. This is the store's size limit: the
	// index is one record, rewritten on every commit (see doc.go).
	maxStateSize = boundary.MaxStorageValue - stateHeaderSize - 256

	// maxEntries caps the number of keys the state decoder accepts.
	maxEntries = maxStateSize / (ridSize + 8 + 32 + 2 + 1)

	// maxCommitBytes caps one commit batch (records plus state) so it fits
	// one storage.commit call.
	maxCommitBytes = boundary.MaxStorageCommit - 64<<10

	// commitBudget is what one commit may carry in records besides the
	// state; a single Update larger than this is refused with ErrTooLarge.
	commitBudget = maxCommitBytes - maxStateSize

	// updateRetries is how often Update retries on ErrConflict.
	updateRetries = 8
)
