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

	// maxPageSize caps an index page plaintext; the tree splits pages
	// above it. 4 KiB: 29 leaf items or 41 children with 64-byte names, so
	// 1,000,000 keys make a tree of height 3, and one random Put rewrites
	// about 16 KiB of pages.
	maxPageSize = 4 << 10

	// maxItems caps the items one index page may declare (the least item
	// is an internal one with a 1-byte name).
	maxItems = maxPageSize / (2 + 1 + 32)

	// maxHeight caps the index height the state decoder accepts: far above
	// what 2^64 keys need at the least fan-out.
	maxHeight = 32

	// pageCacheSize caps the verified index pages a Store keeps in memory
	// (a few KiB each decoded): all internal pages of a tree of millions of
	// keys (about 900 at 1,000,000 keys with 64-byte names) and some
	// leaves.
	pageCacheSize = 1 << 13

	// maxCommitBytes caps one commit (records, index pages and state) so it
	// fits one storage.commit call; execute measures it before sending.
	maxCommitBytes = boundary.MaxStorageCommit - 64<<10

	// commitBudget is what one commit may carry in records and index pages
	// besides the state (groupCost); a single Update larger than this is
	// refused with ErrTooLarge.
	commitBudget = maxCommitBytes - 16<<10

	// updateRetries is how often Update retries on ErrConflict.
	updateRetries = 8
)
