// Command cloister is the Cloister command-line tool: one binary whose
// subcommands verify attestation evidence, manage DCAP collateral, sign and
// measure enclave apps, produce evidence, and drive the simulator.
//
// Usage:
//
//	cloister demo [--sim-dir DIR] [--app PATH]
//	cloister verify evidence FILE [flags]
//	cloister verify cert PEM [flags]
//	cloister verify https://HOST:PORT [--fresh] [flags]
//	cloister verify token TOKEN [--jwks FILE|URL] [--issuer URL] [--at TIME]
//	cloister collateral fetch --quote FILE --out BUNDLE [--cache DIR] [--pcs-url URL]
//	cloister collateral bundle --tcb-info F --tcb-info-chain F --qe-identity F --qe-identity-chain F [...] --out BUNDLE
//	cloister sign APP --key KEY.pem --config enclave.json [--out APP.sig] | cloister sign --new-key KEY.pem
//	cloister measure APP [--config enclave.json] [--sig APP.sig]
//	cloister run APP [--tee sim-sgx|sim-tdx] [--sig APP.sig] [--listen ADDR]... [-- ARGS]
//	cloister gramine manifest APP [--config enclave.json] [--out FILE] [--env NAME]... [-- ARGS]
//	cloister bench boundary [--json]
//	cloister quote --report-data HEX --out FILE [--tee auto|sim-sgx|sim-tdx|tdx|sev-snp|sgx] [--app APP [--sig APP.sig]]
//	cloister sim root|collateral|reset [--sim-dir DIR]
//	cloister policy test FILE --claims CLAIMS.json
//	cloister attest serve --addr 127.0.0.1:8080 [--tee …] [--sim-dir DIR] [--state DIR] [--trust-root PEM]…
//	cloister attest verify-token TOKEN --service URL [--skip-appraisal | policy flags]
//	cloister bench attest [--concurrency N] [--requests N] [--alg RS256|ES256] [--json]
//	cloister bench kv [--json]
//	cloister bench broker [--concurrency N] [--flows N] [--requests N] [--json]
//	cloister broker admin-token --key ED25519.pem [--ttl 1h]
//	cloister broker serve --listen 127.0.0.1:8081 [--public-url URL] [--tls] [--state DIR] [--admin-key PEM]... [--tee …]
//	cloister ledger verify-receipt RECEIPT.json --service-cert PEM [--claims FILE] [--json]
//	cloister bench ledger [--json] [--entries N] [--writers N]
//	cloister ledger audit --ledger URL --ledger-cert PEM --ledger-client-cert PEM --ledger-client-key PEM --ledger-mrenclave HEX
//	cloister ledger serve --listen HOST:PORT --admin-cert PEM [--state DIR] [--service-cert-out FILE]
//	cloister version
//	cloister help [COMMAND]
//
// Exit codes (a contract; scripts depend on them, see DESIGN.md):
//
//	0  valid evidence, or the operation succeeded
//	1  invalid evidence, policy not satisfied, or the operation failed
//	2  usage error: unknown command, bad flag, missing argument, bad --at
//
// Standard output carries only the result (claims JSON or the text report),
// and only on exit 0; every diagnostic goes to standard error.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// Exit codes of run; see the package doc.
const (
	exitOK      = 0
	exitFailed  = 1
	exitUsage   = 2
	programName = "cloister"
)

func main() {
	// An encrypted app bundle is the loader and nothing else. Fail closed:
	// a measured bundle whose own file the host made unreadable must not
	// fall through to the subcommands (one could make evidence for a key
	// the host holds and so obtain the app's key).
	isBundle, err := selfBundle()
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", programName, err)
		os.Exit(exitFailed)
	}
	if isBundle {
		runBundleLoader(os.Args[1:])
	}
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr, time.Now))
}

// env is what a command receives from outside. Everything a test needs to
// pin (time, output streams) comes through here, so run is deterministic
// under test: library code never calls time.Now, and neither do commands.
type env struct {
	ctx    context.Context
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
	now    func() time.Time
	// cvm replaces the kernel interfaces of a confidential VM (tests);
	// nil is the real machine.
	cvm *cvmDeps
}

// command is one leaf of the command tree, e.g. "verify evidence".
type command struct {
	// path is the words after "cloister", e.g. "collateral fetch".
	path string
	// summary is one line for the command list.
	summary string
	// run parses args (everything after path) and executes. It returns a
	// usageError for exit 2, flag.ErrHelp after printing help (exit 0),
	// any other error for exit 1.
	run func(e *env, args []string) error
}

