package policy

import (
	"slices"
	"strings"
	"testing"

	"github.com/cloister-dev/cloister/evidence"
)

// Guest policy bits (SEV-SNP ABI, GUEST_POLICY).
const (
	polSMT      = 1 << 16
	polReserved = 1 << 17
	polMA       = 1 << 18
	polDebug    = 1 << 19
)

// snpGuest is an SNP guest's claims as the Veraison Genoa vector has them:
// VMPL 0, policy SMT + reserved bit, no migration agent, VCEK-signed, TCB
// boot loader 10, TEE 0, SNP 23, microcode 84.
func snpGuest(edit func(c *evidence.Claims)) *evidence.Claims {
	tcb := evidence.SNPTCB{BootLoader: 10, TEE: 0, SNP: 23, Microcode: 84}
	c := &evidence.Claims{
		TEE: evidence.TEESNP, TCBStatus: evidence.StatusNotEvaluated,
		SNPClaims: &evidence.SNPClaims{
			Measurement: snpMeasure, Policy: polSMT | polReserved, VMPL: 0, GuestSVN: 3,
			IDKeyDigest: make([]byte, 48), AuthorKeyDigest: make([]byte, 48),
			ReportedTCB: 0x541700000000000a, ReportedSPL: tcb, LaunchTCB: 0x541700000000000a, LaunchSPL: tcb,
			CurrentTCB: 0x541700000000000a, CommittedTCB: 0x541700000000000a,
			Signer: evidence.SNPSignerVCEK,
		},
	}
	if edit != nil {
		edit(c)
	}
	return c
}

// TestAppraiseSNPDefaults: with no SNP requirement at all, a careful
// relying party's defaults still apply to SNP evidence: the report must
// come from VMPL 0 (the most privileged level, not a lower-privileged
// component of the guest) and the guest must not allow a migration agent
// (which could move it, keys and all, to another host).
func TestAppraiseSNPDefaults(t *testing.T) {
	for name, tc := range map[string]struct {
		c    *evidence.Claims
		want []string
	}{
		"vmpl 0, no MA":   {snpGuest(nil), nil},
		"vmpl 2":          {snpGuest(func(c *evidence.Claims) { c.VMPL = 2 }), []string{"vmpl"}},
		"migration agent": {snpGuest(func(c *evidence.Claims) { c.Policy |= polMA }), []string{"policy.migrate_ma"}},
		"both":            {snpGuest(func(c *evidence.Claims) { c.VMPL = 1; c.Policy |= polMA }), []string{"vmpl", "policy.migrate_ma"}},
		"sim-snp too":     {snpGuest(func(c *evidence.Claims) { c.TEE = evidence.TEESimSNP; c.VMPL = 3 }), []string{"vmpl"}},
	} {
		t.Run(name, func(t *testing.T) {
			got := mismatchFields(t, Appraise(tc.c, Policy{Measurement: [][]byte{snpMeasure}}))
			if !slices.Equal(got, tc.want) {
				t.Fatalf("failed fields %v, want %v", got, tc.want)
			}
		})
	}
}

