package boundary

// All caps of the boundary live here (STYLE.md: one limits file). The enclave
// checks every length that crosses the boundary against these, and against
// the tighter per-call bounds of its Table.
const (
	// MaxFramePayload bounds the payload of any frame, in either direction.
	// Per-call bounds in a Table may only be tighter.
	MaxFramePayload = 1 << 20

	// MaxChannels bounds Config.Channels.
	MaxChannels = 64

	// MinRingSize and MaxRingSize bound each ring's capacity in bytes
	// (a power of two).
	MinRingSize = 4 << 10
	// MaxRingSize: see MinRingSize.
	MaxRingSize = 64 << 20

	// DefaultChannels and DefaultRingSize fill a zero Config. The default ring
	// holds the largest host-service frame (storage put) with room to spare.
	DefaultChannels = 4
	// DefaultRingSize: see DefaultChannels.
	DefaultRingSize = 1 << 20

	// MaxErrorMessage bounds the message of an error response; longer
	// messages are truncated by the server and rejected by the client.
	MaxErrorMessage = 256

	// maxErrorPayload is the size of an error response payload:
	// [u32 code][u32 message length][message].
	maxErrorPayload = 8 + MaxErrorMessage

	// maxAbandoned bounds how many abandoned correlation ids (calls that
	// failed or were cancelled before their response came) a client channel
	// remembers, so late responses to them are dropped quietly. Older ones
	// are forgotten; a response to a forgotten id counts as a duplicate.
	maxAbandoned = 64

	// MaxPendingPerChannel bounds the deferred requests (DeferFunc) of
	// one channel awaiting their replies, and the enclave's calls in flight
	// on one channel (a bitmap of one word: at most 64).
	MaxPendingPerChannel = 64

	// minPromptSlots of each channel's slots are kept from calls that may
	// block (CallSpec.MayBlock), so prompt calls always find one.
	minPromptSlots = 4

	// maxBatchPerChannel bounds how many requests the server takes from one
	// channel per pass, so one busy channel cannot starve the others.
	maxBatchPerChannel = 256
)

// Bounds of the host-service calls declared in calls.go. The network
// chunk bounds one read or write; larger transfers take several calls.
const (
	// MaxNetAddr bounds a network address string ("host:port").
	MaxNetAddr = 256
	// MaxNetChunk bounds the data of one network write call.
	MaxNetChunk = 64 << 10
	// MaxNetReadChunk bounds the data of one network read call (a TLS
	// record's worth). A read is a pending call that may wait long for
	// data, holding response space for its largest answer; a smaller
	// bound lets more reads wait at once.
	MaxNetReadChunk = 16 << 10
	// MaxNetHeldRead bounds the data of a network read the host held
	// until data came (CallSpec.MaxDeferredResponse): the response space
	// an idle connection's read holds is this small, and the enclave's
	// next read takes the rest of what came at once.
	MaxNetHeldRead = 2 << 10
	// MaxStorageKey bounds a storage key.
	MaxStorageKey = 1 << 10
	// MaxStorageValue bounds one sealed storage record.
	MaxStorageValue = 256 << 10
	// MaxStorageList bounds one page of a storage listing.
	MaxStorageList = 64 << 10
	// MaxEvidenceRequest bounds an evidence request (report data, target info).
	MaxEvidenceRequest = 4 << 10
	// MaxEvidence bounds collected evidence (a quote with its certificates).
	MaxEvidence = 64 << 10
)
