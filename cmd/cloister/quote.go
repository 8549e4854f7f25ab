package main

import (
	"encoding/hex"
	"fmt"
	"os"
	"strings"

	"github.com/cloister-dev/cloister/tee"
	"github.com/cloister-dev/cloister/tee/probe"
	"github.com/cloister-dev/cloister/tee/sim"
)

const quoteHelp = `Produce evidence that binds REPORT-DATA (up to 64 bytes, hex; zero-padded).

--tee auto looks for configfs-tsm (TDX, SEV-SNP), then Gramine's
/dev/attestation (SGX), and fails with a hint if neither is present; it never
falls back to the simulator. --tee sim-sgx or sim-tdx quote on the simulator:
as the app named by --app (measured exactly as 'cloister measure' and
'cloister run' measure it, with --sig for a signed app), or else as this
cloister binary itself.

Output: SGX, TDX and simulator quotes are written raw; configfs-tsm results
in the Veraison tsm-report JSON form (provider, outblob, auxblob). Both are
read by 'cloister verify evidence'. Simulator evidence verifies only with
--trust-root <(cloister sim root) --collateral <(cloister sim collateral).
` + simHelpCommon

func runQuote(e *env, args []string) error {
	fs := newFlagSet("quote", "--report-data HEX --out FILE [--tee auto|sim-sgx|sim-tdx|tdx|sev-snp|sgx] [--app APP [--sig APP.sig]] [--sim-dir DIR]", quoteHelp)
	kind := fs.String("tee", "auto", "`TEE`: auto, sim-sgx, sim-tdx, tdx, sev-snp or sgx")
	reportData := fs.String("report-data", "", "report data `HEX`, at most 64 bytes (required)")
	out := fs.String("out", "", "`FILE` to write the evidence to, or - for stdout (required)")
	app := fs.String("app", "", "simulator: the app `APP` to quote as (default: this binary)")
	sigFile := fs.String("sig", "", "simulator: the app's signature `FILE` (from 'cloister sign')")
	dir := simDirFlag(fs)
	if err := parseNoArgs(e, fs, args); err != nil {
		return err
	}
	if *out == "" {
		return usagef("missing --out")
	}
	if err := checkChoice("tee", *kind, teeKinds); err != nil {
		return err
	}
	if *reportData == "" {
		return usagef("missing --report-data")
	}
	rd, err := hex.DecodeString(strings.TrimPrefix(*reportData, "0x"))
	if err != nil || len(rd) > 64 {
		return usagef("--report-data: want at most 64 bytes of hex")
	}
	var data [64]byte
	copy(data[:], rd)
	cfg := probe.Config{TEE: *kind, Now: e.now}
	isSim := *kind == string(tee.KindSimSGX) || *kind == string(tee.KindSimTDX)
	if (*app != "" || *sigFile != "") && !isSim {
		return usagef("--app and --sig are for the simulator (--tee sim-sgx or sim-tdx)")
	}
	if isSim {
		if cfg.SimDir, err = dir(); err != nil {
			return err
		}
		appPath := *app
		if appPath == "" {
			if *sigFile != "" {
				return usagef("--sig needs --app")
			}
			if appPath, err = os.Executable(); err != nil {
				return fmt.Errorf("finding this binary: %w", err)
			}
		}
		if cfg.SimApp, err = sim.AppFromFiles(appPath, *sigFile); err != nil {
			return err
		}
	}
	p, found, err := probe.Open(e.ctx, cfg)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stderr, "quoting on %s: %s\n", found.Kind, found.How)
	ev, err := p.Evidence(e.ctx, data)
	if err != nil {
		return err
	}
	return writeOutput(e, *out, ev)
}
