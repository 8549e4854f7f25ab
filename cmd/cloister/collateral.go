package main

import (
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"

	"github.com/cloister-dev/cloister/evidence"
	"github.com/cloister-dev/cloister/evidence/pcs"
)

const collateralFetchHelp = `Fetch the DCAP collateral of an SGX or TDX quote from the Intel PCS (v4 API)
and write it as one collateral bundle (JSON) for 'verify evidence --collateral'.

The FMSPC and the PCK CA are read from the quote's PCK certificate, and the
SGX or TDX endpoints are chosen by the quote type. Fetched items are checked
for format only: the bundle is verified, like any other, when it is used.
With --cache, responses are kept on disk until their nextUpdate and reused.
--out - writes the bundle to standard output.
`

// runCollateralFetch implements "cloister collateral fetch".
func runCollateralFetch(e *env, args []string) error {
	const path = "collateral fetch"
	fs := newFlagSet(path, "--quote FILE --out BUNDLE [--cache DIR] [--pcs-url URL]", collateralFetchHelp)
	var (
		quoteFile  = fs.String("quote", "", "SGX or TDX quote `FILE` whose collateral to fetch (required)")
		out        = fs.String("out", "", "`BUNDLE` file to write, or - for stdout (required)")
		cacheDir   = fs.String("cache", "", "cache `DIR` for PCS responses (default: no cache)")
		pcsURL     = fs.String("pcs-url", pcs.DefaultBaseURL, "Intel PCS (or PCCS with v4 paths) base `URL`")
		rootCRLURL = fs.String("root-crl-url", pcs.DefaultRootCACRLURL, "`URL` of the DER Intel SGX Root CA CRL")
	)
	pos, err := parseArgs(e, fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usagef("unexpected argument %q (the quote is given with --quote)", pos[0])
	}
	if *quoteFile == "" {
		return usagef("missing --quote FILE")
	}
	if *out == "" {
		return usagef("missing --out BUNDLE")
	}
	cfg := pcs.Config{BaseURL: *pcsURL, RootCACRLURL: *rootCRLURL, Now: e.now}
	if *cacheDir != "" {
		// A broken cache entry is refetched, not fatal; say so once per entry.
		cfg.Cache, err = pcs.NewCache(*cacheDir, func(err error) {
			fmt.Fprintf(e.stderr, "%s %s: warning: %v\n", programName, path, err)
		})
		if err != nil {
			return fmt.Errorf("opening cache: %w", err)
		}
	}
	client, err := pcs.NewClient(cfg)
	if err != nil {
		// Only the URLs can make the config invalid: a bad flag value.
		return usagef("%v", err)
	}

	raw, err := os.ReadFile(*quoteFile)
	if err != nil {
		return fmt.Errorf("reading quote: %w", err)
	}
	q, err := evidence.CollateralQuery(raw)
	if err != nil {
		return fmt.Errorf("%s: reading FMSPC and PCK CA from the quote: %w", *quoteFile, err)
	}
	b, err := client.Fetch(e.ctx, q)
	if err != nil {
		return fmt.Errorf("fetching collateral for %s FMSPC %s: %w", q.TEE, hex.EncodeToString(q.FMSPC), err)
	}
	if err := writeBundle(e, *out, b); err != nil {
		return err
	}
	if *out != "-" {
		fmt.Fprintf(e.stdout, "wrote %s (%s, FMSPC %s, PCK %s CA)\n", *out, q.TEE, hex.EncodeToString(q.FMSPC), q.CA)
	}
	return nil
}

const collateralBundleHelp = `Assemble a collateral bundle from saved Intel PCS v4 responses, for machines
that verify offline. --tcb-info and --qe-identity are the response bodies
({"tcbInfo":...,"signature":...} and {"enclaveIdentity":...,"signature":...});
the chains are the TCB-Info-Issuer-Chain / SGX-Enclave-Identity-Issuer-Chain /
SGX-PCK-CRL-Issuer-Chain header values, as PEM or still URL-encoded; CRLs may
be DER, PEM or hex. The signed text is kept byte-exact. Without CRLs the
bundle verifies only with 'verify evidence --allow-missing-crl'.
--out - writes the bundle to standard output.
`

