package host

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"

	"github.com/cloister-dev/cloister/boundary"
	"github.com/cloister-dev/cloister/host/wire"
	"github.com/cloister-dev/cloister/tee/gramine/manifest"
)

// Gramine's tools, as its packages install them.
const (
	gramineSign = "gramine-sgx-sign"
	gramineSGX  = "gramine-sgx"
)

// GramineOptions configures Run for tee.KindSGX: the app runs under
// Gramine (gramine-sgx), whose manifest Cloister writes next to the app.
type GramineOptions struct {
	// Manifest is the app's manifest (manifest.ForApp over Config.App);
	// required. Run writes it to APP.manifest in the app's directory.
	Manifest *manifest.Manifest
	// Key is gramine-sgx-sign's --key (an RSA-3072 key, exponent 3);
	// "" leaves Gramine's default (~/.config/gramine/enclave-key.pem).
	Key string
	// Tools is the directory holding gramine-sgx-sign and gramine-sgx;
	// "" finds them on $PATH.
	Tools string
	// DirectAttestRoot is a test mode: when set, Run neither signs nor
	// starts gramine-sgx but runs the app directly as the manifest says
	// (its argv, its fixed environment, its passthrough variables, in the
	// app's directory), with the launch value's attest= naming this
	// directory as the app's /dev/attestation. Everything else (the
	// manifest, the /dev/shm files, the services) is the real path. The
	// enclave SDK refuses attest= inside Gramine. Not for production: the
	// app is not in an enclave.
	DirectAttestRoot string
}

// validate checks the Gramine options of cfg once, at Run's entry.
func (g GramineOptions) validate(cfg Config) error {
	if g.Manifest == nil {
		return errors.New("host: run: tee sgx: no Gramine manifest")
	}
	if cfg.Sig != "" {
		return errors.New("host: run: tee sgx: a Cloister signature (--sig) has no meaning under Gramine: gramine-sgx-sign signs the enclave (--gramine-key)")
	}
	if name := g.Manifest.Name(); filepath.Base(cfg.App) != name {
		return fmt.Errorf("host: run: tee sgx: the manifest is for %q, the app is %s", name, cfg.App)
	}
	if len(cfg.Args) > 0 {
		return errors.New("host: run: tee sgx: arguments are fixed in the manifest (loader.argv), not given at run time")
	}
	if g.DirectAttestRoot != "" && !filepath.IsAbs(g.DirectAttestRoot) {
		return fmt.Errorf("host: run: direct mode: attestation root %q is not absolute", g.DirectAttestRoot)
	}
	return nil
}

// runGramine is Run for tee.KindSGX. The host serves network, storage and
// time only: evidence and sealing keys come from Gramine's /dev/attestation
// inside the enclave, never from the host.
func runGramine(ctx context.Context, cfg Config) (int, error) {
	log := cfg.Logger
	g := cfg.Gramine
	m := g.Manifest
	name := m.Name()
	dir := filepath.Dir(cfg.App)

	lock, err := lockShm(name)
	if err != nil {
		return 0, err
	}
	defer lock.release()

	store, err := OpenBoltStore(cfg.StorePath)
	if err != nil {
		return 0, fmt.Errorf("host: run: %w", err)
	}
	defer store.Close()
	log.Info("sealed records", "store", cfg.StorePath)

	svc, err := NewServices(ServiceOptions{Listen: cfg.Listen, Dial: cfg.Dial, Store: store, Logger: log, Now: cfg.Now})
	if err != nil {
		return 0, fmt.Errorf("host: run: %w", err)
	}
	defer svc.Close()
	rcfg := wire.RegionConfig()
	rcfg.Path = manifest.RegionPath(name)
	region, err := boundary.Create(rcfg)
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

	text, err := m.Marshal()
	if err != nil {
		return 0, fmt.Errorf("host: run: %w", err)
	}
	manifestPath := filepath.Join(dir, name+".manifest")
	if err := os.WriteFile(manifestPath, text, 0o644); err != nil {
		return 0, fmt.Errorf("host: run: writing the manifest: %w", err)
	}
	log.Info("gramine manifest", "path", manifestPath, "region", rcfg.Path)

	var mk func() *exec.Cmd
	prog := cfg.App // what startWith names in errors
	if g.DirectAttestRoot != "" {
		log.Warn("TEST MODE: running the app directly, not under gramine-sgx: it is not in an enclave", "attestation", g.DirectAttestRoot)
		if mk, err = directCommand(cfg, m, g.DirectAttestRoot); err != nil {
			return 0, err
		}
	} else {
		if err := signManifest(ctx, cfg, dir, name); err != nil {
			return 0, err
		}
		tool, err := gramineTool(g.Tools, gramineSGX)
		if err != nil {
			return 0, err
		}
		prog = tool
		mk = func() *exec.Cmd {
			cmd := exec.Command(tool, name)
			cmd.Dir = dir
			// gramine-sgx needs the host's environment (and reads the
			// manifest's passthrough variables from it); the enclave gets
			// only what the signed manifest lists.
			cmd.Env = os.Environ()
			cmd.Stdout, cmd.Stderr = cfg.Stdout, cfg.Stderr
			return cmd
		}
	}
	cmd, mode, err := startWith(cfg, prog, mk)
	if err != nil {
		return 0, err
	}
	log.Info(mode)
	log.Info("enclave started", "pid", cmd.Process.Pid, "tee", cfg.TEE)
	return supervise(ctx, cfg, server, cmd)
}

