package policy

import (
	"fmt"
	"slices"
	"strings"

	"github.com/cloister-dev/cloister/evidence"
)

// Sizes of the SEV-SNP key digests a policy may name, in bytes.
const (
	SizeIDKeyDigest     = 48 // SHA-384 of the ID block's public key
	SizeAuthorKeyDigest = 48 // SHA-384 of the author key
)

// Guest policy bits that appraisal reads (SEV-SNP ABI specification,
// GUEST_POLICY). Debug (bit 19) reaches policy as Claims.Debug.
const (
	snpPolicySMT       = 1 << 16 // the guest may run with SMT enabled
	snpPolicyMigrateMA = 1 << 18 // a migration agent may be associated
)

// maxVMPL is the highest VMPL (0 is the most privileged of four).
const maxVMPL = 3

// Mismatch.Field names of the SNP checks: the claims' JSON names, with the
// guest policy bit after "policy.".
const (
	fieldSNPReportedTCB = "reported_tcb_spl"
	fieldSNPLaunchTCB   = "launch_tcb_spl"
	fieldSNPVMPL        = "vmpl"
	fieldSNPMigrationMA = "policy.migrate_ma"
	fieldSNPSMT         = "policy.smt"
	fieldSNPGuestSVN    = "guest_svn"
	fieldSNPIDKey       = "id_key_digest"
	fieldSNPAuthorKey   = "author_key_digest"
	fieldSNPSigner      = "snp_signer"
	fieldSNPCommitted   = "committed_tcb"
)

// SNPPolicy is what a relying party expects of an AMD SEV-SNP guest beyond
// its measurement. Its zero value is not "anything goes": for SNP evidence
// (sev-snp and sim-snp) it still requires VMPL 0, a guest policy that
// allows no migration agent and committed firmware (COMMITTED_TCB equal to
// CURRENT_TCB, go-sev-guest's default), the defaults a careful relying
// party would choose. Every other field is a requirement only when set; a set
// requirement on evidence of another TEE kind fails, as for Policy's own
// fields (AllowMigrationAgent and AllowProvisionalFirmware, relaxations, are
// then ignored).
type SNPPolicy struct {
	// MinReportedTCB is the lowest accepted security patch level of each
	// component of REPORTED_TCB (the TCB the VCEK is certified for), each
	// compared on its own. The zero value accepts any.
	MinReportedTCB evidence.SNPTCB
	// MinLaunchTCB is the same for LAUNCH_TCB, the TCB the guest was
	// launched at (which a migrated guest keeps).
	MinLaunchTCB evidence.SNPTCB
	// VMPL lists the accepted VMPLs the report was requested from (0-3).
	// Empty means only 0: a report from a less privileged level can come
	// from a component of the guest that does not control the others.
	VMPL []uint32
	// AllowMigrationAgent accepts a guest policy with MIGRATE_MA (bit 18)
	// set. By default it fails: a migration agent can move the guest and
	// its secrets to another host.
	AllowMigrationAgent bool
	// AllowProvisionalFirmware accepts firmware running above its committed
	// TCB (COMMITTED_TCB below CURRENT_TCB): a live update the host can
	// still roll back. By default the two must be equal, as in go-sev-guest's
	// validate; allowed, COMMITTED_TCB must still not exceed CURRENT_TCB in
	// any component.
	AllowProvisionalFirmware bool
	// RequireNoSMT requires guest policy bit 16 (SMT allowed) clear: the
	// guest refuses to run on a host with simultaneous multithreading.
	RequireNoSMT bool
	// MinGuestSVN is the lowest accepted GUEST_SVN; 0 accepts any.
	MinGuestSVN uint32
	// IDKeyDigest lists accepted ID_KEY_DIGEST values (48 bytes each,
	// any-of): the key that signed the guest's ID block.
	IDKeyDigest [][]byte
	// AuthorKeyDigest lists accepted AUTHOR_KEY_DIGEST values (48 bytes
	// each, any-of): the key that signed the ID key.
	AuthorKeyDigest [][]byte
	// Signer is "vcek" or "vlek" to require that kind of signing key
	// (evidence.SNPSigner*); empty accepts either.
	Signer string
}

// requires reports whether p sets any requirement beyond the defaults.
func (p SNPPolicy) requires() bool {
	return p.MinReportedTCB != (evidence.SNPTCB{}) || p.MinLaunchTCB != (evidence.SNPTCB{}) || len(p.VMPL) > 0 ||
		p.RequireNoSMT || p.MinGuestSVN > 0 || len(p.IDKeyDigest) > 0 || len(p.AuthorKeyDigest) > 0 || p.Signer != ""
}

// validate reports every malformed entry of p.
func (p SNPPolicy) validate() []error {
	var errs []error
	errs = append(errs, sizeErrors("id_key_digest", p.IDKeyDigest, SizeIDKeyDigest)...)
	errs = append(errs, sizeErrors("author_key_digest", p.AuthorKeyDigest, SizeAuthorKeyDigest)...)
	for i, v := range p.VMPL {
		if v > maxVMPL {
			errs = append(errs, fmt.Errorf("policy: invalid vmpl entry %d: %d, want 0 to %d", i, v, maxVMPL))
		}
	}
	switch p.Signer {
	case "", evidence.SNPSignerVCEK, evidence.SNPSignerVLEK:
	default:
		errs = append(errs, fmt.Errorf("policy: invalid snp_signer %q: want %q or %q", p.Signer, evidence.SNPSignerVCEK, evidence.SNPSignerVLEK))
	}
	return errs
}

