package boundary

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// TestAttachPath: the enclave side of a file region opened by name (how a
// Gramine enclave finds it) works end to end, and a name the host points
// at anything but a regular file of the right size is refused, promptly.
func TestAttachPath(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "region")
	cfg := smallCfg
	cfg.Path = path
	r := newRegion(t, cfg)
	a, err := AttachPath(path, smallCfg)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if a.Sealed() {
		t.Error("a path region claims to be sealed")
	}
	startServer(t, r, serverTable(t), echoHandler)
	c := newClient(t, a, clientTable(t))
	resp := make([]byte, 16)
	if n, err := c.Call(context.Background(), callEcho, []byte("by name"), resp); err != nil || string(resp[:n]) != "by name" {
		t.Fatalf("%q, %v", resp[:n], err)
	}

	link := filepath.Join(dir, "link")
	if err := os.Symlink(path, link); err != nil {
		t.Fatal(err)
	}
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	short := filepath.Join(dir, "short")
	if err := os.WriteFile(short, []byte("too small"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, path string
		configErr  bool
	}{
		{"symlink", link, false},
		{"fifo", fifo, true},      // must not block waiting for a writer
		{"directory", dir, false}, // O_RDWR on a directory fails at open
		{"wrong size", short, true},
		{"missing", filepath.Join(dir, "none"), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := AttachPath(tc.path, smallCfg)
			if err == nil {
				t.Fatal("attached")
			}
			if tc.configErr != errors.Is(err, ErrConfig) || !strings.HasPrefix(err.Error(), "boundary: attach region") {
				t.Fatalf("error %v (ErrConfig expected: %v)", err, tc.configErr)
			}
		})
	}
}

// TestAttachPathShm: a region file in /dev/shm (tmpfs, where Gramine's
// untrusted_shm files live) attaches by name. tmpfs answers F_GET_SEALS
// with F_SEAL_SEAL ("cannot be sealed") rather than EINVAL, which Attach's
// descriptor path reads as an unsealed memfd and refuses.
func TestAttachPathShm(t *testing.T) {
	if st, err := os.Stat("/dev/shm"); err != nil || !st.IsDir() {
		t.Skip("no /dev/shm")
	}
	path := filepath.Join("/dev/shm", "cloister-boundary-test-"+strings.ReplaceAll(t.Name(), "/", "_")+"-"+strconv.Itoa(os.Getpid()))
	t.Cleanup(func() { os.Remove(path) })
	cfg := smallCfg
	cfg.Path = path
	r := newRegion(t, cfg)
	a, err := AttachPath(path, smallCfg)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	startServer(t, r, serverTable(t), echoHandler)
	c := newClient(t, a, clientTable(t))
	resp := make([]byte, 16)
	if n, err := c.Call(context.Background(), callEcho, []byte("via /dev/shm"), resp); err != nil || string(resp[:n]) != "via /dev/shm" {
		t.Fatalf("%q, %v", resp[:n], err)
	}
}

// TestAttachPathTruncatedAfterStat: a host that truncates the region file
// between Attach's size check and its header read (the file is unsealed,
// so nothing stops it) gets a named error, not a SIGBUS that kills the
// enclave process during attach.
func TestAttachPathTruncatedAfterStat(t *testing.T) {
	path := filepath.Join(t.TempDir(), "region")
	cfg := smallCfg
	cfg.Path = path
	newRegion(t, cfg)
	testHookAttachMapped = func() {
		if err := os.Truncate(path, 0); err != nil {
			t.Error(err)
		}
	}
	t.Cleanup(func() { testHookAttachMapped = nil })
	a, err := AttachPath(path, smallCfg)
	if err == nil {
		a.Close()
		t.Fatal("attached a region truncated under the header read")
	}
	if !errors.Is(err, ErrRegionFault) || !strings.HasPrefix(err.Error(), "boundary: attach region") {
		t.Fatalf("error %v, want ErrRegionFault from attach", err)
	}
}

// TestCheckNamedFile: the file types AttachPath accepts, as fstat reports
// them. Inside Gramine, every file of an untrusted_shm mount is presented
// as a character device with the host file's size (Gramine's
// libos/src/fs/shm/fs.c, shm_lookup: "Regular files in shm file system are
// device files"), so a region that is a regular file on the host is a
// character device to the enclave that opens it: refusing it would make
// every Gramine launch fail. A real character device reports size 0 and is
// refused by size; FIFOs, sockets, directories and links by type.
func TestCheckNamedFile(t *testing.T) {
	const want = 3 << 12
	for _, tc := range []struct {
		name string
		mode uint32
		size int64
		ok   bool
	}{
		{"host regular file", syscall.S_IFREG | 0o600, want, true},
		{"Gramine untrusted_shm file", syscall.S_IFCHR | 0o600, want, true},
		{"real character device", syscall.S_IFCHR | 0o666, 0, false},
		{"regular file, wrong size", syscall.S_IFREG | 0o600, want - 1, false},
		{"fifo", syscall.S_IFIFO | 0o600, want, false},
		{"socket", syscall.S_IFSOCK | 0o600, want, false},
		{"directory", syscall.S_IFDIR | 0o700, want, false},
		{"block device", syscall.S_IFBLK | 0o600, want, false},
		{"symlink", syscall.S_IFLNK | 0o777, want, false},
	} {
		err := checkNamedFile("/dev/shm/x", tc.mode, tc.size, want)
		if (err == nil) != tc.ok {
			t.Errorf("%s: %v, want ok=%v", tc.name, err, tc.ok)
		}
		if err != nil && (!errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), "/dev/shm/x")) {
			t.Errorf("%s: error %v does not wrap ErrConfig or name the file", tc.name, err)
		}
	}
	// And a real character device through AttachPath: refused, promptly.
	if _, err := AttachPath("/dev/zero", smallCfg); !errors.Is(err, ErrConfig) {
		t.Errorf("AttachPath(/dev/zero): %v, want ErrConfig", err)
	}
}
