package enclave

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/cloister-dev/cloister/host/wire"
)

// Handoff is what a loader's app function returns: the program that
// replaces the loader in the same enclave, and its argv (argv[0] first).
type Handoff struct {
	// Path is an executable path; for a decrypted app, /proc/self/fd/N of
	// a memfd, so the plaintext never touches the host's file system. N
	// must not be one of the boundary's descriptors (the launch's region
	// and event descriptors, 3 and 4 under `cloister run`), which are
	// closed while the app function runs and restored before the exec:
	// move the memfd above them (F_DUPFD_CLOEXEC from 10).
	Path string
	// Argv is the program's arguments, its name first.
	Argv []string
}

// envHandoff marks a program started by RunHandoff: its boundary client
// resumes at the indices the loader left (boundary.Client.Resume). A host
// that sets it on a fresh launch gains nothing: the client then syncs at
// the host's published indices, which resync already treats as hostile.
const envHandoff = "CLOISTER_HANDOFF"

// handedOff reports whether this process was started by RunHandoff.
func handedOff() bool { return os.Getenv(envHandoff) == "1" }

// RunHandoff is Run for loaders (the encrypted bundle loader): app runs
// with an Env like any app, and when it returns a Handoff the Env is
// closed (every host call done), the boundary's descriptors are put back
// where `cloister run` put them and the process execs the program, which
// attaches the boundary anew with enclave.Run. The program inherits only
// what the host gives an app: the launch variable and the broker URL
// (wire.EnvBrokerURL) if the host set one. On the simulator the exec'd
// program keeps the loader's measurement: the host measured the loader's
// file. It exits the process like Run on failure, and never returns on
// success.
func RunHandoff(app func(ctx context.Context, env *Env) (*Handoff, error)) {
	if err := runHandoff(app); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Exit(0) // unreachable: a successful handoff execs
}

func runHandoff(app func(ctx context.Context, env *Env) (*Handoff, error)) error {
	v, ok := os.LookupEnv(wire.EnvBoundary)
	if !ok {
		return ErrNotLaunched
	}
	l, err := wire.ParseLaunch(v)
	if err != nil {
		return fmt.Errorf("enclave: %w", err)
	}
	if l.RegionPath != "" {
		// A region named by path (Gramine) is not a descriptor this
		// process could pass on across exec.
		return fmt.Errorf("enclave: handoff: the boundary is %s, not an inherited descriptor: a handoff needs one", l.RegionPath)
	}
	// Keep the descriptor: run closes it once the boundary is mapped.
	region, err := unix.FcntlInt(uintptr(l.RegionFD), unix.F_DUPFD_CLOEXEC, 10)
	if err != nil {
		return fmt.Errorf("enclave: handoff: keeping the region descriptor: %w", err)
	}
	var h *Handoff
	err = run(func(ctx context.Context, env *Env) error {
		var err error
		h, err = app(ctx, env)
		if err == nil && (h == nil || h.Path == "" || len(h.Argv) == 0) {
			err = errors.New("enclave: handoff: no program to run")
		}
		return err
	})
	// run has closed the Env: no call is in flight, the region is unmapped.
	if err != nil {
		return err
	}
	if h.Path == "/proc/self/fd/"+strconv.Itoa(l.RegionFD) {
		return fmt.Errorf("enclave: handoff: the program is descriptor %d, which the boundary takes back", l.RegionFD)
	}
	if err := unix.Dup3(region, l.RegionFD, 0); err != nil {
		return fmt.Errorf("enclave: handoff: %w", err)
	}
	env := []string{wire.EnvBoundary + "=" + v, envHandoff + "=1"}
	if u, ok := os.LookupEnv(wire.EnvBrokerURL); ok {
		// The host's broker address, passed on as the host gave it: the
		// app holds whatever answers there to its own pinned policy.
		env = append(env, wire.EnvBrokerURL+"="+u)
	}
	err = syscall.Exec(h.Path, h.Argv, env)
	return fmt.Errorf("enclave: handoff: exec: %w", err)
}
