package manifest

import (
	"crypto/sha256"
	"fmt"
	"io"
	"path/filepath"

	"github.com/cloister-dev/cloister/tee/appsign"
)

// ForApp hashes the binary at appPath (a regular file, read once) and
// builds its manifest: o.Name, o.SHA256 and o.Size are filled in from the
// file, the rest of o is used as given. This is the only I/O of the
// package; Build stays pure.
func ForApp(appPath string, o Options) (*Manifest, error) {
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
