package host

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"github.com/cloister-dev/cloister/boundary"
	"github.com/cloister-dev/cloister/host/wire"
	"github.com/cloister-dev/cloister/tee"
	"github.com/cloister-dev/cloister/tee/sim"
)

// Config is what Run launches and how.
type Config struct {
	// App is the enclave app binary; required.
	App string
	// Args are the app's arguments (after its name).
	Args []string
	// Sig is the app's signature file (`cloister sign`); empty measures
	// the app unsigned, as a debug enclave with a zero MRSIGNER.
	Sig string
	// TEE is the platform kind; default tee.KindSimSGX. The simulator
	// kinds need nothing else; tee.KindSGX runs under Gramine, configured
	// by Gramine; tee.KindTDX and tee.KindSNP (a confidential VM, where
	// this process is inside the TEE with the app) need Platform.
	TEE tee.Kind
	// Platform, for a confidential VM, is the platform the caller opened
	// (tee/probe, configfs-tsm); the host services answer the app's
	// evidence, identity and sealing-key calls from it. Its Kind must be
	// TEE. Nil for the simulator kinds, whose platform Run makes. With a
	// Platform, Run hashes and executes a sealed copy of App (sealedImage),
	// never the path twice.
	Platform tee.Platform
	// BeforeStart, when set, is called with the app's measurement (as
	// `cloister measure` computes it) after everything else is ready and
	// just before the app is started; an error stops the launch. A
	// confidential VM extends the measurement into a runtime register here.
	BeforeStart func(app sim.App) error
	// SimDir is the simulator's data directory; default sim.DefaultDir().
	SimDir string
	// Listen lists the addresses the enclave may listen on, host side
	// (see ServiceOptions.Listen).
	Listen []string
	// Dial lists the addresses the enclave may dial; empty allows any
	// (see ServiceOptions.Dial).
	Dial []string
	// StorePath is the bbolt file of the app's sealed records; default
	// DefaultStateDir()/<app file name>.db.
	StorePath string
	// Stdout and Stderr receive the app's output; default os.Stdout and
	// os.Stderr.
	Stdout, Stderr io.Writer
	// Logger receives Run's log; nil discards it.
	Logger *slog.Logger
	// Netns asks for a network namespace for the app (see Run).
	Netns bool
	// Grace is how long the app may take to stop after SIGTERM before it
	// is killed; default DefaultGrace.
	Grace time.Duration
	// Broker is the key broker's URL handed to the app (wire.EnvBrokerURL)
	// for enclave.Env.Secret. It is only an address: the app pins the
	// broker's identity itself, so a wrong URL fails, never misleads.
	Broker string
	// Now is the clock for the simulator's certificates (made on first
	// use) and the untrusted time service; nil means time.Now.
	Now func() time.Time
	// Gramine configures a tee.KindSGX run (gramine_linux.go).
	Gramine GramineOptions
}

