package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"time"

	"github.com/cloister-dev/cloister/evidence"
	"github.com/cloister-dev/cloister/evidence/pcs"
	"github.com/cloister-dev/cloister/ratls"
)

const verifyCertHelp = `Verify an RA-TLS certificate: find its evidence extension (CCC
interoperable 2.23.133.5.4.9, or the legacy Intel SGX, Intel TDX and Gramine
quote extensions), verify the evidence, check that it binds the
certificate's public key, and print the claims.

PEM is a file holding the certificate (the first CERTIFICATE block is used);
"-" reads standard input. The certificate must be valid at --at.

Collateral, trust roots, policy flags, exit codes and output are those of
'cloister verify evidence'; the JSON output adds a top-level "ratls" object:
{"form": "ccc" | "intel-sgx-quote" | "intel-tdx-quote" | "gramine-quote",
 "key_bound": true, "appraised": BOOL}. A key that the evidence does not
bind is invalid (exit 1).
`

const verifyHTTPSHelp = `Connect to an RA-TLS server over TLS 1.3, verify its certificate as
'cloister verify cert' does (during the handshake: nothing is sent to a
server that fails), and print the claims.

With --fresh, also run the channel-bound freshness challenge: POST a random
nonce to ` + ratls.ChallengePath + ` on the same connection and verify the
evidence returned, whose report_data must be SHA-512(TLS exporter
"` + ratls.ExporterLabel + `" ‖ nonce), from the same identity as the
certificate. Servers built on package ratls answer it with
Server.ChallengeHandler.

Written as 'cloister verify https://HOST:PORT [flags]'. Output as for
'cloister verify cert', with "fresh": true in "ratls" after a challenge.
`

// errNeedCollateral is what the collateral source says when neither
// --collateral nor --no-collateral was given and the evidence is a DCAP
// quote: a usage error, as in 'verify evidence'.
var errNeedCollateral = errors.New("SGX and TDX quotes need DCAP collateral to evaluate the TCB: pass --collateral BUNDLE, or --no-collateral to check signatures and the chain only (tcb_status \"NotEvaluated\")")

// ratlsFlags are the flags both RA-TLS commands share.
type ratlsFlags struct {
	collateral, at, trustRoot, format *string
	noCollateral, allowMissing        *bool
	pol                               policyFlags
}

func (f *ratlsFlags) register(fs *flag.FlagSet) {
	f.collateral = fs.String("collateral", "", "DCAP collateral `BUNDLE` (JSON) for SGX/TDX quotes")
	f.noCollateral = fs.Bool("no-collateral", false, "check signatures and chain only; tcb_status is NotEvaluated")
	f.at = fs.String("at", "", "verification `TIME`, RFC 3339 or Unix seconds (default: now)")
	f.trustRoot = fs.String("trust-root", "", "`PEM` file of root certificates that REPLACE the built-in roots")
	f.allowMissing = fs.Bool("allow-missing-crl", false, "accept collateral without CRLs (revocation NOT checked; reported as a warning)")
	f.format = fs.String("format", "json", "output `format`: json or text")
	f.pol.register(fs)
}

// options turns the flags into verification options; usage mistakes are
// usageErrors.
func (f *ratlsFlags) options(e *env, fs *flag.FlagSet) (ratls.VerifyOptions, time.Time, error) {
	var o ratls.VerifyOptions
	if *f.format != "json" && *f.format != "text" {
		return o, time.Time{}, usagef("--format %q: want json or text", *f.format)
	}
	if *f.collateral != "" && *f.noCollateral {
		return o, time.Time{}, usagef("--collateral and --no-collateral exclude each other")
	}
	when := e.now()
	if *f.at != "" {
		var err error
		if when, err = parseTime(*f.at); err != nil {
			return o, time.Time{}, usagef("--at: %v", err)
		}
	}
	o.Now = func() time.Time { return when }
	var appraise bool
	var err error
	if o.Policy, appraise, err = f.pol.appraisal(fs); err != nil {
		return o, time.Time{}, err
	}
	o.SkipAppraisal = !appraise
	o.SkipTCBEvaluation = *f.noCollateral
	o.AllowMissingCRL = *f.allowMissing
	switch {
	case *f.collateral != "":
		data, err := os.ReadFile(*f.collateral)
		if err != nil {
			return o, time.Time{}, fmt.Errorf("reading collateral: %w", err)
		}
		b, err := pcs.ParseBundle(data)
		if err != nil {
			return o, time.Time{}, fmt.Errorf("collateral %s: %w", *f.collateral, err)
		}
		o.Collateral = ratls.BundleSource(b)
	case !*f.noCollateral:
		o.Collateral = func(context.Context, []byte) (*pcs.Bundle, error) { return nil, errNeedCollateral }
	}
	if *f.trustRoot != "" {
		var err error
		if o.TrustRoots, err = readCertificates(*f.trustRoot); err != nil {
			return o, time.Time{}, fmt.Errorf("trust roots: %w", err)
		}
	}
	return o, when, nil
}