func TestAppraiseSNPPolicy(t *testing.T) {
	digest := func(b byte) []byte {
		d := make([]byte, 48)
		d[0] = b
		return d
	}
	withKeys := func(c *evidence.Claims) { c.IDKeyDigest = digest(1); c.AuthorKeyDigest = digest(2) }
	tests := []struct {
		name   string
		claims *evidence.Claims
		policy SNPPolicy
		want   []string
	}{
		{"zero policy", snpGuest(nil), SNPPolicy{}, nil},
		{"reported TCB at the minimum", snpGuest(nil), SNPPolicy{MinReportedTCB: evidence.SNPTCB{BootLoader: 10, TEE: 0, SNP: 23, Microcode: 84}}, nil},
		{"reported microcode too low", snpGuest(nil), SNPPolicy{MinReportedTCB: evidence.SNPTCB{Microcode: 85}}, []string{"reported_tcb_spl"}},
		{"reported boot loader too low", snpGuest(nil), SNPPolicy{MinReportedTCB: evidence.SNPTCB{BootLoader: 11}}, []string{"reported_tcb_spl"}},
		{"reported TEE too low", snpGuest(nil), SNPPolicy{MinReportedTCB: evidence.SNPTCB{TEE: 1}}, []string{"reported_tcb_spl"}},
		{"reported SNP too low", snpGuest(nil), SNPPolicy{MinReportedTCB: evidence.SNPTCB{SNP: 24}}, []string{"reported_tcb_spl"}},
		// Components are compared one by one: a higher microcode does not
		// make up for a lower SNP firmware.
		{"no trading between components", snpGuest(nil), SNPPolicy{MinReportedTCB: evidence.SNPTCB{BootLoader: 9, SNP: 24, Microcode: 1}}, []string{"reported_tcb_spl"}},
		{"launch TCB too low", snpGuest(func(c *evidence.Claims) { c.LaunchSPL.SNP = 20 }), SNPPolicy{MinLaunchTCB: evidence.SNPTCB{SNP: 23}}, []string{"launch_tcb_spl"}},
		{"launch TCB checked apart from reported", snpGuest(func(c *evidence.Claims) { c.LaunchSPL.SNP = 20 }), SNPPolicy{MinReportedTCB: evidence.SNPTCB{SNP: 23}}, nil},
		{"vmpl listed", snpGuest(func(c *evidence.Claims) { c.VMPL = 2 }), SNPPolicy{VMPL: []uint32{2, 3}}, nil},
		{"vmpl list replaces the default", snpGuest(nil), SNPPolicy{VMPL: []uint32{2}}, []string{"vmpl"}},
		{"migration agent allowed", snpGuest(func(c *evidence.Claims) { c.Policy |= polMA }), SNPPolicy{AllowMigrationAgent: true}, nil},
		{"SMT allowed by the guest", snpGuest(nil), SNPPolicy{RequireNoSMT: true}, []string{"policy.smt"}},
		{"SMT refused by the guest", snpGuest(func(c *evidence.Claims) { c.Policy &^= polSMT }), SNPPolicy{RequireNoSMT: true}, nil},
		{"guest svn at minimum", snpGuest(nil), SNPPolicy{MinGuestSVN: 3}, nil},
		{"guest svn too low", snpGuest(nil), SNPPolicy{MinGuestSVN: 4}, []string{"guest_svn"}},
		{"id key match", snpGuest(withKeys), SNPPolicy{IDKeyDigest: [][]byte{digest(9), digest(1)}}, nil},
		{"id key mismatch", snpGuest(withKeys), SNPPolicy{IDKeyDigest: [][]byte{digest(9)}}, []string{"id_key_digest"}},
		{"no ID block, id key required", snpGuest(nil), SNPPolicy{IDKeyDigest: [][]byte{digest(1)}}, []string{"id_key_digest"}},
		{"author key match", snpGuest(withKeys), SNPPolicy{AuthorKeyDigest: [][]byte{digest(2)}}, nil},
		{"author key mismatch", snpGuest(withKeys), SNPPolicy{AuthorKeyDigest: [][]byte{digest(1)}}, []string{"author_key_digest"}},
		{"signer vcek", snpGuest(nil), SNPPolicy{Signer: "vcek"}, nil},
		{"signer vlek wanted", snpGuest(nil), SNPPolicy{Signer: "vlek"}, []string{"snp_signer"}},
		{"signer vlek", snpGuest(func(c *evidence.Claims) { c.Signer = "vlek" }), SNPPolicy{Signer: "vlek"}, nil},
		{"every SNP failure at once", snpGuest(func(c *evidence.Claims) { c.VMPL = 1; c.Policy |= polMA }), SNPPolicy{
			MinReportedTCB: evidence.SNPTCB{SNP: 99}, MinLaunchTCB: evidence.SNPTCB{SNP: 99}, RequireNoSMT: true,
			MinGuestSVN: 9, IDKeyDigest: [][]byte{digest(1)}, AuthorKeyDigest: [][]byte{digest(2)}, Signer: "vlek",
		}, []string{"reported_tcb_spl", "launch_tcb_spl", "vmpl", "policy.migrate_ma", "policy.smt", "guest_svn", "id_key_digest", "author_key_digest", "snp_signer"}},

		// Requirements on evidence of another kind fail; the defaults and
		// the relaxation alone do not.
		{"sgx, zero SNP policy", sgxClaims("UpToDate", false, 0), SNPPolicy{}, nil},
		{"sgx, migration agent allowed", sgxClaims("UpToDate", false, 0), SNPPolicy{AllowMigrationAgent: true}, nil},
		{"tdx, provisional firmware allowed", tdxClaims("UpToDate"), SNPPolicy{AllowProvisionalFirmware: true}, nil},
		{"sgx, SNP TCB required", sgxClaims("UpToDate", false, 0), SNPPolicy{MinReportedTCB: evidence.SNPTCB{SNP: 1}}, []string{"snp"}},
		{"tdx, vmpl listed", tdxClaims("UpToDate"), SNPPolicy{VMPL: []uint32{0}}, []string{"snp"}},
		{"tdx, signer", tdxClaims("UpToDate"), SNPPolicy{Signer: "vcek"}, []string{"snp"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := mismatchFields(t, Appraise(tc.claims, Policy{SNP: tc.policy}))
			if !slices.Equal(got, tc.want) {
				t.Fatalf("failed fields %v, want %v", got, tc.want)
			}
		})
	}
}

