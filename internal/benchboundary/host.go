package benchboundary

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc"

	"github.com/cloister-dev/cloister/boundary"
)

// host is the host side of a run: the child, and a server for each
// transport. The ring, socket and gRPC servers run for the whole run and
// sleep when idle; the ping-pong peer spins only during its measurement.
type host struct {
	cmd     *exec.Cmd
	waitErr chan error // cmd.Wait's result

	ctrl *os.File
	enc  *json.Encoder
	dec  *json.Decoder

	region    *boundary.Region
	server    *boundary.Server
	serveDone chan error

	udsFD   int // our end of the raw socket pair, blocking
	udsDone chan struct{}

	grpcServer *grpc.Server
	grpcDone   chan error

	pp *sharedPage
}

// startHost sets up every transport, starts the servers and the child.
// On error everything already set up is released.
func startHost(ctx context.Context, opts Options) (_ *host, err error) {
	h := &host{udsFD: -1}
	var childFiles []*os.File // the child's ends, closed here once it started
	defer func() {
		for _, f := range childFiles {
			f.Close()
		}
		if err != nil {
			h.close()
		}
	}()
	pair := func(name string) (*os.File, *os.File, error) {
		fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return nil, nil, fmt.Errorf("%s socket pair: %w", name, err)
		}
		return os.NewFile(uintptr(fds[0]), name+"-host"), os.NewFile(uintptr(fds[1]), name+"-enclave"), nil
	}

	// Control.
	ctrl, ctrlChild, err := pair("control")
	if err != nil {
		return nil, err
	}
	h.ctrl, h.enc, h.dec = ctrl, json.NewEncoder(ctrl), json.NewDecoder(ctrl)
	childFiles = append(childFiles, ctrlChild)

	// Rings.
	table, err := echoTable()
	if err != nil {
		return nil, err
	}
	if h.region, err = boundary.Create(regionConfig); err != nil {
		return nil, err
	}
	if h.server, err = boundary.NewServer(h.region, table, echoHandler); err != nil {
		return nil, err
	}
	h.serveDone = make(chan error, 1)
	go func() { h.serveDone <- h.server.Serve(context.WithoutCancel(ctx)) }()

	// Raw Unix socket: blocking descriptors, so each message is one
	// read(2) or write(2) and never a trip through the runtime's poller.
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("socket pair: %w", err)
	}
	h.udsFD = fds[0]
	udsChild := os.NewFile(uintptr(fds[1]), "uds-enclave")
	childFiles = append(childFiles, udsChild)
	h.udsDone = make(chan struct{})
	go func() { defer close(h.udsDone); udsEcho(h.udsFD) }()

	// gRPC.
	grpcHost, grpcChild, err := pair("grpc")
	if err != nil {
		return nil, err
	}
	childFiles = append(childFiles, grpcChild)
	conn, err := netConn(grpcHost)
	if err != nil {
		return nil, err
	}
	h.grpcServer = newGRPCServer()
	h.grpcDone = make(chan error, 1)
	go func() { h.grpcDone <- h.grpcServer.Serve(newOneConnListener(conn)) }()

	// Ping-pong page.
	if h.pp, err = newSharedPage(); err != nil {
		return nil, err
	}

	// The child: the enclave side. Order matches the fd constants.
	cmd := exec.CommandContext(ctx, opts.Exe, opts.Args...)
	cmd.Env = append(os.Environ(), ChildEnv+"=1")
	cmd.ExtraFiles = []*os.File{ctrlChild, h.region.File(), udsChild, grpcChild, h.pp.file}
	cmd.Stderr = opts.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start enclave side: %w", err)
	}
	h.cmd = cmd
	h.waitErr = make(chan error, 1)
	go func() { h.waitErr <- cmd.Wait() }()
	return h, nil
}

// echoHandler is the ring server's handler: it echoes the request.
func echoHandler(_ uint32, req, resp []byte) (int, error) {
	return copy(resp, req), nil
}

// measure asks the child for one repetition and returns its sample. The
// ping-pong peer runs for the duration of its request only.
func (h *host) measure(ctx context.Context, req request) (sample, error) {
	if req.Kind == kindPingPong {
		h.pp.reset()
		var wg sync.WaitGroup
		wg.Go(func() { h.pp.echo(ctx) })
		defer func() {
			h.pp.word(offStop).Store(1) // in case the child did not
			wg.Wait()
		}()
	}
	if err := h.enc.Encode(req); err != nil {
		return sample{}, fmt.Errorf("send request: %w", h.childErr(err))
	}
	var rep reply
	if err := h.dec.Decode(&rep); err != nil {
		return sample{}, fmt.Errorf("read reply: %w", h.childErr(err))
	}
	if rep.Err != "" {
		return sample{}, fmt.Errorf("enclave side: %s", rep.Err)
	}
	if rep.Sample.Calls <= 0 || rep.Sample.Ns <= 0 {
		return sample{}, fmt.Errorf("enclave side: empty sample %+v", rep.Sample)
	}
	return rep.Sample, nil
}

