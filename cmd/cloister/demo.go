package main

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
	"os"

	"github.com/cloister-dev/cloister/evidence"
	"github.com/cloister-dev/cloister/seal"
	"github.com/cloister-dev/cloister/tee"
	"github.com/cloister-dev/cloister/tee/sim"
)

const demoHelp = `Run Cloister end to end on the simulator, with real cryptography:

  1. measure this binary as an enclave app (MRENCLAVE),
  2. produce an SGX quote v3 for it on the simulator, binding report data,
  3. verify the quote with the production verifier under the sim root,
     with signed sim collateral, and print the claims,
  4. show that the same quote fails under the built-in Intel root,
  5. seal a secret to the enclave, open it, and show that another enclave
     identity cannot.

The simulator's keys go to a temporary directory unless --sim-dir is given.
`

func runDemo(e *env, args []string) error {
	fs := newFlagSet("demo", "[--sim-dir DIR]", demoHelp)
	dirFlag := fs.String("sim-dir", "", "simulator data `DIR` (default: a temporary directory)")
	if pos, err := parseArgs(e, fs, args); err != nil {
		return err
	} else if len(pos) > 0 {
		return usagef("unexpected argument %q", pos[0])
	}
	dir := *dirFlag
	if dir == "" {
		tmp, err := os.MkdirTemp("", "cloister-demo-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(tmp)
		dir = tmp + "/sim"
	}
	out := e.stdout
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("finding this binary: %w", err)
	}
	app, err := sim.AppFromFiles(self, "")
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "1. measured %s\n   MRENCLAVE %x (unsigned: default debug configuration, MRSIGNER zero)\n", self, app.MRENCLAVE)

	now := e.now()
	pki, err := sim.Load(dir, rand.Reader, now)
	if err != nil {
		return err
	}
	p, err := sim.NewPlatform(pki, tee.KindSimSGX, app, nil)
	if err != nil {
		return err
	}
	var rd [64]byte
	nonce := sha256.Sum256([]byte("cloister demo"))
	copy(rd[:], nonce[:])
	quote, err := p.Evidence(e.ctx, rd)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "2. sim-sgx quote: %d bytes, SGX ECDSA quote v3, report data %x…\n", len(quote), rd[:8])

	col, err := pki.Collateral(rand.Reader, now, false)
	if err != nil {
		return err
	}
	opts := evidence.Options{Time: now, Collateral: col, TrustRoots: []*x509.Certificate{pki.Root}}
	c, err := evidence.Verify(e.ctx, quote, opts)
	if err != nil {
		return fmt.Errorf("the demo quote did not verify: %w", err)
	}
	fmt.Fprintf(out, "3. verified under the sim root (%s):\n   tee %s, tcb_status %s, debug %v\n   mrenclave %s\n   report_data matches: %v\n",
		pki.Root.Subject.CommonName, c.TEE, c.TCBStatus, c.Debug, c.MRENCLAVE, string(c.ReportData) == string(rd[:]))

	opts.TrustRoots = nil
	if _, err := evidence.Verify(e.ctx, quote, opts); err == nil {
		return errors.New("the demo quote verified under the Intel root: the simulator must never pass as hardware")
	} else {
		r, _ := evidence.ReasonOf(err)
		fmt.Fprintf(out, "4. under the built-in Intel root it fails, as it must (%v):\n   %v\n", r, err)
	}

	s := tee.NewSealer(p)
	blob, err := s.Seal(e.ctx, seal.PolicyEnclave, []byte("demo-record"), []byte("the secret"))
	if err != nil {
		return err
	}
	pt, err := s.Open(e.ctx, []byte("demo-record"), blob)
	if err != nil {
		return err
	}
	other := app
	other.MRENCLAVE[0] ^= 1
	op, err := sim.NewPlatform(pki, tee.KindSimSGX, other, nil)
	if err != nil {
		return err
	}
	_, otherErr := tee.NewSealer(op).Open(e.ctx, []byte("demo-record"), blob)
	if otherErr == nil {
		return errors.New("another enclave opened the demo's sealed blob")
	}
	fmt.Fprintf(out, "5. sealed %d bytes into a %d-byte CLS1 blob and opened it: %q\n   another MRENCLAVE cannot: %v\n", len(pt), len(blob), pt, otherErr)
	fmt.Fprintln(out, "\nNext: 'cloister help' for the commands; README.md for signing apps and verifying hardware evidence.")
	return nil
}