// commands is the whole command tree. "help" is handled by run itself.
var commands = []command{
	{"demo", "run the example enclave app on the simulator and attest it over RA-TLS, end to end", runDemo},
	{"verify evidence", "verify an SGX/TDX quote or SEV-SNP report and print its claims", runVerifyEvidence},
	{"verify cert", "verify an RA-TLS certificate's evidence and key binding, print its claims", runVerifyCert},
	{"verify https", "connect to https://HOST:PORT, attest the server over RA-TLS, print its claims", runVerifyHTTPS},
	{"verify token", "validate an attestation token (Cloister's or Azure Attestation's) against a JWKS, print its claims", runVerifyToken},
	{"collateral fetch", "fetch a quote's DCAP collateral from Intel PCS into a bundle", runCollateralFetch},
	{"collateral bundle", "assemble a collateral bundle from saved Intel PCS responses", runCollateralBundle},
	{"run", "run an enclave app on the simulator, serving its host calls", runRun},
	{"gramine manifest", "write the Gramine manifest of an enclave app (SGX under Gramine)", runGramineManifest},
	{"sign", "sign an enclave app (or make a signing key with --new-key)", runSign},
	{"measure", "print an enclave app's MRENCLAVE (and MRSIGNER, given its signature)", runMeasure},
	{"quote", "produce evidence binding report data (hardware or simulator)", runQuote},
	{"sim root", "print the simulator's root certificate (PEM)", runSimRoot},
	{"sim collateral", "print a signed collateral bundle for the simulator", runSimCollateral},
	{"sim reset", "replace the simulator's keys", runSimReset},
	{"policy test", "evaluate an MAA or Rego attestation policy against claims, offline", runPolicyTest},
	{"bench boundary", "measure the host-enclave boundary: rings vs Unix socket, gRPC, ping-pong", runBenchBoundary},
	{"bench ledger", "measure the ledger: appends/s with receipts (64 writers), receipt latency, receipt verification, against plain bbolt appends", runBenchLedger},
	{"bench kv", "measure the sealed key/value store against plain bbolt puts and gets", runBenchKV},
	{"bench attest", "measure the attestation service: tokens/s over loopback vs signing-only and verification-only limits", runBenchAttest},
	{"bench broker", "measure the key broker: KBS flows/s and resource requests/s against the attestation service's tokens/s", runBenchBroker},
	{"attest serve", "run the MAA-compatible attestation service", runAttestServe}, {"attest verify-token", "attest a Cloister attestation service and validate one of its tokens", runAttestVerifyToken},
	{"broker serve", "run the key broker: Trustee KBS protocol (and compiled-in extensions), releasing secrets to attested workloads", runBrokerServe},
	{"ledger verify-receipt", "verify a ledger write receipt (Azure Confidential Ledger, CCF) offline against the service certificate", runLedgerVerifyReceipt},
	{"broker admin-token", "print an Ed25519-signed admin token for broker serve's management API", runBrokerAdminToken},
	{"ledger audit", "list the attestations a Cloister attestation service recorded in a ledger (attest serve --ledger)", runLedgerAudit},
	{"ledger serve", "run a confidential ledger node (Azure Confidential Ledger's REST API) as an enclave app on the simulator", runLedgerServe},
	{"version", "print the version of cloister", runVersion},
}

// usageError is a mistake in how cloister was invoked. run prints it with a
// pointer to the right help and exits 2, so scripts can tell "you called me
// wrong" from "the evidence is bad".
type usageError struct{ msg string }

func (u *usageError) Error() string { return u.msg }

func usagef(format string, args ...any) error {
	return &usageError{msg: fmt.Sprintf(format, args...)}
}

// run is the whole program with its inputs made explicit. It returns the exit
// code; main passes it to os.Exit.
func run(args []string, stdin io.Reader, stdout, stderr io.Writer, now func() time.Time) int {
	e := &env{ctx: context.Background(), stdin: stdin, stdout: stdout, stderr: stderr, now: now}
	if len(args) == 0 {
		printUsage(stderr)
		return exitUsage
	}
	switch args[0] {
	case "-h", "-help", "--help":
		printUsage(stdout)
		return exitOK
	case "help":
		return runHelp(e, args[1:])
	case demoAppCommand:
		return finish(e, demoAppCommand, runDemoApp(e, args[1:]))
	case ledgerNodeCommand:
		return finish(e, ledgerNodeCommand, runLedgerNode(e, args[1:]))
	}
	cmd, rest, group := lookup(args)
	if cmd == nil {
		if group != "" {
			// "cloister verify" or "cloister verify --help": list the group.
			if len(rest) > 0 && isHelpFlag(rest[0]) {
				printGroupUsage(stdout, group)
				return exitOK
			}
			if len(rest) == 0 {
				fmt.Fprintf(stderr, "%s: %s: missing subcommand\n", programName, group)
			} else {
				fmt.Fprintf(stderr, "%s: %s: unknown subcommand %q\n", programName, group, rest[0])
			}
			printGroupUsage(stderr, group)
			return exitUsage
		}
		fmt.Fprintf(stderr, "%s: unknown command %q\nRun '%s help' for the list of commands.\n", programName, args[0], programName)
		return exitUsage
	}
	return finish(e, cmd.path, cmd.run(e, rest))
}

