//go:build unix

package main

import (
	"syscall"
	"time"
)

// processCPU returns the user+system CPU time this process has used. Rates
// swing with other load on a shared machine; CPU time per operation does
// much less, so the benchmarks report both.
func processCPU() (time.Duration, bool) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0, false
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), true
}
