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

	// pageCacheSize caps the verified index pages a Store keeps in memory
	// (at most maxPageSize each): the upper levels of a tree of millions
	// of keys and the hot leaves.
	pageCacheSize = 1 << 16

	// maxCommitBytes caps one commit batch (records plus state) so it fits
	// one storage.commit call.
	maxCommitBytes = boundary.MaxStorageCommit - 64<<10

	// commitBudget is what one commit may carry in records and index pages
	// besides the state (groupCost); a single Update larger than this is
	// refused with ErrTooLarge.
	commitBudget = maxCommitBytes - 16<<10

	// updateRetries is how often Update retries on ErrConflict.
	updateRetries = 8
)
