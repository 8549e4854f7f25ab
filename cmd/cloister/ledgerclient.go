package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"flag"
	"os"
	"time"

	"github.com/cloister-dev/cloister/attest"
	"github.com/cloister-dev/cloister/evidence/pcs"
	"github.com/cloister-dev/cloister/ledger/ledgerclient"
	"github.com/cloister-dev/cloister/policy"
	"github.com/cloister-dev/cloister/ratls"
)

// ledgerClientFlags are the flags that reach and attest a ledger (for
// `attest serve --ledger` and `ledger audit`), with the flag prefix given.
type ledgerClientFlags struct {
	url, cert, clientCert, clientKey, mrenclave *string
	allowDebug                                  *bool
	prefix                                      string
}

func addLedgerClientFlags(fs *flag.FlagSet, prefix string) *ledgerClientFlags {
	p := prefix
	return &ledgerClientFlags{
		prefix:     p,
		url:        fs.String(p+"ledger", "", "the ledger's `URL` (https://HOST:PORT, 'cloister ledger serve')"),
		cert:       fs.String(p+"ledger-cert", "", "the ledger's service certificate `PEM` ('ledger serve --service-cert-out')"),
		clientCert: fs.String(p+"ledger-client-cert", "", "client certificate `PEM` of a ledger user (Contributor to write, Reader to read)"),
		clientKey:  fs.String(p+"ledger-client-key", "", "its private key `PEM`"),
		mrenclave:  fs.String(p+"ledger-mrenclave", "", "the ledger enclave's MRENCLAVE (`HEX`) its service certificate's evidence must show"),
		allowDebug: fs.Bool(p+"ledger-allow-debug", false, "accept a debug ledger enclave (the simulator's are)"),
	}
}

// set says whether --ledger was given.
func (f *ledgerClientFlags) set() bool { return *f.url != "" }

// client builds the attested ledger client; roots and collateral appraise
// the service certificate's evidence (collateral nil: TCB not evaluated,
// which the policy then accepts).
func (f *ledgerClientFlags) client(now func() time.Time, roots []*x509.Certificate, collateral func(context.Context, []byte) (*pcs.Bundle, error)) (*ledgerclient.Client, error) {
	n := "--" + f.prefix
	if *f.cert == "" || *f.clientCert == "" || *f.clientKey == "" || *f.mrenclave == "" {
		return nil, usagef("%sledger needs %sledger-cert, %sledger-client-cert, %sledger-client-key and %sledger-mrenclave", n, n, n, n, n)
	}
	b, err := os.ReadFile(*f.cert)
	if err != nil {
		return nil, usagef("%sledger-cert: %v", n, err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "CERTIFICATE" {
		return nil, usagef("%sledger-cert %s: no PEM CERTIFICATE", n, *f.cert)
	}
	svc, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		return nil, usagef("%sledger-cert %s: %v", n, *f.cert, err)
	}
	kp, err := tls.LoadX509KeyPair(*f.clientCert, *f.clientKey)
	if err != nil {
		return nil, usagef("%sledger-client-cert/-key: %v", n, err)
	}
	m, err := hex.DecodeString(*f.mrenclave)
	if err != nil || len(m) != 32 {
		return nil, usagef("%sledger-mrenclave %q: want 64 hex digits", n, *f.mrenclave)
	}
	v := ratls.VerifyOptions{
		Policy: policy.Policy{MRENCLAVE: [][]byte{m}, AllowDebug: *f.allowDebug},
		Now:    now, TrustRoots: roots,
	}
	if collateral != nil {
		v.Collateral = ratls.CollateralSource(collateral)
	} else {
		v.SkipTCBEvaluation = true
		v.Policy.AllowStatus = []string{"NotEvaluated"}
	}
	c, err := ledgerclient.New(ledgerclient.Options{URL: *f.url, ServiceCert: svc, Verify: v, ClientCert: kp})
	if err != nil {
		return nil, usagef("%sledger: %v", n, err)
	}
	return c, nil
}

// attestLedger wires --ledger into the attestation service's config.
func attestLedger(f *ledgerClientFlags, e *env, cfg *attest.Config) error {
	if !f.set() {
		return nil
	}
	c, err := f.client(e.now, cfg.TrustRoots, cfg.Collateral)
	if err != nil {
		return err
	}
	cfg.Transparency = &ledgerclient.Transparency{Client: c, Collection: ledgerclient.AttestCollection}
	return nil
}

const ledgerAuditHelp = `List what a Cloister attestation service recorded in a ledger ('attest serve
--ledger'): one JSON object per attestation, with the digests of the token's
claims and of the evidence, and the token's digest and record. The ledger is
attested first (its service certificate's evidence must show
--ledger-mrenclave). A record the service did not write (unparsable, or a
token naming no recorded attestation) exits 1.

Roots and collateral for the ledger's evidence: --trust-root (the simulator's
root for a simulated ledger) and --collateral (a bundle; without it the TCB is
not evaluated).
`

func runLedgerAudit(e *env, args []string) error {
	fs := newFlagSet("ledger audit", "--ledger URL --ledger-cert PEM --ledger-client-cert PEM --ledger-client-key PEM --ledger-mrenclave HEX [--from TXID] [--to TXID]", ledgerAuditHelp)
	f := addLedgerClientFlags(fs, "")
	from := fs.String("from", "", "first transaction id (view.seqno) listed")
	to := fs.String("to", "", "last transaction id listed")
	var roots stringList
	fs.Var(&roots, "trust-root", "`PEM` root the ledger's evidence may chain to (repeatable; replaces Intel's)")
	colFile := fs.String("collateral", "", "collateral `BUNDLE` for the ledger's evidence")
	if err := parseNoArgs(e, fs, args); err != nil {
		return err
	}
	if !f.set() {
		return usagef("missing --ledger")
	}
	var rootCerts []*x509.Certificate
	for _, r := range roots {
		certs, err := readCertificates(r)
		if err != nil {
			return usagef("--trust-root: %v", err)
		}
		rootCerts = append(rootCerts, certs...)
	}
	var collateral func(context.Context, []byte) (*pcs.Bundle, error)
	if *colFile != "" {
		b, err := os.ReadFile(*colFile)
		if err != nil {
			return usagef("--collateral: %v", err)
		}
		bundle, err := pcs.ParseBundle(b)
		if err != nil {
			return usagef("--collateral %s: %v", *colFile, err)
		}
		collateral = func(context.Context, []byte) (*pcs.Bundle, error) { return bundle, nil }
	}
	c, err := f.client(e.now, rootCerts, collateral)
	if err != nil {
		return err
	}
	recs, err := ledgerclient.Audit(e.ctx, c, ledgerclient.AttestCollection, *from, *to)
	if err != nil {
		return err
	}
	if recs == nil {
		recs = []ledgerclient.Attested{}
	}
	return printJSON(e.stdout, recs)
}
