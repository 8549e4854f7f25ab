package boundary

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Config is the geometry of a shared region. The host passes it to Create;
// the enclave passes the Config it expects to Attach, which fixes every
// offset from it in enclave memory and only checks the region's header
// against it. Zero fields take the defaults from limits.go.
type Config struct {
	// Channels is the number of channels (request ring + response ring
	// pairs). Each client goroutine holds one channel for the duration of a
	// call, so this is the number of calls that proceed without waiting for
	// each other. Default DefaultChannels.
	Channels int
	// RequestRingSize and ResponseRingSize are each ring's capacity in
	// bytes: a power of two in [MinRingSize, MaxRingSize]. Default
	// DefaultRingSize. A ring must hold the largest frame of every call in
	// the Table used with it (checked by NewClient and NewServer).
	RequestRingSize int
	// ResponseRingSize: see RequestRingSize.
	ResponseRingSize int
	// Path, for Create only: create the region as a new file at Path (for
	// example under /dev/shm, for Gramine's untrusted_shm) instead of an
	// anonymous memfd. The file must not exist. Unlike a memfd, such a file
	// cannot be sealed against shrinking; see Attach.
	Path string
}

// validate fills defaults and checks ranges once, at the entry point.
func (c Config) validate() (Config, error) {
	if c.Channels == 0 {
		c.Channels = DefaultChannels
	}
	if c.RequestRingSize == 0 {
		c.RequestRingSize = DefaultRingSize
	}
	if c.ResponseRingSize == 0 {
		c.ResponseRingSize = DefaultRingSize
	}
	if c.Channels < 1 || c.Channels > MaxChannels {
		return c, fmt.Errorf("%w: channels %d: want 1..%d", ErrConfig, c.Channels, MaxChannels)
	}
	for _, s := range []struct {
		name string
		v    int
	}{{"request ring size", c.RequestRingSize}, {"response ring size", c.ResponseRingSize}} {
		if s.v < MinRingSize || s.v > MaxRingSize || s.v&(s.v-1) != 0 {
			return c, fmt.Errorf("%w: %s %d: want a power of two in [%d, %d]", ErrConfig, s.name, s.v, MinRingSize, MaxRingSize)
		}
	}
	return c, nil
}

// Region is a mapped shared region. The host gets one from Create and the
// enclave from Attach. The geometry in a Region is fixed at construction
// from the validated Config (private memory); only head/tail words, wait
// words and ring bytes are ever read from the shared mapping afterwards.
//
// A Region is used by at most one Server and one Client at a time (the
// host's Server and the enclave's Client normally live in two processes).
type Region struct {
	mem    []byte
	file   *os.File // host side: the region's file, to hand to the child
	cfg    Config
	lay    layout
	sealed bool

	// users is read-locked by every Client call and Server pass that
	// touches the mapping; Close write-locks it, so the region is unmapped
	// only when no call is inside, and a call that enters afterwards sees
	// unmapped and never touches the memory. closing tells calls in
	// progress to stop waiting so that Close does not wait for a stalled
	// peer.
	users    sync.RWMutex
	closing  atomic.Bool
	unmapped bool // under users

	closeOnce sync.Once
	closeErr  error
}

// enter registers a user of the mapping; it fails with ErrClosed once Close
// has begun. Every successful enter must be followed by leave.
func (r *Region) enter() error {
	if r.closing.Load() {
		return ErrClosed
	}
	r.users.RLock()
	if r.unmapped {
		r.users.RUnlock()
		return ErrClosed
	}
	return nil
}

// leave ends a use begun by enter.
func (r *Region) leave() { r.users.RUnlock() }

