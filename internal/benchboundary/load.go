package benchboundary

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"time"
)

// BurnEnv is set (to "1") in the environment of the CPU-burning processes
// Run starts for Options.Load. The program that Run starts must, seeing it,
// call Burn and exit.
const BurnEnv = "CLOISTER_BENCH_BOUNDARY_BURN"

// MaxLoad bounds Options.Load.
const MaxLoad = 64

// Burn keeps one CPU busy until ctx ends or the process is killed (Run
// kills its burners when it is done; Pdeathsig kills them if Run's process
// dies first). It returns nil.
func Burn(ctx context.Context) error {
	x := uint64(1)
	for i := 0; ; i++ {
		// A little arithmetic, kept live through burnSink, then a cheap
		// check now and then.
		x = x*6364136223846793005 + 1442695040888963407
		if i%(1<<20) == 0 && ctx.Err() != nil {
			burnSink = x
			return nil
		}
	}
}

// burnSink keeps Burn's arithmetic from being optimised away.
var burnSink uint64

// burners are the load processes of one Run.
type burners []*exec.Cmd

// startBurners starts n processes of opts.Exe running Burn.
func startBurners(ctx context.Context, opts Options, n int) (burners, error) {
	var b burners
	for range n {
		cmd := exec.CommandContext(ctx, opts.Exe, opts.Args...)
		cmd.Env = append(os.Environ(), BurnEnv+"=1")
		cmd.Stderr = opts.Stderr
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		cmd.WaitDelay = 5 * time.Second
		if err := cmd.Start(); err != nil {
			b.stop()
			return nil, fmt.Errorf("start load process: %w", err)
		}
		b = append(b, cmd)
	}
	return b, nil
}

// stop kills every burner and waits for it.
func (b burners) stop() {
	for _, cmd := range b {
		cmd.Process.Kill()
	}
	for _, cmd := range b {
		var ee *exec.ExitError
		if err := cmd.Wait(); err != nil && !errors.As(err, &ee) {
			continue // already reaped or never started: nothing to do
		}
	}
}