// signCommand is the gramine-sgx-sign invocation for the app named name,
// run in its directory: it writes NAME.manifest.sgx (the manifest with the
// LibOS and trusted-file hashes filled in) and NAME.sig (SIGSTRUCT, whose
// MRENCLAVE gramine-sgx-sigstruct-view prints).
func signCommand(tool, name, key string) []string {
	args := []string{tool, "--manifest", name + ".manifest", "--output", name + ".manifest.sgx"}
	if key != "" {
		args = append(args, "--key", key)
	}
	return args
}

// signManifest runs gramine-sgx-sign; its output goes to the log.
func signManifest(ctx context.Context, cfg Config, dir, name string) error {
	tool, err := gramineTool(cfg.Gramine.Tools, gramineSign)
	if err != nil {
		return err
	}
	args := signCommand(tool, name, cfg.Gramine.Key)
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	cmd.Dir = dir
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("host: run: %s failed: %w\n%s", gramineSign, err, out.Bytes())
	}
	cfg.Logger.Info("signed", "tool", gramineSign, "sig", filepath.Join(dir, name+".sig"), "output", out.String())
	return nil
}

// gramineTool finds one of Gramine's tools in dir or on $PATH.
func gramineTool(dir, tool string) (string, error) {
	if dir != "" {
		p := filepath.Join(dir, tool)
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("host: run: %s: %w", tool, err)
		}
		return p, nil
	}
	p, err := exec.LookPath(tool)
	if err != nil {
		return "", fmt.Errorf("host: run: %s not found on $PATH: install Gramine 1.8 or later (README, \"Running on SGX (Gramine)\"): %w", tool, err)
	}
	return p, nil
}

// directCommand returns the test mode's command maker: the app as the
// manifest launches it under Gramine (loader.argv with the host's path
// for argv[0]'s file, loader.env's fixed values, the listed host
// variables), with attest=root added to the launch value.
func directCommand(cfg Config, m *manifest.Manifest, root string) (func() *exec.Cmd, error) {
	var env []string
	for _, kv := range m.FixedEnv() {
		k, v, _ := bytes.Cut([]byte(kv), []byte("="))
		if string(k) == wire.EnvBoundary {
			l, err := wire.ParseLaunch(string(v))
			if err != nil {
				return nil, fmt.Errorf("host: run: the manifest's %s: %w", wire.EnvBoundary, err)
			}
			l.AttestRoot = root
			kv = wire.EnvBoundary + "=" + l.String()
		}
		env = append(env, kv)
	}
	for _, k := range m.PassthroughEnv() {
		if v, ok := os.LookupEnv(k); ok {
			env = append(env, k+"="+v)
		}
	}
	argv := m.Loader.Argv
	return func() *exec.Cmd {
		cmd := exec.Command(cfg.App, argv[1:]...)
		cmd.Args[0] = argv[0]
		cmd.Dir = filepath.Dir(cfg.App)
		cmd.Env = env
		cmd.Stdout, cmd.Stderr = cfg.Stdout, cfg.Stderr
		return cmd
	}, nil
}

// shmLock is the exclusive right to an app name's /dev/shm files: one
// `cloister run --tee sgx` per app name per machine, since the manifest
// (measured) fixes the file names.
type shmLock struct {
	f    *os.File
	path string
	name string
}

// lockShm takes /dev/shm/cloister-NAME.lock (flock, held until release)
// and removes the region file a crashed run may have left:
// holding the lock proves no live run uses them.
func lockShm(name string) (*shmLock, error) {
	p := filepath.Join(wire.ShmDir, "cloister-"+name+".lock")
	for range 3 {
		f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE|syscall.O_NOFOLLOW, 0o600)
		if err != nil {
			return nil, fmt.Errorf("host: run: %s: %w", p, err)
		}
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
			f.Close()
			if errors.Is(err, syscall.EWOULDBLOCK) {
				return nil, fmt.Errorf("host: run: another 'cloister run' is serving the app %q on this machine (%s is locked)", name, p)
			}
			return nil, fmt.Errorf("host: run: lock %s: %w", p, err)
		}
		// The file may have been removed (by the run that held it) between
		// our open and our lock: then the lock is on a dead inode; retry.
		var a, b syscall.Stat_t
		if syscall.Fstat(int(f.Fd()), &a) != nil || syscall.Stat(p, &b) != nil || a.Ino != b.Ino || a.Dev != b.Dev {
			f.Close()
			continue
		}
		for _, stale := range []string{manifest.RegionPath(name)} {
			if err := os.Remove(stale); err != nil && !errors.Is(err, os.ErrNotExist) {
				f.Close()
				return nil, fmt.Errorf("host: run: removing a stale %s: %w", stale, err)
			}
		}
		return &shmLock{f: f, path: p, name: name}, nil
	}
	return nil, fmt.Errorf("host: run: %s keeps changing under us", p)
}

// release removes the app's /dev/shm files and the lock file, then drops
// the lock (removal first, so whoever locks next finds a fresh inode).
func (l *shmLock) release() {
	os.Remove(manifest.RegionPath(l.name))
	os.Remove(l.path)
	l.f.Close()
}
