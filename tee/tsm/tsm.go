// Package tsm is the tee.Platform for confidential VMs that attest through
// Linux configfs-tsm (/sys/kernel/config/tsm/report): Intel TDX (provider
// "tdx_guest") and AMD SEV-SNP (provider "sev_guest").
//
// Evidence is one configfs-tsm report in Veraison's tsm-report JSON form
// (package evidence/tsmreport): the provider name, the outblob (a TDX quote
// or an SNP attestation report) and, on SEV-SNP, the auxblob (the host's
// certificate table, normally carrying the VCEK), which evidence.Verify
// reads. Every report is taken from a fresh configfs entry through
// go-configfs-tsm's report package, which counts the writes it makes and
// re-reads the entry's generation after every read: if anyone else wrote
// to the entry in between, the read fails with *report.GenerationErr
// rather than hand back a report made for someone else's report data.
// This package then checks, in addition, that the report's REPORT_DATA is
// exactly what was asked for.
//
// Sealing keys: TDX has no hardware sealing key, so SealKey fails with
// tee.ErrSealNotSupported there (a TD gets one from the key broker: enclave.Env.BrokerSealer). On SEV-SNP, SealKey
// asks the AMD secure processor for a derived key (MSG_KEY_REQ through
// /dev/sev-guest); see SealKey for the fields it binds and why signer
// policy is refused.
package tsm

import (
	"context"
	"fmt"
	"strings"

	"github.com/cloister-dev/cloister/evidence/tsmreport"
	"github.com/cloister-dev/cloister/tee"
	"github.com/google/go-configfs-tsm/configfs/configfsi"
	"github.com/google/go-configfs-tsm/configfs/linuxtsm"
	"github.com/google/go-configfs-tsm/report"
	"github.com/google/go-sev-guest/client"
)

// privlevelMax is the highest privlevel configfs-tsm accepts
// (TSM_PRIVLEVEL_MAX in include/linux/tsm.h); on SEV-SNP it is the VMPL.
const privlevelMax = 3

// Config says where reports and derived keys come from. The zero Config is
// the real machine.
type Config struct {
	// Client is the configfs client reports are made through; nil means
	// the kernel's /sys/kernel/config/tsm (go-configfs-tsm's linuxtsm).
	// Tests pass go-configfs-tsm's faketsm.
	Client configfsi.Client
	// Privlevel, when set, is written to each report's privlevel (0 to 3;
	// the VMPL the report is requested at on SEV-SNP). nil leaves the
	// kernel's default.
	Privlevel *uint
	// SEVGuest is the SEV guest device SealKey sends MSG_KEY_REQ to on
	// SEV-SNP. nil means /dev/sev-guest, opened for each SealKey call and
	// closed after it, so an idle Platform holds no descriptor. A device
	// given here is used as is and never closed by this package.
	SEVGuest client.Device
}

// validate checks cfg once, at Open.
func (cfg Config) validate() error {
	if cfg.Privlevel != nil && *cfg.Privlevel > privlevelMax {
		return fmt.Errorf("tsm: config: privlevel %d is out of range 0..%d", *cfg.Privlevel, privlevelMax)
	}
	return nil
}

// Platform is a configfs-tsm confidential VM. It is safe for concurrent
// use: every Evidence call works in its own configfs entry, and SealKey
// serialises use of the SEV guest device.
type Platform struct {
	client    configfsi.Client
	privilege *report.Privilege
	provider  string
	kind      tee.Kind
	// id is computed once at Open and never modified; Identity returns
	// copies so callers cannot change it.
	id tee.Identity
	// vmpl is the VMPL of the identity report (SEV-SNP): derived keys are
	// requested at it so they match the level the guest reports.
	vmpl uint32
	// snp guards the SEV guest device; nil on TDX.
	snp *snpKeys
}

var _ tee.Platform = (*Platform)(nil)

