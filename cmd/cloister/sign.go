package main

import (
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/cloister-dev/cloister/tee/appsign"
)

const signHelp = `Sign an enclave app, or make a signing key.

  cloister sign APP --key KEY.pem --config enclave.json [--out APP.sig]
  cloister sign --new-key KEY.pem

The first form measures APP with its configuration (MRENCLAVE, DESIGN.md
"Enclave identity") and writes the signature file APP.sig (default: APP
with ".sig" appended), replacing an older one. Signing is deterministic: the
same key, APP and configuration always give the same file. It prints the
signed identity:

  mrenclave <hex>
  mrsigner <hex>

Keys are RSA-3072 with public exponent 3, as SGX SIGSTRUCT requires, so
MRSIGNER (SHA-256 of the modulus, little-endian) is what SGX tooling reports
for the same key. KEY.pem may be PKCS#1 ("RSA PRIVATE KEY") or PKCS#8
("PRIVATE KEY") PEM, unencrypted.

enclave.json is strict JSON; unknown or repeated fields are errors:

  {"product_id": 0, "svn": 0, "debug": false, "heap_mb": 256, "threads": 4}

"debug" is required. product_id and svn (0..65535) default to 0, heap_mb
(MiB, 1..65536) to 256, threads (1..4096) to 4.

--new-key writes a new key as PKCS#1 PEM with mode 0600, never replacing an
existing file, and prints its MRSIGNER. Keep the key secret and backed up:
MRSIGNER, and data sealed to it, follow the key.

Exit 0 done, 1 failed (reason on stderr), 2 usage error.
` + signEncryptHelp

// runSign implements "cloister sign".
func runSign(e *env, args []string) error {
	fs := newFlagSet("sign", "APP --key KEY.pem --config enclave.json [--out APP.sig] | --new-key KEY.pem", signHelp)
	var (
		keyFile    = fs.String("key", "", "signing key `KEY.pem` (RSA-3072, exponent 3)")
		configFile = fs.String("config", "", "enclave configuration `enclave.json`")
		out        = fs.String("out", "", "signature `FILE` to write (default APP.sig)")
		newKey     = fs.String("new-key", "", "write a new signing key to `KEY.pem` (mode 0600, never overwrites)")
	)
	var enc signEncryptFlags
	enc.register(fs)
	pos, err := parseArgs(e, fs, args)
	if err != nil {
		return err
	}
	if !*enc.encrypt {
		if name := enc.stray(fs); name != "" {
			return usagef("--%s goes with --encrypt", name)
		}
	}
	if *newKey != "" {
		if len(pos) > 0 || *enc.encrypt || *keyFile != "" || *configFile != "" || *out != "" {
			return usagef("--new-key makes a key and nothing else; sign in a second step")
		}
		return signNewKey(e, *newKey)
	}
	switch {
	case len(pos) == 0:
		return usagef("missing APP (or --new-key KEY.pem)")
	case len(pos) > 1:
		return usagef("want one APP, got %d arguments: %s", len(pos), strings.Join(pos, " "))
	case *enc.encrypt:
		return runSignEncrypt(e, &enc, pos[0], *out, *keyFile, *configFile)
	case *keyFile == "":
		return usagef("missing --key KEY.pem (make one with 'cloister sign --new-key KEY.pem')")
	case *configFile == "":
		return usagef("missing --config enclave.json (a signature fixes product, SVN, debug and limits)")
	}
	app := pos[0]
	if *out == "" {
		*out = app + ".sig"
	}
	if sameFile(*out, app) || sameFile(*out, *keyFile) {
		return usagef("--out %s would replace APP or the key", *out)
	}
	key, err := appsign.ReadKeyFile(*keyFile)
	if err != nil {
		return fmt.Errorf("%s: %w", *keyFile, err)
	}
	cfg, err := appsign.ReadConfigFile(*configFile)
	if err != nil {
		return fmt.Errorf("%s: %w", *configFile, err)
	}
	f, err := appsign.OpenBinary(app)
	if err != nil {
		return err
	}
	defer f.Close()
	sig, err := appsign.Sign(key, f, cfg)
	if err != nil {
		return fmt.Errorf("%s: %w", app, err)
	}
	if err := writeFileAtomic(*out, sig.Marshal(), 0o644); err != nil {
		return fmt.Errorf("writing signature: %w", err)
	}
	signer := sig.MRSIGNER()
	fmt.Fprintf(e.stdout, "mrenclave %s\nmrsigner %s\n", hex.EncodeToString(sig.MRENCLAVE[:]), hex.EncodeToString(signer[:]))
	return nil
}

// signNewKey implements "cloister sign --new-key".
func signNewKey(e *env, path string) error {
	// Fail before the slow keygen when the file is already there.
	if _, err := os.Lstat(path); err == nil {
		return fmt.Errorf("%s already exists; refusing to overwrite a key", path)
	}
	key, err := appsign.NewKey(nil)
	if err != nil {
		return err
	}
	if err := appsign.WriteKeyFile(path, key); err != nil {
		return err
	}
	signer, err := appsign.KeyMRSIGNER(&key.PublicKey)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "mrsigner %s\n", hex.EncodeToString(signer[:]))
	return nil
}

// writeFileAtomic writes data to a temporary file next to name and renames
// it into place, so a reader (or a crash) never sees half a signature.
func writeFileAtomic(name string, data []byte, perm os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(name), "."+filepath.Base(name)+".tmp*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // no-op after a successful rename
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(perm); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), name)
}

// sameFile reports whether a and b name one existing file, so a slip like
// "--out APP" cannot replace the app or the key with a signature.
func sameFile(a, b string) bool {
	fa, errA := os.Stat(a)
	fb, errB := os.Stat(b)
	return errA == nil && errB == nil && os.SameFile(fa, fb)
}
