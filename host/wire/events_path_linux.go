package wire

import (
	"fmt"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// CreateEventsAt makes the event page as a new file at path (host side),
// for a launch that names files instead of passing descriptors (Gramine,
// whose enclave maps it through its untrusted_shm mount). The file must
// not exist. A plain file cannot be sealed, so unlike CreateEvents's memfd
// the host could truncate it under the enclave's mapping; see
// AttachEventsPath. The caller removes the file when done.
func CreateEventsAt(path string) (*Events, error) {
	if err := checkShmPath(path); err != nil {
		return nil, fmt.Errorf("wire: create events: %w", err)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return nil, fmt.Errorf("wire: create events: %w", err)
	}
	fail := func(what string, err error) (*Events, error) {
		f.Close()
		os.Remove(path)
		return nil, fmt.Errorf("wire: create events: %s: %w", what, err)
	}
	if err := f.Truncate(EventPageSize); err != nil {
		return fail("truncate", err)
	}
	mem, err := unix.Mmap(int(f.Fd()), 0, EventPageSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return fail("mmap", err)
	}
	return &Events{mem: mem, file: f}, nil
}

// AttachEventsPath maps the event page file at path (enclave side). The
// path must be ShmDir/NAME (ParseLaunch checked it); it is opened without
// following a symbolic link and without blocking (a FIFO put there by the
// host must not hang the enclave), and must be a regular file of exactly
// EventPageSize bytes (checkEventsFile).
//
// What a hostile host can do with a file it names: put any bytes in it
// (they are only sequence numbers: a wrong one is a spurious or missed
// wake-up, and every wait is bounded in time), replace it before the
// enclave opens it (the same), or truncate it after the enclave mapped it,
// which faults the enclave process (SIGBUS): a denial of service, which
// the host can always cause by not running the enclave at all. It can
// never make the enclave read or write anything but this page.
func AttachEventsPath(path string) (*Events, error) {
	if err := checkShmPath(path); err != nil {
		return nil, fmt.Errorf("wire: attach events: %w", err)
	}
	f, err := os.OpenFile(path, os.O_RDWR|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("wire: attach events: %w", err)
	}
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return nil, fmt.Errorf("wire: attach events: fstat: %w", err)
	}
	if err := checkEventsFile(path, st.Mode, st.Size); err != nil {
		return nil, fmt.Errorf("wire: attach events: %w", err)
	}
	mem, err := unix.Mmap(int(f.Fd()), 0, EventPageSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("wire: attach events: mmap: %w", err)
	}
	return &Events{mem: mem}, nil
}

// checkEventsFile says whether a file whose fstat gave mode and size may be
// the event page: a regular file, or a character device, which is how
// Gramine presents every file of an untrusted_shm mount to the enclave
// (libos/src/fs/shm/fs.c), of exactly EventPageSize bytes (a real device
// reports 0).
func checkEventsFile(path string, mode uint32, size int64) error {
	if t := mode & unix.S_IFMT; t != unix.S_IFREG && t != unix.S_IFCHR {
		return fmt.Errorf("%s is not a regular file nor Gramine's untrusted_shm view of one (mode %#o)", path, mode)
	}
	if size != EventPageSize {
		return fmt.Errorf("%s: size %d, want %d", path, size, EventPageSize)
	}
	return nil
}
