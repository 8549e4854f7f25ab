package main

import (
	"crypto/rand"
	"flag"
	"fmt"

	"github.com/cloister-dev/cloister/tee/sim"
)

const simHelpCommon = `
The simulator keeps its keys (a root CA named "Cloister Simulated ... NOT FOR
PRODUCTION", a PCK CA and certificate, an attestation key, a TCB signing key
and a sealing secret) in --sim-dir, created on first use with owner-only
permissions. Default: $XDG_DATA_HOME/cloister/sim or ~/.local/share/cloister/sim.
`

const simRootHelp = `Print the simulator's root certificate (PEM) on stdout.

Sim evidence verifies only under this root, named explicitly:
  cloister verify evidence q.bin --trust-root <(cloister sim root) --collateral <(cloister sim collateral)
` + simHelpCommon

const simCollateralHelp = `Print a signed collateral bundle for the simulated platform (or write it
to --out). It is valid from an hour ago for 30 days; --tee picks the SGX or
the TDX TCB info and QE identity.
` + simHelpCommon

const simResetHelp = `Replace the simulator's keys with new ones. Evidence and sealed data from
the old keys stop verifying and opening.
` + simHelpCommon

// simDirFlag registers --sim-dir and returns a function that resolves it.
func simDirFlag(fs *flag.FlagSet) func() (string, error) {
	dir := fs.String("sim-dir", "", "simulator data `DIR` (default under the user data dir)")
	return func() (string, error) {
		if *dir != "" {
			return *dir, nil
		}
		return sim.DefaultDir()
	}
}

func loadSim(e *env, dir func() (string, error)) (*sim.PKI, error) {
	d, err := dir()
	if err != nil {
		return nil, err
	}
	return sim.Load(d, rand.Reader, e.now())
}

func runSimRoot(e *env, args []string) error {
	fs := newFlagSet("sim root", "[--sim-dir DIR]", simRootHelp)
	dir := simDirFlag(fs)
	if err := parseNoArgs(e, fs, args); err != nil {
		return err
	}
	p, err := loadSim(e, dir)
	if err != nil {
		return err
	}
	_, err = e.stdout.Write(p.RootPEM())
	return err
}

func runSimCollateral(e *env, args []string) error {
	fs := newFlagSet("sim collateral", "[--tee sim-sgx|sim-tdx] [--out FILE] [--sim-dir DIR]", simCollateralHelp)
	dir := simDirFlag(fs)
	kind := fs.String("tee", "sim-sgx", "`KIND`: sim-sgx or sim-tdx")
	out := fs.String("out", "-", "`FILE` to write, or - for stdout")
	if err := parseNoArgs(e, fs, args); err != nil {
		return err
	}
	if *kind != "sim-sgx" && *kind != "sim-tdx" {
		return usagef("--tee %q: want sim-sgx or sim-tdx", *kind)
	}
	p, err := loadSim(e, dir)
	if err != nil {
		return err
	}
	b, err := p.Collateral(rand.Reader, e.now(), *kind == "sim-tdx")
	if err != nil {
		return err
	}
	return writeBundle(e, *out, b)
}

func runSimReset(e *env, args []string) error {
	fs := newFlagSet("sim reset", "[--sim-dir DIR]", simResetHelp)
	dir := simDirFlag(fs)
	if err := parseNoArgs(e, fs, args); err != nil {
		return err
	}
	d, err := dir()
	if err != nil {
		return err
	}
	if _, err := sim.Reset(d, rand.Reader, e.now()); err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "new simulator keys in %s\n", d)
	return nil
}
