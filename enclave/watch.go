package enclave

import (
	"sync"
	"time"

	"github.com/cloister-dev/cloister/host/wire"
)

// watchSlice bounds each sleep on the event page, so a host that never
// rings (hostile or dead) delays the watcher's checks instead of stopping
// them, and stop is noticed.
const watchSlice = 100 * time.Millisecond

// watcher turns the event page into Go channels: one goroutine sleeps on
// the page's global word and wakes the waiters whose handle slot moved.
// Only this goroutine blocks in the kernel, however many connections wait.
type watcher struct {
	ev *wire.Events

	mu      sync.Mutex
	waiters map[*waiter]struct{}
	stopped bool
	done    chan struct{}
}

// waiter waits for handle h's slot to move from seen.
type waiter struct {
	h    uint64
	seen uint32
	ch   chan struct{} // closed when the slot moved
}

func newWatcher(ev *wire.Events) *watcher {
	w := &watcher{ev: ev, waiters: make(map[*waiter]struct{}), done: make(chan struct{})}
	go w.loop()
	return w
}

// seq returns the current sequence of h's slot, to pass to wait after a
// call that would block. Reading it before the call closes the race with a
// notification that arrives between the call and the wait.
// After stop it returns 0 without touching the (unmapped) page.
func (w *watcher) seq(h uint64) uint32 {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.stopped {
		return 0
	}
	return w.ev.Seq(h)
}

// wait returns a channel closed once h's slot differs from seen, and a
// function to stop waiting.
func (w *watcher) wait(h uint64, seen uint32) (<-chan struct{}, func()) {
	wt := &waiter{h: h, seen: seen, ch: make(chan struct{})}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.stopped || w.ev.Seq(h) != seen {
		close(wt.ch)
		return wt.ch, func() {}
	}
	w.waiters[wt] = struct{}{}
	return wt.ch, func() {
		w.mu.Lock()
		delete(w.waiters, wt)
		w.mu.Unlock()
	}
}

func (w *watcher) loop() {
	defer close(w.done)
	for {
		g := w.ev.Global()
		w.mu.Lock()
		if w.stopped {
			w.mu.Unlock()
			return
		}
		for wt := range w.waiters {
			if w.ev.Seq(wt.h) != wt.seen {
				close(wt.ch)
				delete(w.waiters, wt)
			}
		}
		w.mu.Unlock()
		// A notification after g was read changes the word, so the sleep
		// returns at once.
		w.ev.WaitGlobal(g, watchSlice)
	}
}

// stop ends the loop and releases every waiter; it returns once the loop
// no longer touches the page.
func (w *watcher) stop() {
	w.mu.Lock()
	w.stopped = true
	for wt := range w.waiters {
		close(wt.ch)
		delete(w.waiters, wt)
	}
	w.mu.Unlock()
	<-w.done
}
