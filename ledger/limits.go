package ledger

// Caps on what the ledger accepts and decodes. A segment must fit one host
// storage record (boundary.MaxStorageValue, 256 KiB) with its header and
// tag, so an entry is capped well below it and a batch is cut at
// MaxSegmentPlaintext.
const (
	// MaxContents is the largest entry contents, in bytes.
	MaxContents = 64 << 10
	// MaxCollectionID is the longest collection id.
	MaxCollectionID = 256
	// MaxUserID is the longest user id (an uppercase colon-hex SHA-256 is 95).
	MaxUserID = 256
	// MaxCounterName is the longest counter name.
	MaxCounterName = 256
	// MaxCounterValue is the largest counter value.
	MaxCounterValue = 1 << 10
	// MaxSignature is the largest DER ECDSA signature kept (P-384's is at
	// most 104 bytes).
	MaxSignature = 256
	// MaxSegmentPlaintext caps a segment's decrypted size.
	MaxSegmentPlaintext = 240 << 10
	// MaxSegments caps the number of segments read at startup (2^32 random
	// 96-bit GCM nonces under one key stay within NIST's bound).
	MaxSegments = 1 << 32
	// MaxPageEntries is how many entries one list page holds.
	MaxPageEntries = 100
)
