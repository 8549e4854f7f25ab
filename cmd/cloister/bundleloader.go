package main

import (
	"context"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"strconv"

	"golang.org/x/sys/unix"

	"github.com/cloister-dev/cloister/bundle"
	"github.com/cloister-dev/cloister/enclave"
	"github.com/cloister-dev/cloister/evidence"
	"github.com/cloister-dev/cloister/policy"
)

// The encrypted bundle loader. A bundle (`cloister sign --encrypt`) is
// this very binary with the app's ciphertext and the loader's
// configuration appended; `cloister run BUNDLE` measures and launches the
// whole file. When this binary finds the bundle tail on its own
// executable it is the loader and nothing else: the arguments are the
// app's, never a subcommand, so a host cannot make the measured bundle
// run any other code of this binary (which could, say, make evidence for
// the host's key).

// selfBundle reports whether this executable ends with a bundle tail.
// It reads 8 bytes; a plain cloister binary pays one open and one pread.
func selfBundle() (bool, error) { return bundleTail("/proc/self/exe") }

// bundleTail reports whether the file at path ends with a bundle tail.
// A file it cannot open, stat or read is errSelfUnreadable, never "not a
// bundle": see main.
func bundleTail(path string) (bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return false, fmt.Errorf("%w: %w", errSelfUnreadable, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return false, fmt.Errorf("%w: %w", errSelfUnreadable, err)
	}
	if st.Size() < int64(bundle.TrailerSize) {
		return false, nil // too short to hold a tail
	}
	var tail [len(bundle.Magic)]byte
	if _, err := f.ReadAt(tail[:], st.Size()-int64(len(tail))); err != nil {
		return false, fmt.Errorf("%w: %w", errSelfUnreadable, err)
	}
	return string(tail[:]) == bundle.Magic, nil
}

// runBundleLoader is the loader: inside the enclave it reads its own
// (measured) file, attests to the broker named there, gets the app's key,
// decrypts the app into a sealed memfd and execs it in its place with
// args. It never returns.
func runBundleLoader(args []string) {
	enclave.RunHandoff(func(ctx context.Context, env *enclave.Env) (*enclave.Handoff, error) {
		// On the simulator this is the file the host measured (a host that
		// swaps it after measuring changes the loader's view, not the
		// evidence: see DESIGN.md). On a TEE the loader's file is measured
		// into the enclave (Gramine trusted file, CVM image).
		file, err := os.ReadFile("/proc/self/exe")
		if err != nil {
			return nil, fmt.Errorf("loader: reading the bundle: %w", err)
		}
		b, err := bundle.Parse(file)
		if err != nil {
			return nil, fmt.Errorf("loader: %w", err)
		}
		bc, err := loaderBrokerConfig(&b.Config)
		if err != nil {
			return nil, err
		}
		if err := env.SetBroker(bc); err != nil {
			return nil, fmt.Errorf("loader: %w", err)
		}
		key, err := env.Secret(ctx, b.Config.Resource)
		if err != nil {
			return nil, fmt.Errorf("loader: the app's key: %w", err)
		}
		app, err := b.Decrypt(key)
		clear(key)
		if err != nil {
			return nil, fmt.Errorf("loader: %w", err)
		}
		path, err := memfdExecutable(app)
		clear(app)
		if err != nil {
			return nil, err
		}
		env.Logger().Info("loader: the app is decrypted; running it", "resource", b.Config.Resource)
		return &enclave.Handoff{Path: path, Argv: append([]string{"app"}, args...)}, nil
	})
}

// loaderBrokerConfig turns the bundle's configuration into the broker
// the loader trusts.
func loaderBrokerConfig(c *bundle.Config) (enclave.BrokerConfig, error) {
	var p policy.Policy
	for _, h := range c.BrokerMRENCLAVE {
		b, _ := hex.DecodeString(h) // Parse checked them
		p.MRENCLAVE = append(p.MRENCLAVE, b)
	}
	for _, h := range c.BrokerMRSIGNER {
		b, _ := hex.DecodeString(h)
		p.MRSIGNER = append(p.MRSIGNER, b)
	}
	p.AllowDebug = c.BrokerAllowDebug
	if c.BrokerSkipTCB {
		p.AllowStatus = []string{evidence.StatusUpToDate, evidence.StatusNotEvaluated}
	}
	roots, err := parseCertsPEM([]byte(c.TrustRootsPEM))
	if err != nil {
		return enclave.BrokerConfig{}, fmt.Errorf("loader: trust_roots_pem: %w", err)
	}
	return enclave.BrokerConfig{URL: c.BrokerURL, Policy: p, TrustRoots: roots, SkipTCBEvaluation: c.BrokerSkipTCB}, nil
}

// parseCertsPEM reads every CERTIFICATE block of data; anything else is
// an error.
func parseCertsPEM(data []byte) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	for {
		var blk *pem.Block
		blk, data = pem.Decode(data)
		if blk == nil {
			break
		}
		if blk.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("a PEM %s block, want CERTIFICATE", blk.Type)
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, nil
}

// memfdExecutable writes app to a memfd sealed against every change and
// returns its /proc/self/fd path: the plaintext lives in enclave memory
// only (on the simulator: in this process's pages), never in a file of
// the host's. The descriptor is close-on-exec; execve opens the path
// before it closes such descriptors.
func memfdExecutable(app []byte) (string, error) {
	fd, err := unix.MemfdCreate("cloister-app", unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if err != nil {
		return "", fmt.Errorf("loader: memfd: %w", err)
	}
	for off := 0; off < len(app); {
		n, err := unix.Write(fd, app[off:])
		if err != nil {
			unix.Close(fd)
			return "", fmt.Errorf("loader: memfd: %w", err)
		}
		if n == 0 {
			unix.Close(fd)
			return "", errors.New("loader: memfd: short write")
		}
		off += n
	}
	if err := unix.Fchmod(fd, 0o500); err != nil {
		unix.Close(fd)
		return "", fmt.Errorf("loader: memfd: %w", err)
	}
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_ADD_SEALS, unix.F_SEAL_SHRINK|unix.F_SEAL_GROW|unix.F_SEAL_WRITE|unix.F_SEAL_SEAL); err != nil {
		unix.Close(fd)
		return "", fmt.Errorf("loader: memfd seals: %w", err)
	}
	// Move it above the boundary's descriptors (3 and 4, free now that
	// the boundary is mapped, so the memfd may have landed there), which
	// RunHandoff puts back just before the exec.
	high, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 10)
	unix.Close(fd)
	if err != nil {
		return "", fmt.Errorf("loader: memfd: %w", err)
	}
	return "/proc/self/fd/" + strconv.Itoa(high), nil
}

// errSelfUnreadable is selfBundle's error: the executable could not be
// read, so whether it is a bundle is unknown.
var errSelfUnreadable = errors.New("cannot read this executable to tell whether it is an encrypted bundle")
