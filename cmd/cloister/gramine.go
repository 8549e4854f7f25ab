package main

import (
	"fmt"
	"os"

	"github.com/cloister-dev/cloister/tee/appsign"
	"github.com/cloister-dev/cloister/tee/gramine/manifest"
)

const gramineManifestHelp = `Write the Gramine manifest of an enclave app: the TOML file that
gramine-sgx-sign measures into MRENCLAVE and gramine-sgx runs (Gramine 1.8
or later). 'cloister run --tee sgx' writes the same file next to APP before
it signs and launches it; this command lets you read it and keep it.

What it says:
  - the app (APP's file name, mounted at /app/NAME) is the only trusted
    file, pinned by its SHA-256; arguments after "--" are fixed in
    loader.argv (the host's command line is never used);
  - the environment is fixed (the boundary, GOMAXPROCS = threads,
    GOMEMLIMIT = heap_mb) plus the host variables named by --env, passed
    through; nothing else of the host's environment reaches the app;
  - /dev/shm is mounted as untrusted shared memory, and only the app's two
    boundary files in it may be opened;
  - sgx.remote_attestation = "dcap", and debug, isvprodid, isvsvn,
    enclave_size and max_threads from enclave.json (--config; default: the
    debug configuration 'cloister measure' uses without one).

The app must sit in the directory where gramine-sgx runs (uri file:NAME).
--env refuses Cloister's own variables, GO* (GODEBUG can turn security
checks off) and LD_*.

Exit 0 written, 1 failed (APP or enclave.json unreadable or invalid),
2 usage (including a refused --env).
`

// runGramineManifest implements "cloister gramine manifest".
func runGramineManifest(e *env, args []string) error {
	fs := newFlagSet("gramine manifest", "APP [--config enclave.json] [--out FILE] [--env NAME]... [--libos PATH] [-- APP-ARGS]", gramineManifestHelp)
	configFile := fs.String("config", "", "enclave configuration `enclave.json` (debug, product_id, svn, heap_mb, threads)")
	out := fs.String("out", "", "write the manifest to `FILE` (default: standard output)")
	var env stringList
	fs.Var(&env, "env", "host environment variable `NAME` the app may read (passthrough); repeatable")
	libos := fs.String("libos", manifest.DefaultLibOS, "host `PATH` of Gramine's libsysdb.so (loader.entrypoint)")
	pos, err := parseArgs(e, fs, args)
	if err != nil {
		return err
	}
	if len(pos) == 0 {
		return usagef("missing APP")
	}
	if err := checkPassthrough(env); err != nil {
		return err
	}
	m, err := buildManifest(pos[0], *configFile, pos[1:], env, *libos)
	if err != nil {
		return err
	}
	b, err := m.Marshal()
	if err != nil {
		return err
	}
	if *out == "" {
		_, err = e.stdout.Write(b)
		return err
	}
	return os.WriteFile(*out, b, 0o644)
}

// buildManifest reads the configuration (default: appsign.DefaultConfig)
// and builds APP's manifest; `cloister run --tee sgx` uses it too.
func buildManifest(app, configFile string, args, env []string, libos string) (*manifest.Manifest, error) {
	cfg := appsign.DefaultConfig()
	if configFile != "" {
		var err error
		if cfg, err = appsign.ReadConfigFile(configFile); err != nil {
			return nil, fmt.Errorf("%s: %w", configFile, err)
		}
	}
	return manifest.ForApp(app, manifest.Options{Config: cfg, Args: args, Passthrough: env, LibOS: libos})
}

// checkPassthrough turns a refused --env name into a usage error (exit 2).
func checkPassthrough(names []string) error {
	for _, n := range names {
		if err := manifest.CheckPassthrough(n); err != nil {
			return usagef("%v", err)
		}
	}
	return nil
}