// exitStatusError ends cloister with a given status: `cloister run` passes
// its app's exit status through.
type exitStatusError struct {
	code int
	msg  string
}

func (x *exitStatusError) Error() string { return x.msg }

// finish maps a command's error to output on stderr and an exit code.
func finish(e *env, path string, err error) int {
	var u *usageError
	var x *exitStatusError
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, flag.ErrHelp):
		return exitOK
	case errors.As(err, &u):
		fmt.Fprintf(e.stderr, "%s %s: %s\n", programName, path, u.msg)
		fmt.Fprintf(e.stderr, "Run '%s help %s' for usage.\n", programName, path)
		return exitUsage
	case errors.As(err, &x):
		fmt.Fprintf(e.stderr, "%s %s: %s\n", programName, path, x.msg)
		return x.code
	default:
		fmt.Fprintf(e.stderr, "%s %s: %s\n", programName, path, err)
		return exitFailed
	}
}

// lookup finds the command named by the leading words of args. When args
// name a group ("verify", "collateral") but no command in it, it returns the
// group name so the caller can list that group.
func lookup(args []string) (cmd *command, rest []string, group string) {
	// "cloister verify https://HOST:PORT" is the documented spelling of
	// the "verify https" command: the URL is its argument.
	if len(args) >= 2 && args[0] == "verify" && (strings.HasPrefix(args[1], "https://") || strings.HasPrefix(args[1], "http://")) {
		args = append([]string{"verify", "https"}, args[1:]...)
	}
	for i := range commands {
		words := strings.Fields(commands[i].path)
		if len(args) >= len(words) && slices.Equal(args[:len(words)], words) {
			return &commands[i], args[len(words):], ""
		}
	}
	for i := range commands {
		words := strings.Fields(commands[i].path)
		if len(words) > 1 && args[0] == words[0] {
			return nil, args[1:], words[0]
		}
	}
	return nil, nil, ""
}

func isHelpFlag(s string) bool { return s == "-h" || s == "-help" || s == "--help" }

// runHelp prints help for a command, a group or the whole program. Help for
// a command is that command's own --help, so the two can never disagree.
func runHelp(e *env, args []string) int {
	if len(args) == 0 || (len(args) == 1 && isHelpFlag(args[0])) {
		printUsage(e.stdout)
		return exitOK
	}
	// "help COMMAND --help" asks for the same help as "help COMMAND".
	if isHelpFlag(args[len(args)-1]) {
		args = args[:len(args)-1]
	}
	cmd, rest, group := lookup(args)
	switch {
	case cmd != nil && len(rest) == 0:
		return finish(e, cmd.path, cmd.run(e, []string{"--help"}))
	case cmd == nil && group != "" && len(rest) == 0:
		printGroupUsage(e.stdout, group)
		return exitOK
	}
	fmt.Fprintf(e.stderr, "%s help: unknown command %q\nRun '%s help' for the list of commands.\n", programName, strings.Join(args, " "), programName)
	return exitUsage
}

func printUsage(w io.Writer) {
	fmt.Fprintf(w, `Cloister: confidential-computing platform tools.

Usage:
  %[1]s COMMAND [ARGS] [FLAGS]

Commands:
`, programName)
	listCommands(w, "")
	fmt.Fprintf(w, `
Exit codes: 0 valid / success, 1 invalid evidence or operation failed,
2 usage error. Run '%[1]s help COMMAND' or '%[1]s COMMAND --help' for details.
`, programName)
}

func printGroupUsage(w io.Writer, group string) {
	fmt.Fprintf(w, "Usage:\n  %s %s SUBCOMMAND [ARGS] [FLAGS]\n\nSubcommands:\n", programName, group)
	listCommands(w, group)
	fmt.Fprintf(w, "\nRun '%s help %s SUBCOMMAND' for details.\n", programName, group)
}

