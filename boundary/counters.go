package boundary

import "sync/atomic"

// Counters count what crossed the boundary and every protocol violation
// seen, so a hostile or broken peer is visible in metrics even though each
// violation only fails one call. All counts only grow.
type Counters struct {
	Calls            uint64 // calls completed (client) or served (server), including error responses
	RemoteErrors     uint64 // error responses received (client) or sent (server)
	BadIndex         uint64 // inconsistent head/tail published by the peer
	MalformedFrames  uint64 // frames whose header was inconsistent; ring resynchronised
	Oversize         uint64 // frames beyond the call's declared bound
	UnknownCalls     uint64 // call ids not in the table
	UnknownIDs       uint64 // responses with a correlation id never issued
	DuplicateIDs     uint64 // responses with a correlation id already answered
	CallMismatches   uint64 // responses naming a different call than the request
	StaleResponses   uint64 // late responses to abandoned calls, dropped quietly
	Sleeps           uint64 // futex sleeps (how often spinning was not enough)
	Wakes            uint64 // futex wakes issued to the peer
	Resyncs          uint64 // channels resynchronised after a rejected index
	Cancels          uint64 // cancel frames sent (client) or received (server)
	CancelledReplies uint64 // server: pending replies dropped because the enclave cancelled them
}

// counters is the live, concurrently updated form of Counters.
type counters struct {
	calls, remoteErrors, badIndex, malformed, oversize, unknownCalls,
	unknownIDs, duplicateIDs, callMismatches, stale, sleeps, wakes, resyncs,
	cancels, cancelledReplies atomic.Uint64
}

func (c *counters) snapshot() Counters {
	return Counters{
		Calls:            c.calls.Load(),
		RemoteErrors:     c.remoteErrors.Load(),
		BadIndex:         c.badIndex.Load(),
		MalformedFrames:  c.malformed.Load(),
		Oversize:         c.oversize.Load(),
		UnknownCalls:     c.unknownCalls.Load(),
		UnknownIDs:       c.unknownIDs.Load(),
		DuplicateIDs:     c.duplicateIDs.Load(),
		CallMismatches:   c.callMismatches.Load(),
		StaleResponses:   c.stale.Load(),
		Sleeps:           c.sleeps.Load(),
		Wakes:            c.wakes.Load(),
		Resyncs:          c.resyncs.Load(),
		Cancels:          c.cancels.Load(),
		CancelledReplies: c.cancelledReplies.Load(),
	}
}
