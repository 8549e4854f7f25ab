// Package gramine is the tee.Platform for Intel SGX enclaves that run
// under the Gramine library OS, which exposes attestation and sealing as
// pseudo-files under /dev/attestation:
//
//   - attestation_type: "dcap" when the manifest sets
//     sgx.remote_attestation = "dcap" (the only type Cloister accepts);
//   - user_report_data: 64 bytes written here become REPORTDATA of the next
//     quote;
//   - quote: reading it returns an SGX ECDSA quote v3 over the enclave's
//     report with the last written user_report_data;
//   - keys/_sgx_mrenclave, keys/_sgx_mrsigner: 16-byte SGX seal keys
//     (EGETKEY with KEYPOLICY MRENCLAVE or MRSIGNER).
//
// Evidence is the raw quote, which evidence.Verify reads. The root path
// is configurable so tests can run against a directory tree.
package gramine

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/cloister-dev/cloister/evidence/dcap"
	"github.com/cloister-dev/cloister/evidence/sgx"
	"github.com/cloister-dev/cloister/tee"
)

// DefaultRoot is where Gramine mounts its attestation pseudo-files.
const DefaultRoot = "/dev/attestation"

// Names under the root, as Gramine spells them.
const (
	fileAttestationType = "attestation_type"
	fileUserReportData  = "user_report_data"
	fileQuote           = "quote"
	fileKeyMRENCLAVE    = "keys/_sgx_mrenclave"
	fileKeyMRSIGNER     = "keys/_sgx_mrsigner"
)

// Sizes and caps of what is read. The caps bound memory if the root is
// not what it claims to be.
const (
	// attestationTypeDCAP is the only attestation type Cloister accepts:
	// "none" has no quotes, "epid" quotes are not verified by Cloister
	// (Intel retired EPID attestation).
	attestationTypeDCAP = "dcap"
	// maxAttestationType caps the attestation_type read.
	maxAttestationType = 64
	// sealKeySize is the size of an SGX seal key (EGETKEY output).
	sealKeySize = 16
	// maxKeyFile caps a key file read, so a wrong size can be reported.
	maxKeyFile = 64
)

// Config says where Gramine's pseudo-files are.
type Config struct {
	// Root is the attestation directory; "" means DefaultRoot.
	Root string
}

// Platform is an SGX enclave under Gramine. It is safe for concurrent use:
// the write of user_report_data and the read of the quote that goes with
// it are one critical section.
type Platform struct {
	root string
	// mu serialises the user_report_data → quote exchange, which works on
	// state Gramine keeps per process, not per file descriptor.
	mu sync.Mutex
	// id is computed once at Open and never modified; Identity returns
	// copies.
	id tee.Identity
}

var _ tee.Platform = (*Platform)(nil)

// Open checks that Gramine's attestation type is "dcap" and takes one
// quote (with all-zero report data) to learn the enclave's identity from
// its report body: MRENCLAVE, MRSIGNER, ISVPRODID, ISVSVN and the DEBUG
// attribute. Taking a quote at Open also makes a broken quoting setup
// (no AESM, no DCAP quote provider library on the host) fail here rather
// than at the first Evidence call.
func Open(ctx context.Context, cfg Config) (tee.Platform, error) {
	root := cfg.Root
	if root == "" {
		root = DefaultRoot
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("gramine: open: %w", err)
	}
	p := &Platform{root: root}
	typ, err := p.readCapped(fileAttestationType, maxAttestationType)
	if err != nil {
		return nil, fmt.Errorf("gramine: not running under Gramine with remote attestation (or %s is not its attestation directory): %w", root, err)
	}
	// Gramine prints the name without a newline; trimming costs nothing
	// and tolerates one.
	if t := strings.TrimSpace(string(typ)); t != attestationTypeDCAP {
		return nil, fmt.Errorf("gramine: attestation type is %q, need %q: set sgx.remote_attestation = \"dcap\" in the manifest", t, attestationTypeDCAP)
	}
	var zero [64]byte
	q, _, err := p.quote(zero)
	if err != nil {
		return nil, fmt.Errorf("gramine: open: identity quote: %w", err)
	}
	// The identity quote is not checked for its report data: it is never
	// handed out, and the report body describes this enclave whichever
	// report data it carries. Evidence checks both.
	r := q.Report
	p.id = tee.Identity{
		Measurement: bytes.Clone(r.MRENCLAVE[:]),
		Signer:      bytes.Clone(r.MRSIGNER[:]),
		ProductID:   r.ISVProdID,
		SVN:         r.ISVSVN,
		Debug:       r.Debug(),
	}
	return p, nil
}

