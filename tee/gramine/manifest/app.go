package manifest

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path/filepath"

	"github.com/cloister-dev/cloister/tee/appsign"
)

// ForApp hashes the binary at appPath (a regular file, read once) and
// builds its manifest: o.Name, o.SHA256 and o.Size are filled in from the
// file, and o.LibOSSHA256 from the LibOS when a regular file is at o.LibOS
// (DefaultLibOS if empty) and o.LibOSSHA256 is nil; the rest of o is used
// as given. This is the only I/O of the package; Build stays pure.
func ForApp(appPath string, o Options) (*Manifest, error) {
	if o.LibOSSHA256 == nil {
		libos := o.LibOS
		if libos == "" {
			libos = DefaultLibOS
		}
		sum, err := hashFile(libos)
		switch {
		case err == nil:
			o.LibOSSHA256 = &sum
		case !errors.Is(err, fs.ErrNotExist):
			return nil, fmt.Errorf("manifest: libos: %w", err)
		}
	}
	f, err := appsign.OpenBinary(appPath)
	if err != nil {
		return nil, fmt.Errorf("manifest: %w", err)
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return nil, fmt.Errorf("manifest: reading %s: %w", appPath, err)
	}
	o.Name = filepath.Base(appPath)
	o.Size = n
	h.Sum(o.SHA256[:0])
	return Build(o)
}

// hashFile returns the SHA-256 of the regular file at path.
func hashFile(path string) ([32]byte, error) {
	f, err := appsign.OpenBinary(path)
	if err != nil {
		return [32]byte{}, err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return [32]byte{}, fmt.Errorf("reading %s: %w", path, err)
	}
	var sum [32]byte
	h.Sum(sum[:0])
	return sum, nil
}
