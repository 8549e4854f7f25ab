package boundary

import (
	"fmt"
	"os"
	"syscall"
)

// AttachPath opens the region file at path and attaches it as Attach does,
// for a host that shares the region as a named file rather than an
// inherited descriptor (Gramine passes no descriptors into an enclave; the
// file lives in its untrusted_shm mount). Which paths are acceptable is the
// caller's rule (host/wire allows only files directly under /dev/shm).
//
// The file is opened without following a symbolic link and without
// blocking (a FIFO must not hang the enclave), and must be a regular file
// (a character device of the right size under Gramine: checkNamedFile);
// Attach then checks its size and header against expected. Such a file
// cannot be sealed: what a hostile host can do with it is what it can do
// with any unsealed region (truncate it: calls then fail with
// ErrRegionFault, when the fault reaches Go with its address), plus
// replacing the file before the enclave opens it,
// which gives the enclave a region nobody serves (calls time out) or one
// the host serves: both are the hostile region the boundary is built for.
// The file is not kept open.
//
// Under Gramine the name is resolved by the host's kernel (the PAL opens
// it there), so O_NOFOLLOW guards only the enclave's own view: a host
// symlink in /dev/shm is followed, which gives the host nothing it lacks,
// since every file it could point at is its own and the region is hostile
// anyway. Under Gramine a truncation kills the enclave process instead: without
// sgx.use_exinfo (which the manifest does not set: it needs SGX2, and
// Gramine advises against it) Gramine gives the app no fault address, or
// refuses the fault, and the Go runtime throws on an address-less SIGBUS
// rather than panicking, so ErrRegionFault cannot be returned. Still only
// a denial of service: the enclave never reads memory other than the
// region's.
func AttachPath(path string, expected Config) (*Region, error) {
	f, err := os.OpenFile(path, os.O_RDWR|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("boundary: attach region: %w", err)
	}
	defer f.Close()
	return attach(f, expected, true)
}

// checkNamedFile says whether a file opened by name, whose fstat gave mode
// and size, may be a region of want bytes. A regular file may: what the
// host creates. So may a character device of the region's size, because
// that is how Gramine presents every file of an untrusted_shm mount to the
// enclave (libos/src/fs/shm/fs.c: "Regular files in shm file system are
// device files", with the host file's size); a real character device
// reports size 0 and fails the size check. Anything else (a FIFO that
// would hang or feed a stream, a socket, a directory) is refused by type.
func checkNamedFile(path string, mode uint32, size int64, want int) error {
	switch mode & syscall.S_IFMT {
	case syscall.S_IFREG, syscall.S_IFCHR:
	default:
		return fmt.Errorf("%w: %s is not a regular file nor Gramine's untrusted_shm view of one (mode %#o)", ErrConfig, path, mode)
	}
	if size != int64(want) {
		return fmt.Errorf("%w: %s: size %d, want %d", ErrConfig, path, size, want)
	}
	return nil
}