// ratlsInfo is the "ratls" object of the output.
type ratlsInfo struct {
	Form      string `json:"form"`
	KeyBound  bool   `json:"key_bound"`
	Appraised bool   `json:"appraised"`
	Fresh     bool   `json:"fresh,omitempty"`
}

// printRATLS writes the claims with the "ratls" object, as JSON or text.
func printRATLS(e *env, path, name, format string, when time.Time, r *ratls.Result, fresh bool) error {
	for _, w := range r.Claims.Warnings {
		fmt.Fprintf(e.stderr, "%s %s: warning: %s\n", programName, path, w)
	}
	info := ratlsInfo{Form: r.Form.String(), KeyBound: r.KeyBound, Appraised: r.Appraised, Fresh: fresh}
	var out []byte
	if format == "json" {
		// Embedding keeps the claims' fields at the top level, as
		// 'verify evidence' prints them, and adds "ratls" after them.
		v := struct {
			*evidence.Claims
			RATLS ratlsInfo `json:"ratls"`
		}{r.Claims, info}
		var err error
		if out, err = json.MarshalIndent(v, "", "  "); err != nil {
			return fmt.Errorf("encoding claims: %w", err)
		}
		out = append(out, '\n')
	} else {
		var b bytes.Buffer
		writeReport(&b, name, when, r.Claims, r.Appraised)
		fmt.Fprintf(&b, "RA-TLS: evidence in the %s extension, certificate key bound: %v", info.Form, info.KeyBound)
		if fresh {
			fmt.Fprintf(&b, ", fresh channel-bound evidence verified")
		}
		b.WriteString("\n")
		out = b.Bytes()
	}
	if _, err := e.stdout.Write(out); err != nil {
		return fmt.Errorf("writing output: %w", err)
	}
	return nil
}

// ratlsFailure maps a verification error to the CLI's error kinds.
func ratlsFailure(name string, err error) error {
	if errors.Is(err, errNeedCollateral) {
		return usagef("%s: %v", name, errNeedCollateral)
	}
	var pe *ratls.PolicyError
	if errors.As(err, &pe) {
		return &policyFailure{file: name, err: pe.Err}
	}
	if errors.Is(err, ratls.ErrNoEvidence) {
		return fmt.Errorf("%s: no RA-TLS evidence: an ordinary certificate, not an attested one (%w)", name, err)
	}
	if reason, ok := evidence.ReasonOf(err); ok {
		return fmt.Errorf("%s: invalid: %w [reason: %s]", name, err, reason)
	}
	return fmt.Errorf("%s: invalid: %w", name, err)
}

// connectFailure maps an error of the attested handshake: a certificate
// without RA-TLS evidence and a failure to connect or to speak TLS are told
// apart from evidence that fails verification (ratlsFailure). All exit 1.
func connectFailure(name string, err error) error {
	var pe *ratls.PolicyError
	var op *net.OpError
	_, verifyFailed := evidence.ReasonOf(err)
	switch {
	case verifyFailed || errors.As(err, &pe) || errors.Is(err, errNeedCollateral):
		return ratlsFailure(name, err)
	case errors.As(err, &op) && op.Op == "dial":
		return fmt.Errorf("%s: network: cannot connect: %w", name, err)
	default:
		return fmt.Errorf("%s: network: TLS 1.3 handshake failed (not an RA-TLS server?): %w", name, err)
	}
}

