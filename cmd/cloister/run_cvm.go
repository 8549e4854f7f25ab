package main

import (
	"context"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"log/slog"

	"github.com/cloister-dev/cloister/evidence/eventlog"
	"github.com/cloister-dev/cloister/host"
	"github.com/cloister-dev/cloister/tee"
	"github.com/cloister-dev/cloister/tee/probe"
	"github.com/cloister-dev/cloister/tee/sim"
	"github.com/cloister-dev/cloister/tee/tsm"
)

// runCVMHelp is the part of 'run --help' about confidential VMs.
const runCVMHelp = `
In a confidential VM (--tee tdx, sev-snp, or auto, which probes configfs-tsm
and never falls back to the simulator) the whole VM is the TEE: cloister run
is inside it with the app, opens configfs-tsm itself and serves the app's
evidence through the same boundary. On TDX, before the app starts, its
digest (what 'cloister measure' prints) is recorded in the runtime event
log (--runtime-log, default /run/cloister/rtmr3.log) and extended into
RTMR3 through the kernel (Linux 6.16+ sysfs measurement files, or the
configfs-tsm rtmrs interface); without that interface the launch is refused
unless --no-runtime-measurement, and the evidence then does not name the
app. Hand the log to 'cloister verify evidence --event-log'. SEV-SNP has no
runtime measurement register: the app is not measured into the evidence.
TDX has no sealing key (the app's SealKey fails: keys come from a key
broker); SEV-SNP sealing keys are derived by the AMD secure processor.
`

// cvmDeps are the kernel interfaces `cloister run` uses in a confidential
// VM. The zero value is the real machine; tests put go-configfs-tsm's
// fakes here (env.cvm).
type cvmDeps struct {
	// TSMPath is where --tee auto looks for configfs-tsm.
	TSMPath string
	// TSM is the configfs-tsm report backend.
	TSM tsm.Config
	// RTMR is the RTMR extension interface.
	RTMR tsm.RTMRConfig
}

// cvmFlags are run's confidential-VM flags.
type cvmFlags struct {
	noMeasure  bool
	runtimeLog string
}

func (f *cvmFlags) register(fs *flag.FlagSet) {
	fs.BoolVar(&f.noMeasure, "no-runtime-measurement", false, "TDX: start the app without extending its digest into RTMR3 (the evidence will not name it)")
	fs.StringVar(&f.runtimeLog, "runtime-log", tsm.DefaultRuntimeLog, "TDX: the runtime event `FILE` that records what was extended into RTMR3")
}

// runTEEKinds are run's --tee values.
var runTEEKinds = append(append([]string(nil), simTEEKinds...), string(tee.KindSGX), string(tee.KindTDX), string(tee.KindSNP), probe.Auto)

// isCVMKind reports whether kind runs the app in a confidential VM.
func isCVMKind(kind string) bool {
	return kind == string(tee.KindTDX) || kind == string(tee.KindSNP) || kind == probe.Auto
}

// prepareCVM opens the confidential VM's platform (configfs-tsm) for cfg
// and, on TDX, the RTMR3 measurement that runs just before the app starts.
// Everything that can be refused is refused here, before anything starts.
func prepareCVM(ctx context.Context, e *env, cfg *host.Config, kind string, f cvmFlags, log *slog.Logger) error {
	var deps cvmDeps
	if e.cvm != nil {
		deps = *e.cvm
	}
	p, found, err := probe.Open(ctx, probe.Config{TEE: kind, TSMPath: deps.TSMPath, TSM: deps.TSM, Now: e.now})
	if err != nil {
		return err
	}
	if found.Kind != tee.KindTDX && found.Kind != tee.KindSNP {
		return fmt.Errorf("--tee %s found %s (%s): cloister run starts apps in a confidential VM (tdx, sev-snp) or on the simulator", kind, found.Kind, found.How)
	}
	log.Info("confidential VM", "tee", found.Kind, "via", found.How)
	cfg.TEE, cfg.Platform = found.Kind, p
	if found.Kind == tee.KindSNP {
		cfg.BeforeStart = func(sim.App) error {
			log.Warn("SEV-SNP has no runtime measurement register: the app is not measured into the evidence, whose MEASUREMENT covers the launched VM image only")
			return nil
		}
		return nil
	}
	if f.noMeasure {
		cfg.BeforeStart = func(sim.App) error {
			log.Warn("runtime measurement skipped (--no-runtime-measurement): RTMR3 does not name the app, and a verifier replaying the log will say nothing was measured")
			return nil
		}
		return nil
	}
	reg, err := tsm.OpenRTMR(deps.RTMR, eventlog.RuntimeRegister)
	if err != nil {
		if errors.Is(err, tsm.ErrNoRTMRInterface) {
			return fmt.Errorf("%w\nThe app's digest cannot be extended into RTMR3 on this kernel. Use Linux 6.16 or later, or pass --no-runtime-measurement to run the app unmeasured (the evidence will then not name it)", err)
		}
		return err
	}
	cfg.BeforeStart = func(app sim.App) error {
		m, err := tsm.MeasureApp(ctx, reg, f.runtimeLog, eventlog.App{
			Measurement: app.MRENCLAVE, Signer: app.MRSIGNER, ProductID: app.ProductID, SVN: app.SVN, Debug: app.Debug,
		})
		if err != nil {
			return err
		}
		if m.Dropped > 0 {
			log.Warn("dropped events an earlier launch logged but never extended", "events", m.Dropped, "runtime_log", f.runtimeLog)
		}
		log.Info("app measured into RTMR3", "app_digest", hex.EncodeToString(app.MRENCLAVE[:]),
			"rtmr3", hex.EncodeToString(m.RTMR3[:]), "runtime_log", f.runtimeLog, "via", reg.How())
		return nil
	}
	return nil
}