// sizeErrors reports every entry of vals that is not size bytes long.
func sizeErrors(field string, vals [][]byte, size int) []error {
	var errs []error
	for i, v := range vals {
		if len(v) != size {
			got := fmt.Sprintf("%d bytes", len(v))
			if len(v) > 0 {
				got += " (" + hexOrEmpty(v) + ")"
			}
			errs = append(errs, fmt.Errorf("policy: invalid %s entry %d: %s, want %d bytes", field, i, got, size))
		}
	}
	return errs
}

// appraiseSNP returns one Mismatch per failed SNP check, in the order of
// SNPPolicy's fields. Field presence follows the claims' parts, so sim-snp
// is appraised exactly like sev-snp.
func appraiseSNP(c *evidence.Claims, p SNPPolicy) []*Mismatch {
	s := c.SNPClaims
	if s == nil {
		if !p.requires() {
			return nil
		}
		return []*Mismatch{{Field: "snp", Got: fmt.Sprintf("nothing (tee %q evidence is not an SEV-SNP report)", c.TEE), Want: "SEV-SNP evidence (the policy sets SEV-SNP requirements)"}}
	}
	var out []*Mismatch
	add := func(m *Mismatch) {
		if m != nil {
			out = append(out, m)
		}
	}
	add(minTCB(fieldSNPReportedTCB, s.ReportedSPL, p.MinReportedTCB))
	add(minTCB(fieldSNPLaunchTCB, s.LaunchSPL, p.MinLaunchTCB))

	vmpls, why := p.VMPL, ""
	if len(vmpls) == 0 {
		vmpls, why = []uint32{0}, " (default: the report must come from the most privileged level)"
	}
	if !slices.Contains(vmpls, s.VMPL) {
		add(&Mismatch{Field: fieldSNPVMPL, Got: fmt.Sprint(s.VMPL), Want: "one of " + fmt.Sprint(vmpls) + why})
	}
	if s.Policy&snpPolicyMigrateMA != 0 && !p.AllowMigrationAgent {
		add(&Mismatch{Field: fieldSNPMigrationMA, Got: fmt.Sprintf("set (policy %#x)", s.Policy), Want: "clear (no migration agent; default)"})
	}
	if s.CommittedTCB != s.CurrentTCB {
		if !p.AllowProvisionalFirmware {
			add(&Mismatch{Field: fieldSNPCommitted, Got: fmt.Sprintf("%#016x, current_tcb %#016x (provisional firmware)", s.CommittedTCB, s.CurrentTCB), Want: "equal to current_tcb (committed firmware; default)"})
		} else if !tcbLE(s.CommittedTCB, s.CurrentTCB) {
			add(&Mismatch{Field: fieldSNPCommitted, Got: fmt.Sprintf("%#016x, current_tcb %#016x", s.CommittedTCB, s.CurrentTCB), Want: "no component above current_tcb's"})
		}
	}
	if p.RequireNoSMT && s.Policy&snpPolicySMT != 0 {
		add(&Mismatch{Field: fieldSNPSMT, Got: fmt.Sprintf("set (policy %#x: SMT allowed)", s.Policy), Want: "clear (SMT not allowed)"})
	}
	if s.GuestSVN < p.MinGuestSVN {
		add(&Mismatch{Field: fieldSNPGuestSVN, Got: fmt.Sprint(s.GuestSVN), Want: fmt.Sprintf(">= %d", p.MinGuestSVN)})
	}
	if len(p.IDKeyDigest) > 0 {
		add(anyOf(fieldSNPIDKey, s.IDKeyDigest, p.IDKeyDigest))
	}
	if len(p.AuthorKeyDigest) > 0 {
		add(anyOf(fieldSNPAuthorKey, s.AuthorKeyDigest, p.AuthorKeyDigest))
	}
	if p.Signer != "" && s.Signer != p.Signer {
		add(&Mismatch{Field: fieldSNPSigner, Got: quoteOrEmpty(s.Signer), Want: p.Signer})
	}
	return out
}

// minTCB compares each security patch level on its own, as AMD's KDS
// certifies them: a TCB is at least another only if every component is.
func minTCB(field string, got, want evidence.SNPTCB) *Mismatch {
	var low []string
	check := func(name string, g, w uint8) {
		if g < w {
			low = append(low, fmt.Sprintf("%s %d < %d", name, g, w))
		}
	}
	check("bootloader", got.BootLoader, want.BootLoader)
	check("tee", got.TEE, want.TEE)
	check("snp", got.SNP, want.SNP)
	check("microcode", got.Microcode, want.Microcode)
	if len(low) == 0 {
		return nil
	}
	return &Mismatch{Field: field, Got: formatTCB(got) + " (" + strings.Join(low, ", ") + ")", Want: ">= " + formatTCB(want)}
}

// formatTCB prints the levels in AMD KDS parameter order.
func formatTCB(t evidence.SNPTCB) string {
	return fmt.Sprintf("bootloader=%d tee=%d snp=%d microcode=%d", t.BootLoader, t.TEE, t.SNP, t.Microcode)
}

// tcbLE reports whether no byte of TCB_VERSION a exceeds the same byte of
// b: every security patch level (and reserved byte) compared on its own,
// whatever the product's layout.
func tcbLE(a, b uint64) bool {
	for i := 0; i < 64; i += 8 {
		if uint8(a>>i) > uint8(b>>i) {
			return false
		}
	}
	return true
}
