package main

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/cloister-dev/cloister/evidence/pcs"
	"github.com/cloister-dev/cloister/tee"
	"github.com/cloister-dev/cloister/tee/probe"
	"github.com/cloister-dev/cloister/tee/sim"
)

// serviceTEEFlags are the flags every attested service (attest serve,
// broker serve) shares: the TEE it runs on, the roots evidence may chain to
// besides Intel's and AMD's, and where DCAP collateral comes from. One
// definition, so that the two services verify evidence the same way.
type serviceTEEFlags struct {
	kind      *string
	colDir    *string
	pcsOnline *bool
	pcsURL    *string
	pcsCache  *string
	roots     stringList
	simDir    func() (string, error)
}

func (f *serviceTEEFlags) register(fs *flag.FlagSet) {
	f.kind = fs.String("tee", "auto", "`TEE` the service runs on: auto, sim-sgx, sim-tdx, tdx, sev-snp or sgx")
	f.colDir = fs.String("collateral-dir", "", "`DIR` of DCAP collateral bundles (*.json)")
	f.pcsOnline = fs.Bool("pcs", false, "fetch collateral a bundle does not cover from Intel PCS (v4), cached on disk")
	f.pcsURL = fs.String("pcs-url", "", "PCS or PCCS base `URL` for --pcs (default: Intel PCS)")
	f.pcsCache = fs.String("pcs-cache", "", "`DIR` for the --pcs cache (default: STATE/pcs-cache, else none)")
	fs.Var(&f.roots, "trust-root", "`PEM` file of extra roots evidence may chain to (repeatable)")
	f.simDir = simDirFlag(fs)
}

// check reports bad values as usage errors, before any work is done.
func (f *serviceTEEFlags) check(e *env) error {
	if err := checkChoice("tee", *f.kind, teeKinds); err != nil {
		return err
	}
	if *f.pcsOnline {
		if _, err := pcs.NewClient(pcs.Config{BaseURL: *f.pcsURL, Now: e.now}); err != nil {
			return usagef("--pcs-url: %v", err) // only the URL can make this config invalid
		}
	}
	return nil
}

// serviceTEE is what the flags open: the platform, the extra trust roots
// and the collateral source (nil: none, TCB status NotEvaluated).
type serviceTEE struct {
	platform   tee.Platform
	kind       tee.Kind
	roots      []*x509.Certificate
	collateral func(context.Context, []byte) (*pcs.Bundle, error)
}

// open reads the roots and bundles, opens the platform (with the
// simulator's own collateral for sim-*) and the PCS client. state is the
// service's --state directory ("" for none), the default home of the PCS
// cache.
func (f *serviceTEEFlags) open(e *env, state string, log *slog.Logger) (*serviceTEE, error) {
	out := &serviceTEE{}
	for _, r := range f.roots {
		certs, err := readCertificates(r)
		if err != nil {
			return nil, fmt.Errorf("trust roots: %w", err)
		}
		out.roots = append(out.roots, certs...)
	}
	var bundles []*pcs.Bundle
	if *f.colDir != "" {
		var err error
		if bundles, err = readBundles(*f.colDir); err != nil {
			return nil, err
		}
	}
	pc := probe.Config{TEE: *f.kind, Now: e.now}
	if *f.kind == string(tee.KindSimSGX) || *f.kind == string(tee.KindSimTDX) {
		d, err := f.simDir()
		if err != nil {
			return nil, err
		}
		pc.SimDir = d
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("finding this binary: %w", err)
		}
		if pc.SimApp, err = sim.AppFromFiles(exe, ""); err != nil {
			return nil, err
		}
		pki, err := sim.Load(d, rand.Reader, e.now())
		if err != nil {
			return nil, err
		}
		for _, tdx := range []bool{false, true} {
			b, err := pki.Collateral(rand.Reader, e.now(), tdx)
			if err != nil {
				return nil, fmt.Errorf("simulator collateral: %w", err)
			}
			bundles = append(bundles, b)
		}
	}
	var online func(context.Context, pcs.Query) (*pcs.Bundle, error)
	if *f.pcsOnline {
		pcfg := pcs.Config{BaseURL: *f.pcsURL, Now: e.now}
		dir := *f.pcsCache
		if dir == "" && state != "" {
			dir = filepath.Join(state, "pcs-cache")
		}
		if dir != "" {
			c, err := pcs.NewCache(dir, func(err error) { log.Warn("pcs cache", slog.String("err", err.Error())) })
			if err != nil {
				return nil, err
			}
			pcfg.Cache = c
		}
		client, err := pcs.NewClient(pcfg)
		if err != nil {
			return nil, err
		}
		online = client.Fetch
	}
	switch {
	case len(bundles) > 0 || online != nil:
		out.collateral = collateralSource(bundles, online)
	default:
		log.Warn("no collateral: TCB status will be NotEvaluated")
	}
	p, found, err := probe.Open(e.ctx, pc)
	if err != nil {
		return nil, err
	}
	out.platform, out.kind = p, found.Kind
	return out, nil
}
