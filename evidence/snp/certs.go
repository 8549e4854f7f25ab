package snp

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"fmt"

	"github.com/cloister-dev/cloister/evidence/internal/verr"
	"github.com/google/go-sev-guest/abi"
	"github.com/google/go-sev-guest/verify/trust"
)

// certTable is the part of an SNP extended-report certificate table that
// verification uses. Raw certificates are kept as the table holds them.
type certTable struct {
	vcek, vlek []byte
	// icas holds the ASK/ASVK entries. The GHCB specification gives the
	// ASVK no GUID of its own (it travels under the ASK GUID), and
	// go-sev-guest's test signer writes it under abi.AsvkGUID, the nil GUID.
	icas [][]byte
}

// parseCertTable decodes a certificate table (GHCB "certificate table":
// 24-byte entries {GUID, u32 offset, u32 length} ended by an all-zero
// entry, then the blobs) with go-sev-guest's abi.CertTable. It first checks
// every entry's range itself because abi.CertTable.Unmarshal adds offset and
// length in uint32, which wraps and then slices out of range (a panic) on a
// hostile table. Duplicate GUIDs are rejected: with two VCEKs it would be
// the table, not the verifier, that chose which one counts.
func parseCertTable(b []byte) (*certTable, error) {
	if len(b) == 0 {
		return &certTable{}, nil
	}
	if len(b) > maxCertTableSize {
		return nil, verr.New(pkg, stepCertTable, verr.Malformed,
			"certificate table is %d bytes, limit %d", len(b), maxCertTableSize)
	}
	hdr, err := abi.ParseSnpCertTableHeader(b)
	if err != nil {
		return nil, verr.Wrap(pkg, stepCertTable, verr.Malformed, err, "bad header")
	}
	if len(hdr) > maxCertTableEntries {
		return nil, verr.New(pkg, stepCertTable, verr.Malformed,
			"%d entries, limit %d", len(hdr), maxCertTableEntries)
	}
	for i, e := range hdr {
		if end := uint64(e.Offset) + uint64(e.Length); end > uint64(len(b)) {
			return nil, verr.New(pkg, stepCertTable, verr.Malformed,
				"entry %d (%s) range [%d, %d) outside the %d-byte table", i, e.GUID, e.Offset, end, len(b))
		}
		for _, prev := range hdr[:i] {
			if prev.GUID == e.GUID {
				return nil, verr.New(pkg, stepCertTable, verr.Malformed, "GUID %s appears twice", e.GUID)
			}
		}
	}
	var table abi.CertTable
	if err := table.Unmarshal(b); err != nil {
		return nil, verr.Wrap(pkg, stepCertTable, verr.Malformed, err, "bad entries")
	}
	out := &certTable{}
	// Entries with other GUIDs (ExtraPlatformInfo, host extensions) are
	// not used for verification and are ignored.
	for _, e := range table.Entries {
		switch e.GUID.String() {
		case abi.VcekGUID:
			out.vcek = e.RawCert
		case abi.VlekGUID:
			out.vlek = e.RawCert
		case abi.AskGUID, abi.AsvkGUID:
			out.icas = append(out.icas, e.RawCert)
		}
	}
	return out, nil
}

// parseCert parses one DER or PEM certificate with a size cap.
func parseCert(b []byte, step, what string) (*x509.Certificate, error) {
	if len(b) > maxCertSize {
		return nil, verr.New(pkg, step, verr.Malformed, "%s is %d bytes, limit %d", what, len(b), maxCertSize)
	}
	// trust.ParseCert accepts exactly one PEM CERTIFICATE block or DER.
	c, err := trust.ParseCert(b)
	if err != nil {
		return nil, verr.Wrap(pkg, step, verr.Malformed, err, "cannot parse %s", what)
	}
	return c, nil
}

// parsePEMChain parses Options.Chain: PEM CERTIFICATE blocks only, nothing
// but whitespace around them.
func parsePEMChain(b []byte) ([]*x509.Certificate, error) {
	if len(b) > maxChainSize {
		return nil, verr.New(pkg, stepChainInput, verr.Malformed, "chain is %d bytes, limit %d", len(b), maxChainSize)
	}
	var out []*x509.Certificate
	rest := b
	for {
		var blk *pem.Block
		blk, rest = pem.Decode(rest)
		if blk == nil {
			break
		}
		if blk.Type != "CERTIFICATE" {
			return nil, verr.New(pkg, stepChainInput, verr.Malformed, "PEM block %q, want CERTIFICATE", blk.Type)
		}
		if len(out) == maxChainCerts {
			return nil, verr.New(pkg, stepChainInput, verr.Malformed, "more than %d certificates", maxChainCerts)
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, verr.Wrap(pkg, stepChainInput, verr.Malformed, err, "certificate %d", len(out))
		}
		out = append(out, c)
	}
	if len(bytes.TrimSpace(rest)) != 0 {
		return nil, verr.New(pkg, stepChainInput, verr.Malformed, "%d bytes that are not PEM certificates", len(rest))
	}
	if len(out) == 0 && len(b) != 0 {
		return nil, verr.New(pkg, stepChainInput, verr.Malformed, "no PEM certificate found")
	}
	return out, nil
}

// signerName is the key kind as AMD names it ("VCEK", "VLEK").
func signerName(s abi.ReportSigner) string {
	return fmt.Sprint(s)
}