// Open finds the configfs-tsm provider, checks that it is one Cloister
// supports ("tdx_guest" → tee.KindTDX, "sev_guest" → tee.KindSNP), and
// takes one report with all-zero report data to learn the running
// identity. The identity is read from that report unverified: it is this
// guest describing itself to itself, not evidence for anyone else.
func Open(ctx context.Context, cfg Config) (tee.Platform, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("tsm: open: %w", err)
	}
	c := cfg.Client
	if c == nil {
		lc, err := linuxtsm.MakeClient()
		if err != nil {
			return nil, fmt.Errorf("tsm: configfs-tsm is not available at %s/report (needs Linux 6.7+ in a TDX or SEV-SNP guest, configfs mounted): %w", configfsi.TsmPrefix, err)
		}
		c = lc
	}
	p := &Platform{client: c}
	if cfg.Privlevel != nil {
		p.privilege = &report.Privilege{Level: *cfg.Privlevel}
	}
	// The identity report is taken without the auxblob because the
	// provider is not known yet and the kernel hides that attribute on
	// tdx_guest; the response names the provider.
	var zero [64]byte
	resp, err := p.get(zero[:], false)
	if err != nil {
		return nil, fmt.Errorf("tsm: open: identity report: %w", err)
	}
	p.provider = strings.TrimSpace(resp.Provider)
	switch p.provider {
	case tsmreport.ProviderTDX:
		p.kind = tee.KindTDX
	case tsmreport.ProviderSNP:
		p.kind = tee.KindSNP
		p.snp = &snpKeys{dev: cfg.SEVGuest}
	default:
		return nil, fmt.Errorf("tsm: configfs-tsm provider %q is not supported: Cloister runs on %q (TDX) and %q (SEV-SNP)",
			p.provider, tsmreport.ProviderTDX, tsmreport.ProviderSNP)
	}
	parsed, err := parseOutBlob(p.kind, resp.OutBlob, zero[:])
	if err != nil {
		return nil, fmt.Errorf("tsm: open: identity report: %w", err)
	}
	p.id = parsed.id
	p.vmpl = parsed.vmpl
	return p, nil
}

// get takes one report for inblob through report.Get, which creates an
// entry, writes inblob (and privlevel), reads the blobs with the
// generation check described in the package comment, and removes the
// entry. It also checks the provider did not change under us.
func (p *Platform) get(inblob []byte, aux bool) (*report.Response, error) {
	resp, err := report.Get(p.client, &report.Request{
		InBlob:     inblob,
		Privilege:  p.privilege,
		GetAuxBlob: aux,
	})
	if err != nil {
		if report.GetGenerationErr(err) != nil {
			return nil, fmt.Errorf("another writer changed the report entry while it was read (generation mismatch); the report was discarded: %w", err)
		}
		return nil, fmt.Errorf("configfs-tsm report: %w", err)
	}
	// p.provider is empty only for Open's identity report, which is how
	// the provider is learnt.
	if got := strings.TrimSpace(resp.Provider); p.provider != "" && got != p.provider {
		return nil, fmt.Errorf("report provider is %q, was %q at open", got, p.provider)
	}
	if len(resp.OutBlob) == 0 {
		return nil, fmt.Errorf("provider %q returned an empty outblob", resp.Provider)
	}
	return resp, nil
}

// Kind is tee.KindTDX or tee.KindSNP, from the configfs-tsm provider.
func (p *Platform) Kind() tee.Kind { return p.kind }

// Identity returns the identity read at Open: MRTD and the TD DEBUG
// attribute on TDX; MEASUREMENT, AUTHOR_KEY_DIGEST (when non-zero), GUEST_SVN
// and policy bit 19 (DEBUG) on SEV-SNP.
func (p *Platform) Identity() tee.Identity {
	id := p.id
	id.Measurement = cloneOrNil(id.Measurement)
	id.Signer = cloneOrNil(id.Signer)
	return id
}

// Evidence takes a configfs-tsm report binding reportData (written as the
// 64-byte inblob) and returns it in Veraison's tsm-report JSON form. On
// SEV-SNP the auxblob (certificate table) is included so the report can
// be verified without a network fetch of the VCEK. The report's
// REPORT_DATA is checked to equal reportData before anything is returned.
func (p *Platform) Evidence(ctx context.Context, reportData [64]byte) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("tsm: evidence: %w", err)
	}
	resp, err := p.get(reportData[:], p.kind == tee.KindSNP)
	if err != nil {
		return nil, fmt.Errorf("tsm: evidence: %w", err)
	}
	if _, err := parseOutBlob(p.kind, resp.OutBlob, reportData[:]); err != nil {
		return nil, fmt.Errorf("tsm: evidence: %w", err)
	}
	out, err := (&tsmreport.Report{
		Provider: p.provider,
		OutBlob:  resp.OutBlob,
		AuxBlob:  resp.AuxBlob,
	}).EncodeJSON()
	if err != nil {
		return nil, fmt.Errorf("tsm: evidence: %w", err)
	}
	return out, nil
}

// cloneOrNil copies b, keeping nil as nil.
func cloneOrNil(b []byte) []byte {
	if b == nil {
		return nil
	}
	return append([]byte(nil), b...)
}