func TestAppraiseSNPMessages(t *testing.T) {
	err := Appraise(snpGuest(func(c *evidence.Claims) { c.VMPL = 2 }), Policy{SNP: SNPPolicy{MinReportedTCB: evidence.SNPTCB{SNP: 24, Microcode: 90}}})
	for _, want := range []string{
		"policy: reported_tcb_spl: got bootloader=10 tee=0 snp=23 microcode=84 (snp 23 < 24, microcode 84 < 90), want >= bootloader=0 tee=0 snp=24 microcode=90",
		"policy: vmpl: got 2, want one of [0] (default",
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v does not contain %q", err, want)
		}
	}
}

func TestValidateSNP(t *testing.T) {
	for name, tc := range map[string]struct {
		p    SNPPolicy
		want string
	}{
		"short id key":     {SNPPolicy{IDKeyDigest: [][]byte{make([]byte, 32)}}, "id_key_digest entry 0: 32 bytes"},
		"empty author key": {SNPPolicy{AuthorKeyDigest: [][]byte{nil}}, "author_key_digest entry 0: 0 bytes, want 48"},
		"vmpl 4":           {SNPPolicy{VMPL: []uint32{0, 4}}, "vmpl entry 1: 4, want 0 to 3"},
		"signer typo":      {SNPPolicy{Signer: "VCEK"}, `snp_signer "VCEK"`},
	} {
		t.Run(name, func(t *testing.T) {
			p := Policy{SNP: tc.p}
			err := p.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate() = %v, want %q", err, tc.want)
			}
			if Appraise(snpGuest(nil), p) == nil {
				t.Error("Appraise passed with a malformed policy")
			}
		})
	}
	good := Policy{SNP: SNPPolicy{IDKeyDigest: [][]byte{make([]byte, 48)}, VMPL: []uint32{0, 1, 2, 3}, Signer: "vlek"}}
	if err := good.Validate(); err != nil {
		t.Errorf("Validate(good) = %v", err)
	}
}

// TestAppraiseSNPProvisionalFirmware follows go-sev-guest's validate
// default: firmware running above the committed level (COMMITTED_TCB !=
// CURRENT_TCB, a provisional update the host can still roll back) fails
// unless AllowProvisionalFirmware; even then the committed TCB must not
// exceed the current one in any component.
func TestAppraiseSNPProvisionalFirmware(t *testing.T) {
	const tcb = 0x541700000000000a
	for name, tc := range map[string]struct {
		current, committed uint64
		allow              bool
		want               []string
	}{
		"committed = current":           {tcb, tcb, false, nil},
		"provisional":                   {tcb + 1<<56, tcb, false, []string{"committed_tcb"}},
		"provisional allowed":           {tcb + 1<<56, tcb, true, nil},
		"committed above, allowed":      {tcb, tcb + 1<<48, true, []string{"committed_tcb"}},
		"committed above in one, mixed": {tcb + 1<<56, tcb + 1<<48, true, []string{"committed_tcb"}},
	} {
		t.Run(name, func(t *testing.T) {
			c := snpGuest(func(c *evidence.Claims) { c.CurrentTCB, c.CommittedTCB = tc.current, tc.committed })
			got := mismatchFields(t, Appraise(c, Policy{SNP: SNPPolicy{AllowProvisionalFirmware: tc.allow}}))
			if !slices.Equal(got, tc.want) {
				t.Fatalf("failed fields %v, want %v", got, tc.want)
			}
		})
	}
}
