package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/cloister-dev/cloister/host"
	"github.com/cloister-dev/cloister/tee"
)

// envGramineDirect is the hidden test mode of 'cloister run --tee sgx':
// set to a fake /dev/attestation directory (tee/gramine/graminetest), it
// replaces only the gramine-sgx exec (and the signing it needs) by running
// the app directly as its manifest says. It is not in the help on purpose:
// the app it runs is in no enclave.
const envGramineDirect = "CLOISTER_TEST_GRAMINE_DIRECT"

const runSGXHelp = `
With --tee sgx APP runs under Gramine (1.8 or later) on SGX hardware:
'cloister run' writes APP's manifest to APP.manifest next to APP (as
'cloister gramine manifest' does, from --config, --env and the arguments
after "--", which are fixed in the manifest), signs it with
gramine-sgx-sign (--gramine-key, default Gramine's own key), and starts
gramine-sgx in APP's directory. The boundary lives in
/dev/shm/cloister-APP.region (one run per app name); the app
opens /dev/attestation itself for quotes and sealing keys, which never
pass through the host. MRENCLAVE is gramine-sgx-sign's: read it with
'gramine-sgx-sigstruct-view APP.sig'.
`

// sgxRunFlags are the flags only --tee sgx uses.
type sgxRunFlags struct {
	config, key, tools, libos *string
	env                       stringList
}

// addSGXRunFlags registers them on fs.
func addSGXRunFlags(fs *flag.FlagSet) *sgxRunFlags {
	f := &sgxRunFlags{
		config: fs.String("config", "", "--tee sgx: enclave configuration `enclave.json` for the manifest"),
		key:    fs.String("gramine-key", "", "--tee sgx: gramine-sgx-sign's signing `KEY` (default: Gramine's)"),
		tools:  fs.String("gramine-tools", "", "--tee sgx: `DIR` of gramine-sgx-sign and gramine-sgx (default: $PATH)"),
		libos:  fs.String("libos", "", "--tee sgx: host `PATH` of Gramine's libsysdb.so (default: Gramine's packages' path)"),
	}
	fs.Var(&f.env, "env", "--tee sgx: host environment variable `NAME` the app may read; repeatable")
	return f
}

// apply turns cfg (built for the simulator) into an SGX run: the manifest
// from APP and its arguments, which move into the manifest.
func (f *sgxRunFlags) apply(cfg *host.Config) error {
	if cfg.Sig != "" {
		return usagef("--sig is a Cloister signature for the simulator; under Gramine, gramine-sgx-sign signs the enclave (--gramine-key)")
	}
	if err := checkPassthrough(f.env); err != nil {
		return err
	}
	m, err := buildManifest(cfg.App, *f.config, cfg.Args, f.env, *f.libos)
	if err != nil {
		return err
	}
	cfg.Args = nil
	cfg.Gramine = host.GramineOptions{Manifest: m, Key: *f.key, Tools: *f.tools, DirectAttestRoot: os.Getenv(envGramineDirect)}
	return nil
}

// checkSimOnlyFlags refuses --tee sgx flags on a simulator run, where
// they would be silently ignored.
func (f *sgxRunFlags) checkSimOnly(kind string) error {
	if kind == string(tee.KindSGX) {
		return nil
	}
	if *f.config != "" || *f.key != "" || *f.tools != "" || *f.libos != "" || len(f.env) > 0 {
		return usagef("--config, --env, --gramine-key, --gramine-tools and --libos are for --tee sgx; on %s use --sig", kind)
	}
	return nil
}

// errGramineMeasure is 'cloister measure --tee sgx': under Gramine the
// measurement is gramine-sgx-sign's, over Gramine's enclave layout (its
// PAL and LibOS binaries, the signed manifest, heap and thread pages),
// which Cloister does not reproduce: a value computed here would be a
// guess, and a wrong pin fails closed only at the first attestation.
func errGramineMeasure(app string) error {
	name := filepath.Join(filepath.Dir(app), filepath.Base(app))
	return fmt.Errorf(`under Gramine (--tee sgx) MRENCLAVE is computed by gramine-sgx-sign over Gramine's enclave layout, not by Cloister; get it with
  cloister gramine manifest %[1]s --config enclave.json --out %[2]s.manifest   # what 'cloister run --tee sgx' writes
  gramine-sgx-sign --manifest %[2]s.manifest --output %[2]s.manifest.sgx        # writes %[2]s.sig
  gramine-sgx-sigstruct-view %[2]s.sig                                         # prints mr_enclave, mr_signer, isv_prod_id, isv_svn
and pin it when verifying: cloister verify evidence QUOTE --collateral BUNDLE --mrenclave MR_ENCLAVE (or --mrsigner MR_SIGNER --product-id N)`, app, name)
}
