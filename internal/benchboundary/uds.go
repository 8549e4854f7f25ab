package benchboundary

import (
	"errors"
	"fmt"
	"io"

	"golang.org/x/sys/unix"
)

// The raw socket transport uses blocking descriptors and the system calls
// themselves (not the runtime's poller), so one message is one read(2) or
// one write(2): the closest user-space stand-in for an enclave transition.

// udsEcho is the host's socket echo: it writes back whatever each read(2)
// returns, until EOF or an error (shutdown wakes it with EOF). A read may
// carry many pipelined requests; they go back in one write.
func udsEcho(fd int) {
	buf := make([]byte, 64<<10)
	for {
		n, err := readFD(fd, buf)
		if n <= 0 || err != nil {
			return
		}
		if err := writeFull(fd, buf[:n]); err != nil {
			return
		}
	}
}

// readFD is read(2), retried on EINTR. It returns io.EOF at end of stream.
func readFD(fd int, buf []byte) (int, error) {
	for {
		n, err := unix.Read(fd, buf)
		switch {
		case errors.Is(err, unix.EINTR):
			continue
		case err != nil:
			return 0, fmt.Errorf("read: %w", err)
		case n == 0 && len(buf) > 0:
			return 0, io.EOF
		}
		return n, nil
	}
}

// writeFull writes all of b, usually in one write(2).
func writeFull(fd int, b []byte) error {
	for len(b) > 0 {
		n, err := unix.Write(fd, b)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return fmt.Errorf("write: %w", err)
		}
		b = b[n:]
	}
	return nil
}

// readFull reads exactly len(b) bytes.
func readFull(fd int, b []byte) error {
	for len(b) > 0 {
		n, err := readFD(fd, b)
		if err != nil {
			return err
		}
		b = b[n:]
	}
	return nil
}

// udsClient is the child's side of the raw socket.
type udsClient struct {
	fd        int
	req, resp []byte // msgSize each
	in        []byte // udsDepth responses
}

func newUDSClient(fd int) *udsClient {
	return &udsClient{fd: fd, req: make([]byte, msgSize), resp: make([]byte, msgSize), in: make([]byte, udsDepth*msgSize)}
}

// roundTrip makes n round trips, one at a time: each is one write(2) and,
// normally, one read(2).
func (u *udsClient) roundTrip(n int64) (int64, error) {
	for i := range n {
		if err := writeFull(u.fd, u.req); err != nil {
			return i, err
		}
		if err := readFull(u.fd, u.resp); err != nil {
			return i, err
		}
	}
	return n, nil
}

// pipelined sends udsDepth requests, each with its own write(2), then
// collects their responses with as few read(2)s as the socket allows.
func (u *udsClient) pipelined() (int64, error) {
	for range udsDepth {
		if err := writeFull(u.fd, u.req); err != nil {
			return 0, err
		}
	}
	if err := readFull(u.fd, u.in); err != nil {
		return 0, err
	}
	return udsDepth, nil
}