// Create makes a new shared region for cfg: an anonymous memfd, sealed
// against shrinking and growing so the enclave side cannot be made to fault
// on a truncated mapping, or a new file at cfg.Path. The returned Region's
// File is passed to the enclave process (exec.Cmd.ExtraFiles).
func Create(cfg Config) (*Region, error) {
	cfg, err := cfg.validate()
	if err != nil {
		return nil, fmt.Errorf("boundary: create region: %w", err)
	}
	lay := computeLayout(cfg)
	var f *os.File
	if cfg.Path != "" {
		f, err = os.OpenFile(cfg.Path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return nil, fmt.Errorf("boundary: create region: %w", err)
		}
	} else {
		fd, err := unix.MemfdCreate("cloister-boundary", unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
		if err != nil {
			return nil, fmt.Errorf("boundary: create region: memfd_create: %w", err)
		}
		f = os.NewFile(uintptr(fd), "cloister-boundary")
	}
	fail := func(what string, err error) (*Region, error) {
		f.Close()
		if cfg.Path != "" {
			os.Remove(cfg.Path)
		}
		return nil, fmt.Errorf("boundary: create region: %s: %w", what, err)
	}
	if err := f.Truncate(int64(lay.size)); err != nil {
		return fail("truncate", err)
	}
	sealed := false
	if cfg.Path == "" {
		// Sealing first, mapping second: once sealed, neither side can
		// shrink the file under the other's mapping.
		seals := unix.F_SEAL_SHRINK | unix.F_SEAL_GROW | unix.F_SEAL_SEAL
		if _, err := unix.FcntlInt(f.Fd(), unix.F_ADD_SEALS, seals); err != nil {
			return fail("seal memfd", err)
		}
		sealed = true
	}
	mem, err := unix.Mmap(int(f.Fd()), 0, lay.size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return fail("mmap", err)
	}
	// The header is written once here, before the file is handed out; the
	// rest of a fresh file is zero, which is the empty state of every ring.
	copy(mem[hdrMagic:], layoutMagic)
	binary.LittleEndian.PutUint32(mem[hdrVersion:], layoutVersion)
	binary.LittleEndian.PutUint32(mem[hdrChannels:], uint32(cfg.Channels))
	binary.LittleEndian.PutUint32(mem[hdrReqSize:], uint32(cfg.RequestRingSize))
	binary.LittleEndian.PutUint32(mem[hdrRespSize:], uint32(cfg.ResponseRingSize))
	return &Region{mem: mem, file: f, cfg: cfg, lay: lay, sealed: sealed}, nil
}

// Attach maps a region received from the host (for example
// os.NewFile(3, "boundary") for the first of exec.Cmd.ExtraFiles) and checks
// it against expected, the Config the enclave was built or configured with.
//
// The region is hostile: Attach computes every offset and capacity from
// expected, in enclave memory, and never re-reads them from the region. The
// region's header must match expected exactly, its size must be the size
// expected implies, and a memfd must carry the shrink seal (so the host cannot
// truncate it and fault the enclave). A plain file (Config.Path on the host)
// cannot be sealed; with one, a host that truncates the file can still crash
// the enclave process with SIGBUS, though never make it read wrong memory.
//
// Attach does not keep f; the caller may close it after Attach returns.
// expected.Path is ignored.
func Attach(f *os.File, expected Config) (*Region, error) {
	return attach(f, expected, false)
}

// attach is Attach; named (AttachPath: the host shares a named file, which
// can never be sealed) accepts a file with any seals, shrink-sealed or not.
// A tmpfs file in /dev/shm answers F_GET_SEALS with F_SEAL_SEAL alone ("no
// sealing here"), which for a descriptor would be an unsealed memfd.
func attach(f *os.File, expected Config, named bool) (*Region, error) {
	cfg, err := expected.validate()
	if err != nil {
		return nil, fmt.Errorf("boundary: attach region: %w", err)
	}
	cfg.Path = ""
	lay := computeLayout(cfg)
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return nil, fmt.Errorf("boundary: attach region: fstat: %w", err)
	}
	if named {
		if err := checkNamedFile(f.Name(), st.Mode, st.Size, lay.size); err != nil {
			return nil, fmt.Errorf("boundary: attach region: %w", err)
		}
	}
	if st.Size != int64(lay.size) {
		return nil, fmt.Errorf("boundary: attach region: %w: size %d, want %d", ErrConfig, st.Size, lay.size)
	}
	sealed := false
	seals, err := unix.FcntlInt(f.Fd(), unix.F_GET_SEALS, 0)
	switch {
	case err == nil:
		if seals&unix.F_SEAL_SHRINK == 0 && !named {
			return nil, fmt.Errorf("boundary: attach region: %w: memfd not sealed against shrinking (seals %#x)", ErrConfig, seals)
		}
		sealed = seals&unix.F_SEAL_SHRINK != 0
	case errors.Is(err, unix.EINVAL):
		// Not a memfd: a /dev/shm file. Accepted, see the doc comment.
	default:
		return nil, fmt.Errorf("boundary: attach region: get seals: %w", err)
	}
	mem, err := unix.Mmap(int(f.Fd()), 0, lay.size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("boundary: attach region: mmap: %w", err)
	}
	if testHookAttachMapped != nil {
		testHookAttachMapped()
	}
	// Copy the header out, then compare the copy.
	hdr, err := readHeader(mem)
	if err != nil {
		unix.Munmap(mem)
		return nil, fmt.Errorf("boundary: attach region: %w", err)
	}
	var want [lineSize]byte
	copy(want[hdrMagic:], layoutMagic)
	binary.LittleEndian.PutUint32(want[hdrVersion:], layoutVersion)
	binary.LittleEndian.PutUint32(want[hdrChannels:], uint32(cfg.Channels))
	binary.LittleEndian.PutUint32(want[hdrReqSize:], uint32(cfg.RequestRingSize))
	binary.LittleEndian.PutUint32(want[hdrRespSize:], uint32(cfg.ResponseRingSize))
	if !bytes.Equal(hdr[:], want[:]) {
		unix.Munmap(mem)
		return nil, fmt.Errorf("boundary: attach region: %w: header %x, want %x", ErrConfig, hdr[:hdrEnd], want[:hdrEnd])
	}
	return &Region{mem: mem, cfg: cfg, lay: lay, sealed: sealed}, nil
}

