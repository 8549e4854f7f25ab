package main

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"

	"github.com/cloister-dev/cloister/host"
	"github.com/cloister-dev/cloister/tee"
)

const runCmdHelp = `Run APP as a simulated enclave: measure it (as 'cloister measure' does),
start it with the shared-memory boundary, serve its host calls (network,
storage, untrusted time, quoting), and stop it cleanly on SIGINT/SIGTERM
(SIGTERM to the app, SIGKILL after --grace). Arguments after "--" go to APP.
The exit status is APP's (128+N if signal N ended it).

APP must be built with the enclave SDK (package enclave). It may listen only
on the --listen addresses, named by port (listening on ":8443" binds the
--listen entry with port 8443), and dial any TCP address unless --dial
names the allowed ones. Its sealed records are kept in a bbolt file under
--state (default $XDG_STATE_HOME/cloister or ~/.local/state/cloister).

With --netns (the default) APP runs in its own network namespace where the
machine permits (root, or user namespaces), so every byte goes through the
boundary; the log says which mode it runs in.

--broker URL tells the app where the key broker is (enclave.Env.Secret);
the app pins the broker's identity itself, so the URL needs no trust.
APP may be an encrypted bundle ('cloister sign --encrypt'): it is measured
and launched like any app, and its loader gets the key from the broker,
decrypts the app inside the enclave and runs it there (on sim-sgx).
` + runSGXHelp + runCVMHelp + simHelpCommon

func runRun(e *env, args []string) error {
	fs := newFlagSet("run", "APP [--tee sim-sgx|sim-tdx|sgx|tdx|sev-snp|auto] [--sig APP.sig] [--listen ADDR]... [--dial ADDR]... [--broker URL] [--sim-dir DIR] [--state DIR] [-- APP-ARGS]", runCmdHelp)
	kind := fs.String("tee", string(tee.KindSimSGX), "`TEE`: sim-sgx, sim-tdx, sgx (under Gramine), or tdx, sev-snp or auto (a confidential VM)")
	sgxFlags := addSGXRunFlags(fs)
	sigFile := fs.String("sig", "", "the app's signature `FILE` (from 'cloister sign'); default: measure unsigned")
	var listen, dial stringList
	fs.Var(&listen, "listen", "`ADDR` (host:port) the app may listen on; repeatable")
	fs.Var(&dial, "dial", "`ADDR` (host:port or host:*) the app may dial; repeatable; default: any")
	broker := fs.String("broker", "", "key broker `URL` handed to the app for enclave.Env.Secret (untrusted: the app pins the broker)")
	state := fs.String("state", "", "state `DIR` for the app's sealed records")
	netns := fs.Bool("netns", true, "run the app in its own network namespace where permitted")
	grace := fs.Duration("grace", host.DefaultGrace, "how long the app may take to stop after SIGTERM")
	dir := simDirFlag(fs)
	var cvm cvmFlags
	cvm.register(fs)
	pos, err := parseArgs(e, fs, args)
	if err != nil {
		return err
	}
	if len(pos) == 0 {
		return usagef("missing APP")
	}
	if err := checkChoice("tee", *kind, runTEEKinds); err != nil {
		return err
	}
	if err := sgxFlags.checkSimOnly(*kind); err != nil {
		return err
	}
	for _, a := range listen {
		if err := checkHostPort("listen", a, false, false); err != nil {
			return err
		}
	}
	for _, a := range dial {
		if err := checkHostPort("dial", a, false, true); err != nil {
			return err
		}
	}
	if *broker != "" && !strings.HasPrefix(*broker, "https://") {
		return usagef("--broker %s: want https://HOST:PORT", *broker)
	}
	if *grace < 0 {
		return usagef("--grace %v: want a duration >= 0 (0: the default %v)", *grace, host.DefaultGrace)
	}
	var simDir string
	if !isCVMKind(*kind) && *kind != string(tee.KindSGX) {
		if simDir, err = dir(); err != nil {
			return err
		}
	}
	// The app and the log share stderr. A file is handed to the app as is;
	// anything else is copied by os/exec on its own goroutine, so writes
	// from both sides are serialised.
	stderr := e.stderr
	if _, ok := stderr.(*os.File); !ok {
		stderr = &lockedWriter{w: stderr}
	}
	cfg := host.Config{
		App: pos[0], Args: pos[1:], Sig: *sigFile, TEE: tee.Kind(*kind), SimDir: simDir,
		Listen: listen, Dial: dial, Broker: *broker, Stdout: e.stdout, Stderr: stderr,
		Logger: slog.New(slog.NewTextHandler(stderr, nil)), Netns: *netns, Grace: *grace, Now: e.now,
	}
	if *state != "" {
		cfg.StorePath = filepath.Join(*state, filepath.Base(pos[0])+".db")
	}
	if *kind == string(tee.KindSGX) {
		if err := sgxFlags.apply(&cfg); err != nil {
			return err
		}
	}
	ctx, stop := signal.NotifyContext(e.ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if isCVMKind(*kind) {
		if err := prepareCVM(ctx, e, &cfg, *kind, cvm, cfg.Logger); err != nil {
			return err
		}
	}
	code, err := host.Run(ctx, cfg)
	if err != nil {
		return err
	}
	if code != 0 {
		return &exitStatusError{code: code, msg: fmt.Sprintf("app exited with status %d", code)}
	}
	return nil
}

// lockedWriter serialises writes to w.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