// runCollateralBundle implements "cloister collateral bundle".
func runCollateralBundle(e *env, args []string) error {
	const path = "collateral bundle"
	fs := newFlagSet(path, "--tcb-info F --tcb-info-chain F --qe-identity F --qe-identity-chain F [--pck-crl F --pck-crl-chain F] [--root-crl F] --out BUNDLE", collateralBundleHelp)
	var (
		tcbInfo       = fs.String("tcb-info", "", "PCS /tcb response body `FILE` (required)")
		tcbInfoChain  = fs.String("tcb-info-chain", "", "TCB-Info-Issuer-Chain `FILE` (required)")
		qeIdentity    = fs.String("qe-identity", "", "PCS /qe/identity response body `FILE` (required)")
		qeIdentityChn = fs.String("qe-identity-chain", "", "SGX-Enclave-Identity-Issuer-Chain `FILE` (required)")
		pckCRL        = fs.String("pck-crl", "", "PCK CRL `FILE` (needs --pck-crl-chain)")
		pckCRLChain   = fs.String("pck-crl-chain", "", "SGX-PCK-CRL-Issuer-Chain `FILE`")
		rootCRL       = fs.String("root-crl", "", "Intel SGX Root CA CRL `FILE`")
		out           = fs.String("out", "", "`BUNDLE` file to write, or - for stdout (required)")
	)
	if err := parseNoArgs(e, fs, args); err != nil {
		return err
	}
	for _, req := range []struct{ name, val string }{
		{"tcb-info", *tcbInfo}, {"tcb-info-chain", *tcbInfoChain},
		{"qe-identity", *qeIdentity}, {"qe-identity-chain", *qeIdentityChn}, {"out", *out},
	} {
		if req.val == "" {
			return usagef("missing --%s", req.name)
		}
	}
	if (*pckCRL == "") != (*pckCRLChain == "") {
		return usagef("--pck-crl and --pck-crl-chain go together")
	}

	var files pcs.BundleFiles
	for _, in := range []struct {
		name string
		dst  *[]byte
	}{
		{*tcbInfo, &files.TCBInfoResponse}, {*tcbInfoChain, &files.TCBInfoIssuerChain},
		{*qeIdentity, &files.QEIdentityResponse}, {*qeIdentityChn, &files.QEIdentityIssuerChain},
		{*pckCRL, &files.PCKCRL}, {*pckCRLChain, &files.PCKCRLIssuerChain}, {*rootCRL, &files.RootCACRL},
	} {
		if in.name == "" {
			continue // optional and absent: nil tells AssembleBundle so
		}
		var err error
		if *in.dst, err = os.ReadFile(in.name); err != nil {
			return fmt.Errorf("reading input: %w", err)
		}
	}
	b, err := pcs.AssembleBundle(files)
	if err != nil {
		return fmt.Errorf("assembling bundle: %w", err)
	}
	if err := writeBundle(e, *out, b); err != nil {
		return err
	}
	if *out != "-" {
		fmt.Fprintf(e.stdout, "wrote %s\n", *out)
	}
	return nil
}

// writeBundle writes b to name ("-" is stdout). A file is written to a
// temporary name and renamed, so a crash or full disk never leaves a
// truncated bundle where a good one was.
func writeBundle(e *env, name string, b *pcs.Bundle) error {
	data, err := b.Marshal()
	if err != nil {
		return fmt.Errorf("encoding bundle: %w", err)
	}
	return writeOutput(e, name, data)
}

// writeOutput writes data to stdout ("-") or, atomically, to the file name:
// a reader never sees half a file, and a failed write leaves the old one.
func writeOutput(e *env, name string, data []byte) error {
	if name == "-" {
		if _, err := e.stdout.Write(data); err != nil {
			return fmt.Errorf("writing output: %w", err)
		}
		return nil
	}
	f, err := os.CreateTemp(filepath.Dir(name), "."+filepath.Base(name)+".*")
	if err != nil {
		return fmt.Errorf("writing %s: %w", name, err)
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if err == nil {
		err = f.Chmod(0o644)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, name)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("writing %s: %w", name, err)
	}
	return nil
}
