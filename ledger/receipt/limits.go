package receipt

// Caps on hostile input. Real receipts are far below them: ACL receipts are
// about 2 KiB with proofs of a few dozen steps, and one application claim.
const (
	// MaxReceiptSize bounds a receipt document (the GET response or the bare receipt).
	MaxReceiptSize = 1 << 20
	// MaxProofSteps bounds the proof: a tree of 2^64 leaves needs 64 steps.
	MaxProofSteps = 64
	// MaxEndorsements bounds serviceEndorsements (one per service recovery).
	MaxEndorsements = 64
	// MaxCommitEvidence bounds the commit evidence string (CCF's is about 80 bytes).
	MaxCommitEvidence = 1024
	// MaxClaims bounds the application claims list (ACL writes one).
	MaxClaims = 256
	// MaxClaimsSize bounds a claims document; a LedgerEntry claim carries the entry's contents.
	MaxClaimsSize = 32 << 20
)
