package host

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/cloister-dev/cloister/tee/appsign"
	"golang.org/x/sys/unix"
)

// sealedImage copies the app binary at path into a memfd and seals it
// (no write, grow, shrink or further seal), so that the bytes Run hashes
// are the bytes it executes: executing the path again after hashing would
// run whatever replaced the file in between (a confidential VM extends the
// hash into RTMR3 first, so the register would name code that never ran).
// The caller closes it.
func sealedImage(path string) (*os.File, error) {
	src, err := appsign.OpenBinary(path)
	if err != nil {
		return nil, err
	}
	defer src.Close()
	// MFD_EXEC keeps the memfd executable where the kernel (6.3+) would
	// otherwise default to non-executable; older kernels refuse the flag
	// and make every memfd executable.
	fd, err := unix.MemfdCreate("cloister-app", unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING|unix.MFD_EXEC)
	if errors.Is(err, unix.EINVAL) {
		fd, err = unix.MemfdCreate("cloister-app", unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	}
	if err != nil {
		return nil, fmt.Errorf("host: run: sealed copy of %s: memfd_create: %w", path, err)
	}
	img := os.NewFile(uintptr(fd), "cloister-app")
	fail := func(err error) (*os.File, error) {
		img.Close()
		return nil, fmt.Errorf("host: run: sealed copy of %s: %w", path, err)
	}
	if _, err := io.Copy(img, src); err != nil {
		return fail(err)
	}
	if _, err := unix.FcntlInt(img.Fd(), unix.F_ADD_SEALS, unix.F_SEAL_SHRINK|unix.F_SEAL_GROW|unix.F_SEAL_WRITE|unix.F_SEAL_SEAL); err != nil {
		return fail(fmt.Errorf("sealing: %w", err))
	}
	return img, nil
}

// procFD is the path under which this process reads f.
func procFD(f *os.File) string { return fmt.Sprintf("/proc/self/fd/%d", f.Fd()) }