// validate fills defaults and checks cfg once, at the entry point.
func (c Config) validate() (Config, error) {
	if c.App == "" {
		return c, errors.New("host: run: no app given")
	}
	// Resolve the app once: it is measured as a file path, so it must be
	// launched by the same path. A bare name ("app") would otherwise be
	// measured as ./app but looked up in $PATH by exec.
	app, err := filepath.Abs(c.App)
	if err != nil {
		return c, fmt.Errorf("host: run: app %s: %w", c.App, err)
	}
	c.App = app
	if c.TEE == "" {
		c.TEE = tee.KindSimSGX
	}
	cvm := (c.TEE == tee.KindTDX || c.TEE == tee.KindSNP) && c.Platform != nil && c.Platform.Kind() == c.TEE
	switch {
	case c.TEE == tee.KindSGX:
		if err := c.Gramine.validate(c); err != nil {
			return c, err
		}
	case c.TEE != tee.KindSimSGX && c.TEE != tee.KindSimTDX && !cvm:
		return c, fmt.Errorf("host: run: tee %q: want %s, %s or %s, or %s or %s with the platform opened for it", c.TEE, tee.KindSimSGX, tee.KindSimTDX, tee.KindSGX, tee.KindTDX, tee.KindSNP)
	}
	if c.SimDir == "" && !cvm && c.TEE != tee.KindSGX {
		if c.SimDir, err = sim.DefaultDir(); err != nil {
			return c, fmt.Errorf("host: run: %w", err)
		}
	}
	if c.StorePath == "" {
		dir, err := DefaultStateDir()
		if err != nil {
			return c, err
		}
		c.StorePath = filepath.Join(dir, filepath.Base(c.App)+".db")
	}
	if c.Stdout == nil {
		c.Stdout = os.Stdout
	}
	if c.Stderr == nil {
		c.Stderr = os.Stderr
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Grace <= 0 {
		c.Grace = DefaultGrace
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c, nil
}

// DefaultStateDir is where Run keeps state when no path is given:
// $XDG_STATE_HOME/cloister, else ~/.local/state/cloister.
func DefaultStateDir() (string, error) {
	if d := os.Getenv("XDG_STATE_HOME"); d != "" {
		return filepath.Join(d, "cloister"), nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("host: no state directory: %w (pass --state)", err)
	}
	return filepath.Join(home, ".local", "state", "cloister"), nil
}

// Run measures cfg.App, launches it as a simulated enclave (or as a
// process of the confidential VM, with cfg.Platform) and serves its
// host calls until it exits, then returns its exit status (128+n if a
// signal n ended it). The error reports a failure to launch or serve, not
// the app's own failure.
//
// Stopping: when ctx ends Run sends the app SIGTERM (the enclave SDK
// cancels the app's context) and kills it after cfg.Grace. Callers turn
// SIGINT and SIGTERM into ctx's end (signal.NotifyContext), so both reach
// the app as SIGTERM; Run installs no signal handlers of its own. The app
// also dies with Run's process (PR_SET_PDEATHSIG).
//
// The app inherits the region (fd 3) and wire.EnvBoundary naming it, and no other environment: the host's
// environment is not the enclave's to trust.
func Run(ctx context.Context, cfg Config) (int, error) {
	cfg, err := cfg.validate()
	if err != nil {
		return 0, err
	}
	if cfg.TEE == tee.KindSGX {
		return runGramine(ctx, cfg)
	}
	log := cfg.Logger
	// In a confidential VM the measurement is what the platform reports
	// (RTMR3 on TDX): hash a sealed copy and execute that copy, never the
	// path again (sealedImage). The simulator keeps executing the path.
	measured := cfg.App
	var img *os.File
	if cfg.Platform != nil {
		if img, err = sealedImage(cfg.App); err != nil {
			return 0, err
		}
		defer img.Close()
		measured = procFD(img)
	}
	app, err := sim.AppFromFiles(measured, cfg.Sig)
	if err != nil {
		return 0, fmt.Errorf("host: run: measure %s: %w", cfg.App, err)
	}
	plat := cfg.Platform
	if plat == nil {
		pki, err := sim.Load(cfg.SimDir, rand.Reader, cfg.Now())
		if err != nil {
			return 0, fmt.Errorf("host: run: %w", err)
		}
		if plat, err = sim.NewPlatform(pki, cfg.TEE, app, nil); err != nil {
			return 0, fmt.Errorf("host: run: %w", err)
		}
	}
	log.Info("enclave measured", "app", cfg.App, "tee", cfg.TEE,
		"mrenclave", hex.EncodeToString(app.MRENCLAVE[:]), "mrsigner", hex.EncodeToString(app.MRSIGNER[:]),
		"debug", app.Debug, "sim_dir", cfg.SimDir)

	store, err := OpenBoltStore(cfg.StorePath)
	if err != nil {
		return 0, fmt.Errorf("host: run: %w", err)
	}
	defer store.Close()
	log.Info("sealed records", "store", cfg.StorePath)

	svc, err := NewServices(ServiceOptions{Listen: cfg.Listen, Dial: cfg.Dial, Store: store, Platform: plat, Logger: log, Now: cfg.Now})
	if err != nil {
		return 0, fmt.Errorf("host: run: %w", err)
	}
	defer svc.Close()
	region, err := boundary.Create(wire.RegionConfig())
	if err != nil {
		return 0, fmt.Errorf("host: run: %w", err)
	}
	defer region.Close()
	table, err := wire.Table()
	if err != nil {
		return 0, fmt.Errorf("host: run: %w", err)
	}
	server, err := boundary.NewServer(region, table, svc.Handle)
	if err != nil {
		return 0, fmt.Errorf("host: run: %w", err)
	}
	server.SetDefer(svc.Defer)

	if cfg.BeforeStart != nil {
		if err := cfg.BeforeStart(app); err != nil {
			return 0, fmt.Errorf("host: run: %w", err)
		}
	}
	cmd, mode, err := start(cfg, region.File(), img)
	if err != nil {
		return 0, err
	}
	log.Info(mode)
	log.Info("enclave started", "pid", cmd.Process.Pid)

	return supervise(ctx, cfg, server, cmd)
}

// supervise serves the app's host calls until it exits, stopping it on
// ctx's end (SIGTERM, then SIGKILL after cfg.Grace), and returns its exit
// status.
func supervise(ctx context.Context, cfg Config, server *boundary.Server, cmd *exec.Cmd) (int, error) {
	log := cfg.Logger
	// Serve until the app is gone. The server stops before the region is
	// unmapped (deferred by the caller, run after this function returns).
	serveCtx, stopServe := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- server.Serve(serveCtx) }()
	defer func() {
		stopServe()
		server.Close()
		<-served
	}()

	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	var waitErr error
	select {
	case waitErr = <-exited:
	case <-ctx.Done():
		log.Info("stopping the enclave", "signal", "SIGTERM", "grace", cfg.Grace)
		cmd.Process.Signal(syscall.SIGTERM)
		t := time.NewTimer(cfg.Grace)
		select {
		case waitErr = <-exited:
			t.Stop()
		case <-t.C:
			log.Warn("the enclave did not stop in time; killing it")
			cmd.Process.Kill()
			waitErr = <-exited
		}
	}
	code, err := exitCode(cmd, waitErr)
	if err != nil {
		return 0, err
	}
	log.Info("enclave exited", "status", code)
	return code, nil
}

// exitCode turns cmd.Wait's result into an exit status.
func exitCode(cmd *exec.Cmd, waitErr error) (int, error) {
	var ee *exec.ExitError
	if waitErr != nil && !errors.As(waitErr, &ee) {
		return 0, fmt.Errorf("host: run: wait: %w", waitErr)
	}
	ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus)
	if ok && ws.Signaled() {
		return 128 + int(ws.Signal()), nil
	}
	return cmd.ProcessState.ExitCode(), nil
}