// runVerifyCert implements "cloister verify cert".
func runVerifyCert(e *env, args []string) error {
	const path = "verify cert"
	fs := newFlagSet(path, "PEM [flags]", verifyCertHelp)
	var f ratlsFlags
	f.register(fs)
	arg, err := parseOneArg(e, fs, args, "certificate PEM")
	if err != nil {
		return err
	}
	o, when, err := f.options(e, fs)
	if err != nil {
		return err
	}
	data, name, err := readInput(e, arg)
	if err != nil {
		return fmt.Errorf("reading certificate: %w", err)
	}
	cert, err := parseOneCertificate(data)
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	v, err := ratls.NewVerifier(o)
	if err != nil {
		return err
	}
	r, err := v.Verify(e.ctx, cert)
	if err != nil {
		return ratlsFailure(name, err)
	}
	return printRATLS(e, path, name, *f.format, when, r, false)
}

// readInput reads the file name, or standard input for "-" (bounded: evidence
// and certificates are a few KiB, and a runaway pipe must not eat memory).
// It returns the name to show in messages.
func readInput(e *env, name string) ([]byte, string, error) {
	if name != "-" {
		data, err := os.ReadFile(name)
		return data, name, err
	}
	data, err := io.ReadAll(io.LimitReader(e.stdin, maxStdinEvidence+1))
	if err == nil && len(data) > maxStdinEvidence {
		err = fmt.Errorf("more than %d bytes", maxStdinEvidence)
	}
	return data, "(stdin)", err
}

// parseOneCertificate returns the first PEM CERTIFICATE in data, or data as
// one DER certificate.
func parseOneCertificate(data []byte) (*x509.Certificate, error) {
	rest := data
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type == "CERTIFICATE" {
			return x509.ParseCertificate(block.Bytes)
		}
	}
	c, err := x509.ParseCertificate(data)
	if err != nil {
		return nil, fmt.Errorf("no PEM CERTIFICATE block and not a DER certificate: %w", err)
	}
	return c, nil
}

// runVerifyHTTPS implements "cloister verify https://HOST:PORT" (also
// reachable as "cloister verify https URL").
func runVerifyHTTPS(e *env, args []string) error {
	const path = "verify https"
	fs := newFlagSet(path, "https://HOST:PORT [flags]", verifyHTTPSHelp)
	var f ratlsFlags
	f.register(fs)
	fresh := fs.Bool("fresh", false, "also run the channel-bound freshness challenge at "+ratls.ChallengePath)
	timeout := fs.Duration("timeout", 30*time.Second, "give up connecting and verifying after `DURATION`")
	arg, err := parseOneArg(e, fs, args, "https://HOST:PORT")
	if err != nil {
		return err
	}
	if *timeout <= 0 {
		return usagef("--timeout %v: want a positive duration", *timeout)
	}
	u, err := url.Parse(arg)
	if err == nil && u.Scheme == "http" {
		return usagef("%q: attested TLS needs TLS: use https://%s", arg, u.Host)
	}
	if err != nil || u.Scheme != "https" || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.User != nil {
		return usagef("%q: want https://HOST:PORT", arg)
	}
	addr := u.Host
	if u.Port() == "" {
		addr = net.JoinHostPort(u.Hostname(), "443")
	}
	o, when, err := f.options(e, fs)
	if err != nil {
		return err
	}
	v, err := ratls.NewVerifier(o)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(e.ctx, *timeout)
	defer cancel()
	name := "https://" + addr

	// The handshake runs the verification (VerifyConnection); the result is
	// then read back from the Verifier's cache for printing.
	d := &tls.Dialer{Config: v.ClientConfig(nil)}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return connectFailure(name, err)
	}
	cs := conn.(*tls.Conn).ConnectionState()
	conn.Close()
	r, err := v.Verify(ctx, cs.PeerCertificates[0])
	if err != nil {
		return ratlsFailure(name, err)
	}
	if *fresh {
		tr := &http.Transport{TLSClientConfig: v.ClientConfig(nil)}
		defer tr.CloseIdleConnections()
		if _, err := v.Challenge(ctx, &http.Client{Transport: tr}, name); err != nil {
			return ratlsFailure(name+" (fresh challenge)", err)
		}
	}
	return printRATLS(e, path, name, *f.format, when, r, *fresh)
}
