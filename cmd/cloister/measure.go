package main

import (
	"encoding/hex"
	"encoding/json"
	"fmt"

	"github.com/cloister-dev/cloister/tee"
	"github.com/cloister-dev/cloister/tee/appsign"
)

const measureHelp = `Print an enclave app's MRENCLAVE, and its MRSIGNER when given its signature.

MRENCLAVE is a SHA-256 measurement of APP and its configuration (DESIGN.md
"Enclave identity"), the value the sim platform reports when it runs APP
and what verifiers appraise with --mrenclave. The configuration is:

  --sig APP.sig      the one inside the signature file; the signature is
                     verified, APP must be the binary it covers, and MRSIGNER
                     is printed too. --config, if also given, must agree.
  --config FILE      enclave.json (see 'cloister help sign').
  neither            the default: product 0, SVN 0, debug true, heap 256 MiB,
                     4 threads (an unsigned development build).

Output, one value per line:

  mrenclave <hex>
  mrsigner <hex>       (with --sig)

or with --format json: {"mrenclave": "<hex>", "mrsigner": "<hex>"}.

Under Gramine (--tee sgx) MRENCLAVE is not Cloister's: gramine-sgx-sign
computes it from Gramine's own enclave layout (PAL, LibOS, manifest, heap
and thread pages), which this command does not reproduce; it says so and
how to read and pin the real value (exit 1).

Exit 0 measured, 1 failed (bad signature, APP not the signed binary,
--config disagreeing with the signature; reason on stderr), 2 usage error.
`

// measureOutput is the --format json output; the field names are a
// contract, as for claims.
type measureOutput struct {
	MRENCLAVE string `json:"mrenclave"`
	MRSIGNER  string `json:"mrsigner,omitempty"`
}

// runMeasure implements "cloister measure".
// measureTEEKinds are measure's --tee values: every kind 'cloister run'
// names, except auto (a measurement is for one kind).
var measureTEEKinds = append(append([]string(nil), simTEEKinds...), string(tee.KindSGX), string(tee.KindTDX), string(tee.KindSNP))

func runMeasure(e *env, args []string) error {
	fs := newFlagSet("measure", "APP [--config enclave.json] [--sig APP.sig] [--format text|json] [--tee sim-sgx|sim-tdx|sgx|tdx|sev-snp]", measureHelp)
	kind := fs.String("tee", string(tee.KindSimSGX), "`TEE` the measurement is for: sim-sgx, sim-tdx, tdx, sev-snp (Cloister's MRENCLAVE; on tdx the app digest extended into RTMR3) or sgx (Gramine's: not computed)")
	var (
		configFile = fs.String("config", "", "enclave configuration `enclave.json`")
		sigFile    = fs.String("sig", "", "signature `FILE` of APP: verify it and print MRSIGNER")
		format     = fs.String("format", "text", "output `format`: text or json")
	)
	app, err := parseOneArg(e, fs, args, "APP")
	if err != nil {
		return err
	}
	if *format != "text" && *format != "json" {
		return usagef("--format %q: want text or json", *format)
	}
	if err := checkChoice("tee", *kind, measureTEEKinds); err != nil {
		return err
	}
	if *kind == string(tee.KindSGX) {
		return errGramineMeasure(app)
	}

	cfg := appsign.DefaultConfig()
	if *configFile != "" {
		if cfg, err = appsign.ReadConfigFile(*configFile); err != nil {
			return fmt.Errorf("%s: %w", *configFile, err)
		}
	}
	f, err := appsign.OpenBinary(app)
	if err != nil {
		return err
	}
	defer f.Close()

	var out measureOutput
	if *sigFile != "" {
		sig, err := appsign.ReadSignatureFile(*sigFile)
		if err != nil {
			return fmt.Errorf("%s: %w", *sigFile, err)
		}
		if *configFile != "" && cfg != sig.Config {
			return fmt.Errorf("%s and %s disagree: config %+v, signature %+v", *configFile, *sigFile, cfg, sig.Config)
		}
		if err := sig.Verify(); err != nil {
			return fmt.Errorf("%s: %w", *sigFile, err)
		}
		if err := sig.Check(f); err != nil {
			return fmt.Errorf("%s is not the binary %s signs: %w", app, *sigFile, err)
		}
		signer := sig.MRSIGNER()
		out = measureOutput{MRENCLAVE: hex.EncodeToString(sig.MRENCLAVE[:]), MRSIGNER: hex.EncodeToString(signer[:])}
	} else {
		mr, err := appsign.MeasureReader(f, cfg)
		if err != nil {
			return fmt.Errorf("%s: %w", app, err)
		}
		out = measureOutput{MRENCLAVE: hex.EncodeToString(mr[:])}
	}

	var text string
	if *format == "json" {
		b, err := json.Marshal(out)
		if err != nil {
			return fmt.Errorf("encoding output: %w", err)
		}
		text = string(b) + "\n"
	} else {
		text = "mrenclave " + out.MRENCLAVE + "\n"
		if out.MRSIGNER != "" {
			text += "mrsigner " + out.MRSIGNER + "\n"
		}
	}
	if _, err := fmt.Fprint(e.stdout, text); err != nil {
		return fmt.Errorf("writing output: %w", err)
	}
	return nil
}
