// Package tsmreport reads and writes a Linux configfs-tsm report
// (/sys/kernel/config/tsm/report) in the form Veraison uses, so that
// evidence moves between Cloister and Veraison tools unchanged.
//
// The format is Veraison's (github.com/veraison/ratsd, tokens/tsm-report.go
// and docs/tsm-report.cddl): one map with the text keys "provider" (string),
// "outblob" (the report or quote), "auxblob" (optional; for sev_guest the
// SNP certificate table) and, for reports produced through an SVSM service,
// "service_provider" and "manifestblob". In CBOR
// (application/vnd.veraison.tsm-report+cbor) the keys are text strings and
// the blobs byte strings; in JSON (application/vnd.veraison.tsm-report+json)
// the blobs are unpadded base64url (RFC 4648 §5), which is all Veraison's
// writer emits.
//
// Parsing is strict: unknown or duplicate keys, indefinite lengths, tags,
// non-canonical base64url, trailing bytes and control bytes in names are
// errors, except the one newline that ends the kernel's provider and
// service_provider attributes, which real evidence carries (see Parse). Parsing is pure; the
// blobs are not interpreted (evidence/snp and evidence/tdx do that).
package tsmreport

import (
	"fmt"
	"strings"
)

// Media types of the two encodings. Veraison's services also name the JSON
// form "application/vnd.veraison.configfs-tsm+json"; the bytes are the same.
const (
	MediaTypeJSON = "application/vnd.veraison.tsm-report+json"
	MediaTypeCBOR = "application/vnd.veraison.tsm-report+cbor"
)

// Providers the kernel registers for the TEEs Cloister verifies. Other
// providers (arm_cca_guest, ...) parse too; it is the verifier that decides
// what it can check.
const (
	ProviderTDX = "tdx_guest"
	ProviderSNP = "sev_guest"
)

// Report is a configfs-tsm report. Nothing in it is verified.
type Report struct {
	// Provider is the kernel's provider name (e.g. "tdx_guest",
	// "sev_guest"). Required. Parse removes the one trailing newline the
	// kernel's attribute ends with; the encoders write the name without it.
	Provider string
	// OutBlob is the provider's report: a TDX quote or an SNP attestation
	// report. Required, non-empty.
	OutBlob []byte
	// AuxBlob is optional provider data; for sev_guest the SNP certificate
	// table (VCEK, ASK, ARK by GUID).
	AuxBlob []byte
	// ServiceProvider names the service (e.g. "svsm") when the report
	// came through one. Optional.
	ServiceProvider string
	// ManifestBlob is the service's manifest. Optional, and only with
	// ServiceProvider (Veraison rejects a stray manifest too).
	ManifestBlob []byte
}

// validate checks the invariants both Parse and the encoders enforce, so
// that whatever we write we can read back.
func (r *Report) validate() error {
	if err := checkName("provider", r.Provider); err != nil {
		return err
	}
	if len(r.OutBlob) == 0 {
		return fmt.Errorf("tsmreport: outblob is empty")
	}
	for _, b := range []struct {
		name string
		v    []byte
	}{{"outblob", r.OutBlob}, {"auxblob", r.AuxBlob}, {"manifestblob", r.ManifestBlob}} {
		if len(b.v) > MaxBlobSize {
			return fmt.Errorf("tsmreport: %s is %d bytes, limit %d", b.name, len(b.v), MaxBlobSize)
		}
	}
	if r.ServiceProvider != "" {
		if err := checkName("service_provider", r.ServiceProvider); err != nil {
			return err
		}
	} else if len(r.ManifestBlob) != 0 {
		return fmt.Errorf("tsmreport: manifestblob without service_provider")
	}
	return nil
}

// checkName accepts the printable-ASCII, space-free names the kernel uses,
// so that a name can be printed and compared without surprises.
func checkName(field, s string) error {
	if s == "" {
		return fmt.Errorf("tsmreport: %s is missing or empty", field)
	}
	if len(s) > MaxNameLen {
		return fmt.Errorf("tsmreport: %s is %d bytes, limit %d", field, len(s), MaxNameLen)
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e {
			return fmt.Errorf("tsmreport: %s %q has byte 0x%02x at %d, want printable ASCII without spaces", field, s, s[i], i)
		}
	}
	return nil
}

// Parse decodes a configfs-tsm report in Veraison's JSON or CBOR form. It
// tells them apart by the first byte: a CBOR map (major type 5) is CBOR,
// '{' after optional whitespace is JSON; anything else is an error. The
// two cannot be confused: '{' and the JSON whitespace bytes are CBOR text
// strings and integers, not maps. One trailing newline of provider and
// service_provider (the kernel's attribute line end) is removed; any other
// control byte in them is an error.
func Parse(data []byte) (*Report, error) {
	if len(data) == 0 {
		return nil, fmt.Errorf("tsmreport: empty input")
	}
	if len(data) > MaxEncodedSize {
		return nil, fmt.Errorf("tsmreport: input is %d bytes, limit %d", len(data), MaxEncodedSize)
	}
	var (
		r   *Report
		err error
	)
	switch {
	case data[0]>>5 == 5:
		r, err = parseCBOR(data)
	case firstNonSpace(data) == '{':
		r, err = parseJSON(data)
	default:
		return nil, fmt.Errorf("tsmreport: input is neither JSON (first non-space byte is not '{') nor CBOR (first byte 0x%02x is not a map)", data[0])
	}
	if err != nil {
		return nil, err
	}
	r.Provider = lineEnd(r.Provider)
	r.ServiceProvider = lineEnd(r.ServiceProvider)
	if err := r.validate(); err != nil {
		return nil, err
	}
	return r, nil
}

// lineEnd removes the one newline that ends a configfs attribute read as
// text. The kernel emits provider and service_provider with
// sysfs_emit(buf, "%s\n", ...); go-configfs-tsm keeps the newline, and
// Veraison's ratsd copies the value into its evidence as read, so real
// tsm-report evidence says "sev_guest\n". Only that one byte is the line's
// end: a second newline, a CR or any other control byte stays in the name,
// where checkName refuses it.
func lineEnd(s string) string {
	return strings.TrimSuffix(s, "\n")
}

// firstNonSpace returns the first byte that is not JSON whitespace, or 0.
func firstNonSpace(b []byte) byte {
	for _, c := range b {
		switch c {
		case ' ', '\t', '\r', '\n':
		default:
			return c
		}
	}
	return 0
}
