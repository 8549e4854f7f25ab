package boundary

import (
	"runtime"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// Waiting policy. A side with nothing to do first spins re-reading the
// peer's index (a cross-core round trip costs well under a microsecond, far
// less than a futex sleep and wake), yielding now and then: to other
// goroutines (the peer may be one) and, less often, to other threads with
// sched_yield (on an oversubscribed machine the peer may be a thread waiting
// for this core; without it, measured round trips under load degraded from
// about 1 µs to 50-100 µs as both sides fell through to futex sleeps). Then
// it announces that it sleeps and sleeps on the futex word of its wait
// line. Sleeps are bounded by a time slice so cancellation and Close are
// noticed even if the peer (possibly hostile) never wakes it. These are not
// timing promises.
const (
	spinIters    = 2000
	goschedEvery = 64
	yieldEvery   = 256
	sleepSlice   = 20 * time.Millisecond
)

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

// wake wakes the sleeper if it announced a flag value of at least min. It
// costs one atomic load when nobody sleeps, so it is called after every
// publish.
func (w waitLine) wake(min uint32, c *counters) {
	if atomic.LoadUint32(w.flag) >= min {
		atomic.AddUint32(w.seq, 1)
		futexWakeAll(w.seq)
		c.wakes.Add(1)
	}
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

// spin is one step of the spinning phase; it reports false when the caller
// should move on to sleeping. i counts the steps of the current wait.
//
// The limit is fixed: an adaptive limit (shorter after sleeps) was tried
// and, on a shared 2-core machine, made latency worse more often than it
// saved CPU.
func spin(i int) bool {
	if i >= spinIters {
		return false
	}
	switch {
	case i%yieldEvery == yieldEvery-1:
		// Let the kernel run another thread here: on an oversubscribed
		// machine that is often the peer we are waiting for. RawSyscall:
		// sched_yield does not block, so the Go scheduler need not know.
		unix.RawSyscall(unix.SYS_SCHED_YIELD, 0, 0, 0)
	case i%goschedEvery == goschedEvery-1:
		runtime.Gosched()
	}
	return true
}
