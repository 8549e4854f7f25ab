package tsm

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/cloister-dev/cloister/evidence/eventlog"
	"github.com/google/go-configfs-tsm/configfs/configfsi"
	"github.com/google/go-configfs-tsm/configfs/linuxtsm"
	"github.com/google/go-configfs-tsm/rtmr"
)

// Where the kernel offers TDX RTMR extension, relative to the filesystem
// root (RTMRConfig.Root).
const (
	// SysfsRTMRPath is Linux 6.16+'s TDX guest measurement file for an
	// RTMR (the "measurements" group of the tdx_guest device, ABI
	// sysfs-devices-virtual-misc-tdx_guest): writing 48 bytes extends the
	// register, reading returns its value. %d is the RTMR index.
	SysfsRTMRPath = "sys/class/misc/tdx_guest/measurements/rtmr%d:sha384"
	// ConfigfsRTMRPath is the earlier configfs-tsm "rtmrs" subsystem
	// (out-of-tree patches some distribution kernels carried, e.g.
	// Google's COS), which go-configfs-tsm's rtmr package drives.
	ConfigfsRTMRPath = "sys/kernel/config/tsm/rtmrs"
)

// ErrNoRTMRInterface is returned by OpenRTMR when the kernel offers no
// way to extend an RTMR.
var ErrNoRTMRInterface = errors.New("tsm: the kernel has no TDX RTMR extension interface")

// RTMRConfig says where the RTMR extension interface is. The zero value
// is the real machine.
type RTMRConfig struct {
	// Root is the filesystem root the kernel paths are under ("" is "/");
	// tests point it at a directory of their own.
	Root string
	// Client, when set, is the configfs client of the configfs-tsm "rtmrs"
	// subsystem (tests pass go-configfs-tsm's fakertmr through faketsm);
	// it is then used whatever Root holds.
	Client configfsi.Client
}

// Register is one RTMR that can be read and extended.
type Register interface {
	// Read returns the register's value.
	Read() ([eventlog.DigestSize]byte, error)
	// Extend extends the register with digest: RTMR = SHA-384(RTMR ‖ digest).
	Extend(digest [eventlog.DigestSize]byte) error
	// How names the kernel interface used.
	How() string
}

// OpenRTMR returns RTMR index (0..3) through the kernel interface cfg
// finds: cfg.Client if set, else the sysfs measurement file (Linux 6.16+),
// else the configfs-tsm rtmrs subsystem. Without either it returns
// ErrNoRTMRInterface, naming what was looked for.
func OpenRTMR(cfg RTMRConfig, index int) (Register, error) {
	if index < 0 || index >= eventlog.Registers {
		return nil, fmt.Errorf("tsm: RTMR index %d is out of range 0..%d", index, eventlog.Registers-1)
	}
	if cfg.Client != nil {
		return &configfsRTMR{client: cfg.Client, index: index, how: "configfs-tsm rtmrs (given client)"}, nil
	}
	root := cfg.Root
	if root == "" {
		root = "/"
	}
	sysfs := filepath.Join(root, fmt.Sprintf(SysfsRTMRPath, index))
	if _, err := os.Stat(sysfs); err == nil {
		return &sysfsRTMR{path: sysfs}, nil
	}
	configfs := filepath.Join(root, ConfigfsRTMRPath)
	if st, err := os.Stat(configfs); err == nil && st.IsDir() {
		if root != "/" {
			return nil, fmt.Errorf("tsm: %s exists but the configfs-tsm client works only at the real /sys/kernel/config (pass RTMRConfig.Client)", configfs)
		}
		c, err := linuxtsm.MakeClient()
		if err != nil {
			return nil, fmt.Errorf("tsm: configfs-tsm rtmrs at %s: %w", configfs, err)
		}
		return &configfsRTMR{client: c, index: index, how: "configfs-tsm rtmrs at " + configfs}, nil
	}
	return nil, fmt.Errorf("%w: neither %s (Linux 6.16+ tdx_guest driver) nor %s (configfs-tsm rtmrs, out-of-tree kernels) exists",
		ErrNoRTMRInterface, sysfs, configfs)
}

// sysfsRTMR is an RTMR's sysfs measurement file. go-tdx-guest's
// rtmr.ExtendDigestSysfs writes the same file the same way (48 bytes at
// offset 0), but at a fixed path and without reading: this one takes its
// path from RTMRConfig.Root, and linking go-tdx-guest's rtmr package would
// bring its quote verifier into the binary.
type sysfsRTMR struct{ path string }

func (r *sysfsRTMR) How() string { return "sysfs " + r.path }

func (r *sysfsRTMR) Read() ([eventlog.DigestSize]byte, error) {
	var v [eventlog.DigestSize]byte
	f, err := os.Open(r.path)
	if err != nil {
		return v, fmt.Errorf("tsm: reading RTMR: %w", err)
	}
	defer f.Close()
	if _, err := io.ReadFull(f, v[:]); err != nil {
		return v, fmt.Errorf("tsm: reading RTMR %s: %w", r.path, err)
	}
	return v, nil
}

func (r *sysfsRTMR) Extend(digest [eventlog.DigestSize]byte) error {
	f, err := os.OpenFile(r.path, os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("tsm: extending RTMR: %w", err)
	}
	if _, err := f.WriteAt(digest[:], 0); err != nil {
		f.Close()
		return fmt.Errorf("tsm: extending RTMR %s: %w", r.path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("tsm: extending RTMR %s: %w", r.path, err)
	}
	return nil
}

// configfsRTMR is an RTMR of the configfs-tsm rtmrs subsystem, through
// go-configfs-tsm's rtmr package.
type configfsRTMR struct {
	client configfsi.Client
	index  int
	how    string
}

func (r *configfsRTMR) How() string { return r.how }

func (r *configfsRTMR) Read() ([eventlog.DigestSize]byte, error) {
	var v [eventlog.DigestSize]byte
	resp, err := rtmr.GetDigest(r.client, r.index)
	if err != nil {
		return v, fmt.Errorf("tsm: reading RTMR%d: %w", r.index, err)
	}
	if len(resp.Digest) != eventlog.DigestSize {
		return v, fmt.Errorf("tsm: reading RTMR%d: %d bytes, want %d", r.index, len(resp.Digest), eventlog.DigestSize)
	}
	return [eventlog.DigestSize]byte(resp.Digest), nil
}

func (r *configfsRTMR) Extend(digest [eventlog.DigestSize]byte) error {
	if err := rtmr.ExtendDigest(r.client, r.index, digest[:]); err != nil {
		return fmt.Errorf("tsm: extending RTMR%d: %w", r.index, err)
	}
	return nil
}
