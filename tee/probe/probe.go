// Package probe chooses a tee.Platform at run time (`--tee auto|sim-sgx|
// sim-tdx|tdx|sev-snp|sgx`). auto looks for Linux configfs-tsm (TDX or
// SEV-SNP), then for Gramine's /dev/attestation (SGX), and says which it
// found, or that none was found and how to use the simulator instead. It
// never falls back to the simulator by itself: simulated evidence must be
// asked for.
package probe

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/cloister-dev/cloister/tee"
	"github.com/cloister-dev/cloister/tee/gramine"
	"github.com/cloister-dev/cloister/tee/sim"
	"github.com/cloister-dev/cloister/tee/tsm"
)

// Default locations of the hardware interfaces.
const (
	DefaultTSMPath     = "/sys/kernel/config/tsm/report"
	DefaultGramineRoot = "/dev/attestation"
)

// Choices of Config.TEE.
const (
	Auto = "auto"
)

// Config says which platform to open and where to find it.
type Config struct {
	// TEE is "auto" (the default when empty) or a tee.Kind.
	TEE string
	// TSMPath and GramineRoot override where auto looks (tests).
	TSMPath     string
	GramineRoot string
	// TSM configures the configfs-tsm backend (its Client replaces the
	// kernel's for tests).
	TSM tsm.Config
	// SimDir is the simulator's data directory; required for sim kinds.
	SimDir string
	// SimApp is the identity of the simulated app (sim.AppFromFiles).
	SimApp sim.App
	// Rand and Now serve the simulator; crypto/rand and time.Now when nil.
	Rand io.Reader
	Now  func() time.Time
}

// Found says which platform Open chose and why.
type Found struct {
	Kind tee.Kind
	// How names the interface used, e.g. "configfs-tsm at /sys/kernel/config/tsm/report".
	How string
}

// ErrNoTEE is returned by auto when no hardware interface is present.
var ErrNoTEE = errors.New("probe: no TEE found")

// Open returns the platform cfg names.
func Open(ctx context.Context, cfg Config) (tee.Platform, Found, error) {
	tsmPath, gramineRoot := cfg.TSMPath, cfg.GramineRoot
	if tsmPath == "" {
		tsmPath = DefaultTSMPath
	}
	if gramineRoot == "" {
		gramineRoot = DefaultGramineRoot
	}
	switch tee.Kind(cfg.TEE) {
	case "", Auto:
		if isDir(tsmPath) {
			return openTSM(ctx, cfg, tsmPath, "")
		}
		if exists(filepath.Join(gramineRoot, "attestation_type")) {
			return openGramine(ctx, gramineRoot)
		}
		return nil, Found{}, fmt.Errorf("%w: no configfs-tsm at %s (TDX, SEV-SNP) and no Gramine %s (SGX); "+
			"to develop without hardware, pass --tee sim-sgx or --tee sim-tdx", ErrNoTEE, tsmPath, gramineRoot)
	case tee.KindTDX, tee.KindSNP:
		return openTSM(ctx, cfg, tsmPath, tee.Kind(cfg.TEE))
	case tee.KindSGX:
		return openGramine(ctx, gramineRoot)
	case tee.KindSimSGX, tee.KindSimTDX:
		if cfg.SimDir == "" {
			return nil, Found{}, errors.New("probe: the simulator needs a data directory")
		}
		now := cfg.Now
		if now == nil {
			now = time.Now
		}
		pki, err := sim.Load(cfg.SimDir, randOr(cfg.Rand), now())
		if err != nil {
			return nil, Found{}, err
		}
		p, err := sim.NewPlatform(pki, tee.Kind(cfg.TEE), cfg.SimApp, cfg.Rand)
		if err != nil {
			return nil, Found{}, err
		}
		return p, Found{Kind: p.Kind(), How: "simulator, keys in " + cfg.SimDir + " (NOT FOR PRODUCTION)"}, nil
	}
	return nil, Found{}, fmt.Errorf("probe: unknown TEE %q: want auto, sim-sgx, sim-tdx, tdx, sev-snp or sgx", cfg.TEE)
}

func openTSM(ctx context.Context, cfg Config, path string, want tee.Kind) (tee.Platform, Found, error) {
	if cfg.TSM.Client == nil && !isDir(path) {
		return nil, Found{}, fmt.Errorf("%w: no configfs-tsm at %s", ErrNoTEE, path)
	}
	p, err := tsm.Open(ctx, cfg.TSM)
	if err != nil {
		return nil, Found{}, err
	}
	if want != "" && p.Kind() != want {
		return nil, Found{}, fmt.Errorf("probe: asked for %s, but configfs-tsm at %s serves %s", want, path, p.Kind())
	}
	return p, Found{Kind: p.Kind(), How: "configfs-tsm at " + path}, nil
}

func openGramine(ctx context.Context, root string) (tee.Platform, Found, error) {
	p, err := gramine.Open(ctx, gramine.Config{Root: root})
	if err != nil {
		return nil, Found{}, err
	}
	return p, Found{Kind: p.Kind(), How: "Gramine at " + root}, nil
}

func isDir(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.IsDir()
}

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

func randOr(r io.Reader) io.Reader {
	if r == nil {
		return rand.Reader
	}
	return r
}