// Kind is tee.KindSGX.
func (p *Platform) Kind() tee.Kind { return tee.KindSGX }

// Identity returns the identity read at Open.
func (p *Platform) Identity() tee.Identity {
	id := p.id
	id.Measurement = bytes.Clone(id.Measurement)
	id.Signer = bytes.Clone(id.Signer)
	return id
}

// Evidence writes reportData to user_report_data, reads the quote Gramine
// produces for it, and returns the raw SGX quote v3. Before returning it
// checks that the quote parses, that its REPORTDATA is exactly reportData
// (anything else is someone else's quote: another writer of
// user_report_data in this process, or a host answering with a stale
// quote), and that it is for this enclave's MRENCLAVE and MRSIGNER.
func (p *Platform) Evidence(ctx context.Context, reportData [64]byte) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("gramine: evidence: %w", err)
	}
	q, raw, err := p.quote(reportData)
	if err != nil {
		return nil, fmt.Errorf("gramine: evidence: %w", err)
	}
	if q.Report.ReportData != reportData {
		return nil, fmt.Errorf("gramine: evidence: the quote's report data is %x, we wrote %x: someone else's quote", q.Report.ReportData, reportData)
	}
	if !bytes.Equal(q.Report.MRENCLAVE[:], p.id.Measurement) || !bytes.Equal(q.Report.MRSIGNER[:], p.id.Signer) {
		return nil, fmt.Errorf("gramine: evidence: the quote is for MRENCLAVE %x MRSIGNER %x, not this enclave (%x, %x)",
			q.Report.MRENCLAVE, q.Report.MRSIGNER, p.id.Measurement, p.id.Signer)
	}
	return raw, nil
}

// quote runs the user_report_data → quote exchange under p.mu and parses
// the result (format only; evidence.Verify verifies).
func (p *Platform) quote(reportData [64]byte) (*sgx.Quote, []byte, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.writeReportData(reportData); err != nil {
		return nil, nil, err
	}
	raw, err := p.readCapped(fileQuote, dcap.MaxQuoteSize)
	if err != nil {
		return nil, nil, err
	}
	q, err := sgx.Parse(raw)
	if err != nil {
		return nil, nil, fmt.Errorf("%s is not an SGX quote v3: %w", p.path(fileQuote), err)
	}
	return q, raw, nil
}

// writeReportData writes the 64 bytes in one write, as Gramine requires,
// to the existing pseudo-file: no O_CREATE, so a wrong root fails instead
// of growing a stray file.
func (p *Platform) writeReportData(reportData [64]byte) error {
	name := p.path(fileUserReportData)
	f, err := os.OpenFile(name, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	_, werr := f.Write(reportData[:])
	cerr := f.Close()
	if err := errors.Join(werr, cerr); err != nil {
		return fmt.Errorf("writing %s: %w", name, err)
	}
	return nil
}

// readCapped reads a whole pseudo-file, refusing more than limit bytes.
// Gramine's pseudo-files report no useful size, so the cap is enforced on
// what is read.
func (p *Platform) readCapped(file string, limit int) ([]byte, error) {
	name := p.path(file)
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, int64(limit)+1))
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", name, err)
	}
	if len(b) > limit {
		return nil, fmt.Errorf("%s is larger than %d bytes", name, limit)
	}
	return b, nil
}

// path joins a file name to the root.
func (p *Platform) path(file string) string {
	return filepath.Join(p.root, filepath.FromSlash(file))
}