// listCommands prints the commands whose first word is group (all if "").
func listCommands(w io.Writer, group string) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, c := range commands {
		if group != "" && strings.Fields(c.path)[0] != group {
			continue
		}
		fmt.Fprintf(tw, "  %s\t%s\n", c.path, c.summary)
	}
	if group == "" {
		fmt.Fprintf(tw, "  %s\t%s\n", "help [COMMAND]", "show help for a command")
	}
	tw.Flush()
}

// newFlagSet returns a silent FlagSet: the flag package would print the
// whole usage to stderr on every bad flag, burying the one line that
// matters. parseArgs reports errors itself and prints the usage, to stdout,
// only for --help.
func newFlagSet(path, synopsis, description string) *flag.FlagSet {
	fs := flag.NewFlagSet(programName+" "+path, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {
		w := fs.Output()
		fmt.Fprintf(w, "Usage:\n  %s %s %s\n\n%s", programName, path, synopsis, description)
		printFlags(w, fs)
	}
	return fs
}

// printFlags lists fs's flags in the "--name" spelling the documentation
// uses (flag.PrintDefaults prints "-name"; both are accepted).
func printFlags(w io.Writer, fs *flag.FlagSet) {
	header := false
	fs.VisitAll(func(f *flag.Flag) {
		if !header {
			fmt.Fprintf(w, "\nFlags:\n")
			header = true
		}
		arg, usage := flag.UnquoteUsage(f)
		line := "  --" + f.Name
		if arg != "" {
			line += " " + arg
		}
		line += "\n    \t" + strings.ReplaceAll(usage, "\n", "\n    \t")
		if f.DefValue != "" && f.DefValue != "false" {
			line += fmt.Sprintf(" (default %q)", f.DefValue)
		}
		fmt.Fprintln(w, line)
	})
}

// parseArgs parses flags that may come before, between or after the
// positional arguments ("verify evidence FILE --at T" is the documented
// order, and the standard flag package stops at the first non-flag). An
// argument "--" ends flag parsing. --help prints the usage to stdout and
// returns flag.ErrHelp; a bad flag returns a usageError.
func parseArgs(e *env, fs *flag.FlagSet, args []string) ([]string, error) {
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				fs.SetOutput(e.stdout)
				fs.Usage()
				return nil, flag.ErrHelp
			}
			return nil, usagef("%v", err)
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return positional, nil
		}
		consumed := len(args) - len(rest)
		if consumed > 0 && args[consumed-1] == "--" {
			return append(positional, rest...), nil
		}
		positional = append(positional, rest[0])
		args = rest[1:]
	}
}

// parseNoArgs is parseArgs for a command that takes flags only: any
// positional argument is a usage error.
func parseNoArgs(e *env, fs *flag.FlagSet, args []string) error {
	pos, err := parseArgs(e, fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usagef("unexpected argument %q", pos[0])
	}
	return nil
}

// parseOneArg is parseArgs for a command that takes exactly one positional
// argument, described by what (e.g. "evidence FILE") in the usage errors.
func parseOneArg(e *env, fs *flag.FlagSet, args []string, what string) (string, error) {
	pos, err := parseArgs(e, fs, args)
	if err != nil {
		return "", err
	}
	switch {
	case len(pos) == 0:
		return "", usagef("missing %s", what)
	case len(pos) > 1:
		return "", usagef("want one %s, got %d arguments: %s", what, len(pos), strings.Join(pos, " "))
	}
	return pos[0], nil
}

// runVersion prints the module version and VCS revision recorded by the Go
// toolchain, so a binary can be traced to its source without a build script.
func runVersion(e *env, args []string) error {
	fs := newFlagSet("version", "", "Print the version of cloister, its VCS revision when known, and the Go version.\n")
	if err := parseNoArgs(e, fs, args); err != nil {
		return err
	}
	version, revision := "(devel)", ""
	if bi, ok := debug.ReadBuildInfo(); ok {
		if bi.Main.Version != "" {
			version = bi.Main.Version
		}
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" {
				revision = s.Value
			}
		}
	}
	fmt.Fprintf(e.stdout, "%s %s", programName, version)
	if revision != "" {
		fmt.Fprintf(e.stdout, " (%s)", revision)
	}
	fmt.Fprintf(e.stdout, " %s %s/%s\n", runtime.Version(), runtime.GOOS, runtime.GOARCH)
	return nil
}

// printJSON writes v to w as indented JSON and a newline: the one output
// form of the commands that print a result object.
func printJSON(w io.Writer, v any) error {
	out, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding the result: %w", err)
	}
	_, err = fmt.Fprintf(w, "%s\n", out)
	return err
}