// readHeader copies the header line out of a freshly mapped region. The
// file may be unsealed (a /dev/shm file, or a memfd whose seals the host
// checked but we cannot trust until mapped): a host that truncates it after
// the size check makes this read fault, which becomes ErrRegionFault rather
// than a SIGBUS that kills the process, as it does for calls (catchFault).
func readHeader(mem []byte) (hdr [lineSize]byte, err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if p := recover(); p != nil {
			fault, ok := p.(interface{ Addr() uintptr })
			if !ok {
				panic(p)
			}
			err = fmt.Errorf("%w at %#x while reading the header", ErrRegionFault, fault.Addr())
		}
	}()
	copy(hdr[:], mem[:lineSize])
	return hdr, nil
}

// testHookAttachMapped, set by tests only, runs in attach between the mmap
// and the header read: the window in which a host may truncate the file.
var testHookAttachMapped func()

// File returns the region's file on the host side (nil after Attach), to be
// passed to the enclave process. It stays owned by the Region.
func (r *Region) File() *os.File { return r.file }

// Config returns the validated Config the region was created or attached with.
func (r *Region) Config() Config { return r.cfg }

// Sealed reports whether the region is a memfd sealed against shrinking.
func (r *Region) Sealed() bool { return r.sealed }

// Close unmaps the region and closes its file (host side). Calls in
// progress on a Client or Server over the region stop waiting and return
// ErrClosed, later ones fail with ErrClosed without touching the region,
// and the mapping is removed only once no call is inside (Close waits for
// them: at most one sleep slice each).
func (r *Region) Close() error {
	r.closeOnce.Do(func() {
		r.closing.Store(true)
		// Wake every sleeper of this process so it sees closing now.
		r.users.RLock()
		if !r.unmapped {
			r.wakeLocal(offServerWait)
			for _, l := range r.lay.ch {
				r.wakeLocal(l.base + chWait)
			}
		}
		r.users.RUnlock()
		r.users.Lock()
		defer r.users.Unlock()
		r.unmapped = true
		err := unix.Munmap(r.mem)
		if r.file != nil {
			err = errors.Join(err, r.file.Close())
		}
		if err != nil {
			r.closeErr = fmt.Errorf("boundary: close region: %w", err)
		}
	})
	return r.closeErr
}

// wakeLocal wakes whoever sleeps on the wait line at off, so that a
// sleeper of this process re-checks now (after Close). On an unsealed
// region the host may have truncated the file: a fault is caught and
// ignored, and the sleeper then notices at the end of its sleep slice.
func (r *Region) wakeLocal(off int) {
	if !r.sealed {
		defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
		defer func() {
			if p := recover(); p != nil {
				if _, ok := p.(interface{ Addr() uintptr }); !ok {
					panic(p)
				}
			}
		}()
	}
	w := r.waitLine(off)
	atomic.AddUint32(w.seq, 1)
	futexWakeAll(w.seq)
}

// u64 and u32 return pointers to shared words for sync/atomic. Offsets come
// from computeLayout (multiples of 64 from a page-aligned mapping), never
// from the region, so the words are aligned and in bounds.
func (r *Region) u64(off int) *uint64 { return (*uint64)(unsafe.Pointer(&r.mem[off])) }
func (r *Region) u32(off int) *uint32 { return (*uint32)(unsafe.Pointer(&r.mem[off])) }
