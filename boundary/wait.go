package boundary

import (
	"runtime"
	"sync/atomic"
	"time"
)

// Waiting policy: spin by time, then sleep. A side with nothing to do
// first spins re-reading the peer's index (a cross-core round trip costs
// well under a microsecond, far less than a futex sleep and wake), then
// announces that it sleeps and sleeps on the futex word of its wait line.
//
// The spin is bounded by time, not iterations: it reads a clock every
// spinCheck PAUSEs and stops at a budget that follows the recent response
// latency (spinFactor times its moving average, within [spinMin,
// spinMax]). It stops at once, and sleeps, when spinning cannot help:
//   - the waiter was descheduled (two clock reads more than deschedGap
//     apart): on an oversubscribed machine the peer is likely waiting for
//     this very core, and spinning on would fight it (measured before this
//     policy: round trips of 1.5 ms with two CPU burners on 2 cores);
//   - the peer announced it sleeps (the client had to wake the server
//     for its request, so the answer needs a scheduler wake-up, tens of
//     microseconds). The server does not apply this rule to its own idle
//     spin: if both did, one descheduling would latch the pair into a
//     futex wake per message;
//   - another goroutine of the same Client already spins (one spinner per
//     process: more only steal the CPU from the peer).
//
// The models are Go's runtime lock (lock_spinbit.go: one spinner, then
// sleep), io_uring SQPOLL's idle time with NEED_WAKEUP, and DPDK's power
// monitor. Sleeps are bounded by a time slice so cancellation and Close
// are noticed even if the peer (possibly hostile) never wakes it. None of
// these are timing promises.
const (
	spinCheck   = 64                    // PAUSEs between clock reads
	yieldChecks = 4                     // clock reads between runtime.Gosched calls
	spinMin     = 2 * time.Microsecond  // smallest spin budget
	spinMax     = 20 * time.Microsecond // largest spin budget
	spinFactor  = 4                     // budget = spinFactor × average latency
	deschedGap  = 50 * time.Microsecond // a gap this long between clock reads: descheduled
	sleepSlice  = 20 * time.Millisecond // longest single futex sleep
	latencyInit = 2 * time.Microsecond  // initial latency average
)

// clockBase anchors now, a cheap monotonic clock in nanoseconds.
var clockBase = time.Now()

func now() int64 { return int64(time.Since(clockBase)) }

// spinner is the adaptive spin state shared by the waiters of one side
// (one Client, or one Server): the spin token and the latency average.
type spinner struct {
	token   atomic.Bool  // held by the one goroutine spinning
	latency atomic.Int64 // moving average of the wait latency, ns
}

func newSpinner() *spinner {
	s := &spinner{}
	s.latency.Store(int64(latencyInit))
	return s
}

// spinWait is one wait's spinning phase. The zero value spins not at all.
type spinWait struct {
	sp       *spinner
	start    int64
	last     int64
	deadline int64
	n        int
	checks   int
	token    bool // this wait holds sp.token
	over     bool // the spinning phase ended
	slept    bool // the wait slept at least once
}

// begin starts a spinning phase. If peerAsleep (the waker just had to wake
// the peer with a futex), or another waiter spins, it does not spin at all.
func (sp *spinner) begin(peerAsleep bool) spinWait {
	t := now()
	w := spinWait{sp: sp, start: t, last: t}
	if peerAsleep || !sp.token.CompareAndSwap(false, true) {
		w.over = true
		return w
	}
	w.token = true
	budget := min(max(spinFactor*sp.latency.Load(), int64(spinMin)), int64(spinMax))
	w.deadline = t + budget
	return w
}

// spin is one step of the spinning phase; it reports false when the
// caller should move on to sleeping (and then releases the token).
func (w *spinWait) spin() bool {
	if w.over || w.sp == nil {
		return false
	}
	pause()
	w.n++
	if w.n%spinCheck != 0 {
		return true
	}
	t := now()
	gap := t - w.last
	w.last = t
	if t >= w.deadline || gap > int64(deschedGap) {
		w.stop()
		return false
	}
	if w.checks++; w.checks%yieldChecks == 0 {
		// The peer may be a goroutine of this process (tests, in-process
		// hosts); let it run.
		runtime.Gosched()
	}
	return true
}

