package enclave

import (
	"context"
	"errors"
	"fmt"

	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/cloister-dev/cloister/boundary"
	"github.com/cloister-dev/cloister/host/wire"
)

// ErrNotLaunched is returned (and printed by Run) when the process was not
// started by `cloister run`.
var ErrNotLaunched = errors.New("enclave: not started by 'cloister run' (" + wire.EnvBoundary + " is not set); run it with: cloister run APP")

// Run runs app as an enclave and exits the process: status 0 when app
// returns nil, 1 (after printing the error to stderr) when it fails or the
// boundary cannot be attached. Call it from main.
//
// app's ctx is cancelled on SIGTERM or SIGINT (how `cloister run` asks the
// app to stop); app should then stop serving and return. Env stays usable
// until app returns, so connections can be drained.
func Run(app func(ctx context.Context, env *Env) error) {
	if err := run(app); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Exit(0)
}

// attachBoundary maps the region the launch names: an inherited descriptor
// (the simulator, a CVM) or a /dev/shm file (Gramine).
func attachBoundary(l wire.Launch) (*boundary.Region, error) {
	if l.RegionPath != "" {
		region, err := boundary.AttachPath(l.RegionPath, wire.RegionConfig())
		if err != nil {
			return nil, fmt.Errorf("enclave: %w", err)
		}
		return region, nil
	}
	rf := os.NewFile(uintptr(l.RegionFD), "cloister-boundary")
	if rf == nil {
		return nil, errors.New("enclave: the boundary descriptor is not open")
	}
	// Attach maps what it needs and keeps no file.
	region, err := boundary.Attach(rf, wire.RegionConfig())
	rf.Close()
	if err != nil {
		return nil, fmt.Errorf("enclave: %w", err)
	}
	return region, nil
}

// run is Run without the exit.
func run(app func(ctx context.Context, env *Env) error) error {
	v, ok := os.LookupEnv(wire.EnvBoundary)
	if !ok {
		return ErrNotLaunched
	}
	// Children of the app must not think they were launched too.
	os.Unsetenv(wire.EnvBoundary)
	l, err := wire.ParseLaunch(v)
	if err != nil {
		return fmt.Errorf("enclave: %w", err)
	}
	// The platform first: a hardware platform is opened here, in the
	// enclave's own process, and a launch that does not fit where this
	// process runs fails before any host memory is touched.
	plat, err := launchPlatform(l)
	if err != nil {
		return err
	}
	region, err := attachBoundary(l)
	if err != nil {
		return err
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
	env, err := newEnv(region, l.TEE, plat, logger)
	if err != nil {
		return err
	}
	defer env.close()

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := app(ctx, env); err != nil {
		return fmt.Errorf("enclave: app: %w", err)
	}
	return nil
}
