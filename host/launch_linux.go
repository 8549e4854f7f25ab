package host

import (
	"fmt"
	"os"
	"os/exec"
	"syscall"

	"github.com/cloister-dev/cloister/host/wire"
)

// Log messages naming the network mode; tests and operators look for them.
const (
	modeIsolated = "network: isolated namespace, all traffic through the rings"
	modeShared   = "network: shared with the host"
)

// start launches the app with the region as its first inherited descriptor
// (appCommand; startWith says how). With img (sealedImage) it executes img,
// passed as the next descriptor, instead of the path (argv[0] still names
// cfg.App).
func start(cfg Config, region, img *os.File) (*exec.Cmd, string, error) {
	return startWith(cfg, cfg.App, func() *exec.Cmd {
		cmd := appCommand(cfg, region, img)
		cmd.Stdout, cmd.Stderr = cfg.Stdout, cfg.Stderr
		return cmd
	})
}

// appCommand makes the app's command: the region and img (if any) are
// inherited in that order, and the descriptor numbers the child is told
// (the launch value's region=, the /proc/self/fd/N it executes) are taken
// from where each file lands in ExtraFiles (os/exec gives ExtraFiles[i]
// descriptor 3+i), so adding or removing a file cannot leave a number
// pointing at the wrong one.
func appCommand(cfg Config, region, img *os.File) *exec.Cmd {
	cmd := exec.Command(cfg.App, cfg.Args...)
	inherit := func(f *os.File) int {
		cmd.ExtraFiles = append(cmd.ExtraFiles, f)
		return 3 + len(cmd.ExtraFiles) - 1
	}
	cmd.Env = []string{wire.EnvBoundary + "=" + wire.Launch{RegionFD: inherit(region), TEE: string(cfg.TEE)}.String()}
	if cfg.Broker != "" {
		// Only an address: the app pins the broker's identity itself.
		cmd.Env = append(cmd.Env, wire.EnvBrokerURL+"="+cfg.Broker)
	}
	if img != nil {
		// Not close-on-exec in the child, so a script's interpreter can
		// open it too.
		cmd.Path, cmd.Err = fmt.Sprintf("/proc/self/fd/%d", inherit(img)), nil
	}
	return cmd
}

// startWith starts the command mk makes (a fresh one per attempt). With
// cfg.Netns it first tries a new network namespace (as root CLONE_NEWNET
// alone; otherwise inside a new user namespace mapping the caller's ids),
// and falls back to the host's network if the kernel says no. It returns
// the started command and the log line naming the mode.
//
// name is the program as the operator knows it, for errors and for telling
// a missing program from a refused namespace: cmd.Path may be
// /proc/self/fd/N of the child, which means nothing in this process.
func startWith(cfg Config, name string, mk func() *exec.Cmd) (*exec.Cmd, string, error) {
	build := func(attr *syscall.SysProcAttr) *exec.Cmd {
		cmd := mk()
		// The enclave must not outlive its host: nobody would serve it.
		attr.Pdeathsig = syscall.SIGKILL
		cmd.SysProcAttr = attr
		return cmd
	}
	reason := "not asked for (--netns=false)"
	if cfg.Netns {
		attr := &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET}
		if os.Geteuid() != 0 {
			uid, gid := os.Getuid(), os.Getgid()
			attr.Cloneflags |= syscall.CLONE_NEWUSER
			attr.UidMappings = []syscall.SysProcIDMap{{ContainerID: uid, HostID: uid, Size: 1}}
			attr.GidMappings = []syscall.SysProcIDMap{{ContainerID: gid, HostID: gid, Size: 1}}
			attr.GidMappingsEnableSetgroups = false
		}
		cmd := build(attr)
		err := cmd.Start()
		if err == nil {
			return cmd, modeIsolated, nil
		}
		if _, statErr := os.Stat(name); statErr != nil {
			return nil, "", fmt.Errorf("host: run: start %s: %w", name, err)
		}
		reason = "cannot create one: " + err.Error()
	}
	cmd := build(&syscall.SysProcAttr{})
	if err := cmd.Start(); err != nil {
		return nil, "", fmt.Errorf("host: run: start %s: %w", name, err)
	}
	return cmd, modeShared + " (no namespace: " + reason + ")", nil
}
