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

// start launches the app with the region as fd 3.
// With cfg.Netns it first tries a new network namespace (as root
// CLONE_NEWNET alone; otherwise inside a new user namespace mapping the
// caller's ids), and falls back to the host's network if the kernel says
// no. It returns the started command and the log line naming the mode.
func start(cfg Config, region *os.File) (*exec.Cmd, string, error) {
	mk := func(attr *syscall.SysProcAttr) *exec.Cmd {
		cmd := exec.Command(cfg.App, cfg.Args...)
		cmd.Env = []string{wire.EnvBoundary + "=" + wire.Launch{RegionFD: 3, TEE: string(cfg.TEE)}.String()}
		cmd.ExtraFiles = []*os.File{region}
		cmd.Stdout, cmd.Stderr = cfg.Stdout, cfg.Stderr
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
		cmd := mk(attr)
		err := cmd.Start()
		if err == nil {
			return cmd, modeIsolated, nil
		}
		if _, statErr := os.Stat(cfg.App); statErr != nil {
			return nil, "", fmt.Errorf("host: run: start %s: %w", cfg.App, err)
		}
		reason = "cannot create one: " + err.Error()
	}
	cmd := mk(&syscall.SysProcAttr{})
	if err := cmd.Start(); err != nil {
		return nil, "", fmt.Errorf("host: run: start %s: %w", cfg.App, err)
	}
	return cmd, modeShared + " (no namespace: " + reason + ")", nil
}
