package wire

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The event page is how the host tells the enclave that a network call
// which answered the would-block status may now succeed. boundary.Handler must not
// block, so the host answers accept, read and write from its own buffers,
// and the enclave needs a doorbell to know when to ask again without
// polling. The page carries notifications only, never data: every byte
// still crosses in the rings.
//
// Layout (one page, a sealed memfd like the region): u32 words; word 0 is
// the global sequence, word i (1..EventSlots-1) the sequence of the handles
// h with Slot(h) == i. To notify handle h the host increments its slot, then
// the global word, then futex-wakes the global word. The enclave's one
// watcher goroutine sleeps on the global word and, on waking, compares the
// slots it was asked to watch with the values seen before the call that
// would have blocked.
//
// The host is hostile here as everywhere: it may wake the enclave for
// nothing (the call is retried and would block again) or never (the
// enclave's waits are bounded in time and re-check). The enclave indexes
// the page only with Slot, computed in its own memory.
const (
	// EventPageSize is the size of the event page.
	EventPageSize = 4096
	// EventSlots is the number of u32 words in the page, the global one
	// included.
	EventSlots = EventPageSize / 4
)

// Slot returns the word index of handle h: never 0 (the global word) and
// always inside the page. Hosts hand out handles below EventSlots, so
// honest handles never share a slot.
func Slot(h uint64) int { return 1 + int(h%(EventSlots-1)) }

// Events is a mapped event page, host or enclave side.
type Events struct {
	mem  []byte
	file *os.File // host side only

	closeOnce sync.Once
}

// CreateEvents makes a new event page (host side): an anonymous memfd,
// sealed against shrinking and growing so the enclave's mapping cannot
// fault, mapped shared.
func CreateEvents() (*Events, error) {
	fd, err := unix.MemfdCreate("cloister-events", unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if err != nil {
		return nil, fmt.Errorf("wire: create events: memfd_create: %w", err)
	}
	f := os.NewFile(uintptr(fd), "cloister-events")
	if err := f.Truncate(EventPageSize); err != nil {
		f.Close()
		return nil, fmt.Errorf("wire: create events: truncate: %w", err)
	}
	if _, err := unix.FcntlInt(f.Fd(), unix.F_ADD_SEALS, unix.F_SEAL_SHRINK|unix.F_SEAL_GROW|unix.F_SEAL_SEAL); err != nil {
		f.Close()
		return nil, fmt.Errorf("wire: create events: seal: %w", err)
	}
	mem, err := unix.Mmap(int(f.Fd()), 0, EventPageSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("wire: create events: mmap: %w", err)
	}
	return &Events{mem: mem, file: f}, nil
}

// AttachEvents maps an event page received from the host (enclave side).
// The file must be a memfd of exactly EventPageSize bytes sealed against
// shrinking, so the host cannot make the mapping fault later. Attach does
// not keep f.
func AttachEvents(f *os.File) (*Events, error) {
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return nil, fmt.Errorf("wire: attach events: fstat: %w", err)
	}
	if st.Size != EventPageSize {
		return nil, fmt.Errorf("wire: attach events: size %d, want %d", st.Size, EventPageSize)
	}
	seals, err := unix.FcntlInt(f.Fd(), unix.F_GET_SEALS, 0)
	if err != nil {
		return nil, fmt.Errorf("wire: attach events: get seals: %w", err)
	}
	if seals&unix.F_SEAL_SHRINK == 0 {
		return nil, errors.New("wire: attach events: memfd not sealed against shrinking")
	}
	mem, err := unix.Mmap(int(f.Fd()), 0, EventPageSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("wire: attach events: mmap: %w", err)
	}
	return &Events{mem: mem}, nil
}

// File returns the page's file on the host side (nil after Attach), to be
// passed to the enclave process. It stays owned by Events.
func (e *Events) File() *os.File { return e.file }

// word returns a pointer to word i; i comes from Slot or is 0.
func (e *Events) word(i int) *uint32 { return (*uint32)(unsafe.Pointer(&e.mem[4*i])) }

// Notify announces that handle h may have changed state (host side).
func (e *Events) Notify(h uint64) {
	atomic.AddUint32(e.word(Slot(h)), 1)
	g := e.word(0)
	atomic.AddUint32(g, 1)
	unix.Syscall6(unix.SYS_FUTEX, uintptr(unsafe.Pointer(g)), futexWake, uintptr(1<<31-1), 0, 0, 0)
}

// Seq returns the current sequence of h's slot.
func (e *Events) Seq(h uint64) uint32 { return atomic.LoadUint32(e.word(Slot(h))) }

// Global returns the global sequence.
func (e *Events) Global() uint32 { return atomic.LoadUint32(e.word(0)) }

// WaitGlobal sleeps while the global sequence is seen, for at most d.
// Spurious returns are fine: callers re-check.
func (e *Events) WaitGlobal(seen uint32, d time.Duration) {
	ts := unix.NsecToTimespec(int64(d))
	unix.Syscall6(unix.SYS_FUTEX, uintptr(unsafe.Pointer(e.word(0))), futexWait, uintptr(seen), uintptr(unsafe.Pointer(&ts)), 0, 0)
}

// Close unmaps the page and closes its file (host side). No Notify, Seq or
// Wait may run afterwards.
func (e *Events) Close() error {
	var err error
	e.closeOnce.Do(func() {
		err = unix.Munmap(e.mem)
		if e.file != nil {
			err = errors.Join(err, e.file.Close())
		}
	})
	if err != nil {
		return fmt.Errorf("wire: close events: %w", err)
	}
	return nil
}

// Futex operations without FUTEX_PRIVATE_FLAG: the word is shared between
// processes.
const (
	futexWait = 0
	futexWake = 1
)