// stop ends spinning and releases the token.
func (w *spinWait) stop() {
	w.over = true
	if w.token {
		w.token = false
		w.sp.token.Store(false)
	}
}

// restart begins a new spinning phase of the same wait, after a sleep.
func (w *spinWait) restart() {
	if w.sp == nil {
		return
	}
	start := w.start
	w.stop()
	*w = w.sp.begin(false)
	w.start, w.slept = start, true
}

// done records how long the wait took (met during the spin, or too long:
// spinMax) and releases the token. Call it when the condition is met.
func (w *spinWait) done() {
	if w.sp == nil {
		return
	}
	sample := now() - w.start
	if w.over || w.slept {
		sample = int64(spinMax)
	}
	sample = min(sample, int64(spinMax))
	old := w.sp.latency.Load()
	w.sp.latency.Store(old - old/8 + sample/8) // racy by design: an estimate
	w.stop()
}

// waitLine is a wait line in the shared region: a futex word (seq) and a
// flag the sleeper sets before sleeping. Protocol (Dekker-style, relying on
// sync/atomic being sequentially consistent):
//
//	sleeper: s := load(seq); store(flag, v); if ready() {store(flag, 0); return}; futex_wait(seq, s); store(flag, 0)
//	waker:   publish index; if load(flag) >= min { add(seq, 1); futex_wake(seq) }
//
// Either the waker sees the flag, or the sleeper's re-check sees the
// published index; a wake between the sleeper's load of seq and its
// futex_wait changes seq, so futex_wait returns at once.
type waitLine struct {
	seq  *uint32
	flag *uint32
}

func (r *Region) waitLine(off int) waitLine {
	return waitLine{seq: r.u32(off + waitSeq), flag: r.u32(off + waitFlag)}
}

// wake wakes the sleeper if it announced a flag value of at least min, and
// reports whether it did (the peer was asleep). It costs one atomic load
// when nobody sleeps, so it is called after every publish.
func (w waitLine) wake(min uint32, c *counters) bool {
	if atomic.LoadUint32(w.flag) >= min {
		atomic.AddUint32(w.seq, 1)
		futexWakeAll(w.seq)
		c.wakes.Add(1)
		return true
	}
	return false
}

// prepare is the sleeper's first step: it returns the seq to sleep on and
// announces flag value v. The caller must re-check its condition after
// prepare and then call either sleep or cancel.
func (w waitLine) prepare(v uint32) uint32 {
	s := atomic.LoadUint32(w.seq)
	atomic.StoreUint32(w.flag, v)
	return s
}

// sleep blocks until woken, seq changes, or the slice ends, then clears the flag.
func (w waitLine) sleep(s uint32, c *counters) {
	futexSleep(w.seq, s, sleepSlice)
	atomic.StoreUint32(w.flag, waitNone)
	c.sleeps.Add(1)
}

// cancel clears the flag without sleeping (the re-check found work).
func (w waitLine) cancel() { atomic.StoreUint32(w.flag, waitNone) }

// prepareShared, sleepShared and cancelShared are prepare, sleep and
// cancel for a wait line several goroutines may sleep on at once (a
// client channel: its reader, and callers waiting for request space): the
// flag counts the sleepers instead of being set and cleared, so one
// sleeper waking does not hide another from the waker. The waker's test
// (flag >= 1) is unchanged. A host that overwrites the flag only changes
// how often it wakes the enclave, whose sleeps are bounded anyway.
func (w waitLine) prepareShared() uint32 {
	s := atomic.LoadUint32(w.seq)
	atomic.AddUint32(w.flag, 1)
	return s
}

// sleepShared: see prepareShared.
func (w waitLine) sleepShared(s uint32, c *counters) {
	futexSleep(w.seq, s, sleepSlice)
	atomic.AddUint32(w.flag, ^uint32(0))
	c.sleeps.Add(1)
}

// cancelShared: see prepareShared.
func (w waitLine) cancelShared() { atomic.AddUint32(w.flag, ^uint32(0)) }