// childErr adds the child's exit status, if it has exited, to a control
// socket error.
func (h *host) childErr(err error) error {
	select {
	case werr := <-h.waitErr:
		h.waitErr <- werr
		if werr != nil {
			return fmt.Errorf("%w (enclave side exited: %w)", err, werr)
		}
		return fmt.Errorf("%w (enclave side exited)", err)
	case <-time.After(100 * time.Millisecond):
		return err
	}
}

// close stops the child (asking it first), then every server, and releases
// everything. It returns the first error that says the run went wrong.
func (h *host) close() error {
	var errs []error
	if h.cmd != nil {
		if err := h.enc.Encode(request{}); err != nil {
			h.cmd.Process.Kill()
		}
		select {
		case err := <-h.waitErr:
			if err != nil {
				errs = append(errs, fmt.Errorf("enclave side: %w", err))
			}
		case <-time.After(10 * time.Second):
			h.cmd.Process.Kill()
			errs = append(errs, fmt.Errorf("enclave side: did not exit: %w", <-h.waitErr))
		}
	}
	if h.ctrl != nil {
		h.ctrl.Close()
	}
	if h.server != nil {
		h.server.Close()
		if err := <-h.serveDone; err != nil && !errors.Is(err, boundary.ErrClosed) {
			errs = append(errs, fmt.Errorf("ring server: %w", err))
		}
	}
	if h.region != nil {
		if err := h.region.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	if h.udsFD >= 0 {
		unix.Shutdown(h.udsFD, unix.SHUT_RDWR) // wakes the echo's blocking read
		if h.udsDone != nil {
			<-h.udsDone
		}
		unix.Close(h.udsFD)
	}
	if h.grpcServer != nil {
		h.grpcServer.Stop()
		if err := <-h.grpcDone; err != nil {
			errs = append(errs, fmt.Errorf("grpc server: %w", err))
		}
	}
	if h.pp != nil {
		if err := h.pp.close(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// sharedPage is the ping-pong memfd page, mapped in this process.
type sharedPage struct {
	file *os.File
	mem  []byte
}

// newSharedPage creates and maps a fresh memfd page.
func newSharedPage() (*sharedPage, error) {
	fd, err := unix.MemfdCreate("cloister-bench-pingpong", unix.MFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("ping-pong page: memfd_create: %w", err)
	}
	f := os.NewFile(uintptr(fd), "pingpong")
	if err := f.Truncate(pingPongSize); err != nil {
		f.Close()
		return nil, fmt.Errorf("ping-pong page: %w", err)
	}
	p, err := mapPage(f)
	if err != nil {
		f.Close()
		return nil, err
	}
	p.file = f
	return p, nil
}

// mapPage maps the ping-pong page of f (checking its size first).
func mapPage(f *os.File) (*sharedPage, error) {
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return nil, fmt.Errorf("ping-pong page: fstat: %w", err)
	}
	if st.Size != pingPongSize {
		return nil, fmt.Errorf("ping-pong page: size %d, want %d", st.Size, pingPongSize)
	}
	mem, err := unix.Mmap(int(f.Fd()), 0, pingPongSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("ping-pong page: mmap: %w", err)
	}
	return &sharedPage{mem: mem}, nil
}

// word returns the shared 64-bit word at off (a constant multiple of 8
// inside a page-aligned mapping, so aligned and in bounds).
func (p *sharedPage) word(off int) *atomic.Uint64 {
	return (*atomic.Uint64)(unsafe.Pointer(&p.mem[off]))
}

func (p *sharedPage) reset() {
	p.word(offPing).Store(0)
	p.word(offPong).Store(0)
	p.word(offStop).Store(0)
}

// echo is the host's half of the ping-pong: it copies every new ping into
// pong, spinning without pause, until the stop word is set (by the child
// when it is done, or by measure once the child has replied or failed) or
// ctx ends.
func (p *sharedPage) echo(ctx context.Context) {
	ping, pong, stop := p.word(offPing), p.word(offPong), p.word(offStop)
	var seen uint64
	for i := uint64(1); stop.Load() == 0; i++ {
		if v := ping.Load(); v != seen {
			seen = v
			pong.Store(v)
		} else if i%(1<<20) == 0 && ctx.Err() != nil {
			return
		}
	}
}

func (p *sharedPage) close() error {
	err := unix.Munmap(p.mem)
	if p.file != nil {
		err = errors.Join(err, p.file.Close())
	}
	if err != nil {
		return fmt.Errorf("ping-pong page: close: %w", err)
	}
	return nil
}
