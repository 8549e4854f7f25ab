package main

import (
	"flag"
	"fmt"
	"strconv"
	"strings"

	"github.com/cloister-dev/cloister/evidence"
	"github.com/cloister-dev/cloister/evidence/snp"
	"github.com/cloister-dev/cloister/policy"
)

// verifySNPHelp is the part of 'verify evidence --help' about the SEV-SNP
// policy flags.
const verifySNPHelp = `
SEV-SNP appraisal (policy.SNPPolicy): whenever a policy flag is given, SNP
evidence must come from VMPL 0, its guest policy must allow no migration
agent and its firmware must be committed (COMMITTED_TCB = CURRENT_TCB),
unless --snp-vmpl, --snp-allow-migration-agent or
--snp-allow-provisional-firmware say otherwise.
--snp-min-tcb and --snp-min-launch-tcb take "bootloader=N,tee=N,snp=N,microcode=N"
(any subset; also bl= and ucode=) or a Milan/Genoa TCB_VERSION in hex (0x...,
reserved bytes 2-5 zero), and compare each component on its own. A --snp-* requirement on SGX or TDX evidence fails.
`

// snpPolicyFlags are the SEV-SNP appraisal flags; any of them turns
// appraisal on, like the flags of policyFlags.
type snpPolicyFlags struct {
	minTCB, minLaunchTCB tcbFlag
	vmpl                 uintList
	allowMA, noSMT       bool
	allowProvisional     bool
	minGuestSVN          uint32Flag
	idKey, authorKey     hexList
	signer               string
}

// snpPolicyFlagNames are the flags that turn appraisal on.
var snpPolicyFlagNames = []string{
	"snp-min-tcb", "snp-min-launch-tcb", "snp-vmpl", "snp-allow-migration-agent", "snp-allow-provisional-firmware", "snp-require-no-smt",
	"snp-min-guest-svn", "snp-id-key-digest", "snp-author-key-digest", "snp-signer",
}

func (f *snpPolicyFlags) register(fs *flag.FlagSet) {
	fs.Var(&f.minTCB, "snp-min-tcb", "policy: lowest accepted SEV-SNP reported TCB `SPEC` (bootloader=N,tee=N,snp=N,microcode=N or 0xTCB_VERSION)")
	fs.Var(&f.minLaunchTCB, "snp-min-launch-tcb", "policy: lowest accepted SEV-SNP launch TCB `SPEC` (as --snp-min-tcb)")
	fs.Var(&f.vmpl, "snp-vmpl", "policy: accepted SEV-SNP VMPL `N` (0-3; repeatable or comma list; default 0)")
	fs.BoolVar(&f.allowMA, "snp-allow-migration-agent", false, "policy: accept an SEV-SNP guest policy that allows a migration agent")
	fs.BoolVar(&f.allowProvisional, "snp-allow-provisional-firmware", false, "policy: accept SEV-SNP firmware running above its committed TCB (COMMITTED_TCB below CURRENT_TCB)")
	fs.BoolVar(&f.noSMT, "snp-require-no-smt", false, "policy: require the SEV-SNP guest policy to disallow SMT")
	fs.Var(&f.minGuestSVN, "snp-min-guest-svn", "policy: lowest accepted SEV-SNP GUEST_SVN `N`")
	fs.Var(&f.idKey, "snp-id-key-digest", "policy: accepted SEV-SNP ID key digest (`HEX`, 48 bytes; repeatable, any-of)")
	fs.Var(&f.authorKey, "snp-author-key-digest", "policy: accepted SEV-SNP author key digest (`HEX`, 48 bytes; repeatable, any-of)")
	fs.StringVar(&f.signer, "snp-signer", "", "policy: required SEV-SNP signing key `KIND`: vcek or vlek (default either)")
}

// given reports whether any SNP policy flag appeared on the command line.
func (f *snpPolicyFlags) given(fs *flag.FlagSet) bool {
	seen := false
	fs.Visit(func(fl *flag.Flag) {
		for _, n := range snpPolicyFlagNames {
			if fl.Name == n {
				seen = true
			}
		}
	})
	return seen
}

// apply sets p.SNP from the flags; policy.Validate checks the values.
func (f *snpPolicyFlags) apply(p *policy.Policy) {
	p.SNP = policy.SNPPolicy{
		MinReportedTCB:           f.minTCB.v,
		MinLaunchTCB:             f.minLaunchTCB.v,
		VMPL:                     f.vmpl,
		AllowMigrationAgent:      f.allowMA,
		AllowProvisionalFirmware: f.allowProvisional,
		RequireNoSMT:             f.noSMT,
		MinGuestSVN:              f.minGuestSVN.v,
		IDKeyDigest:              f.idKey,
		AuthorKeyDigest:          f.authorKey,
		Signer:                   f.signer,
	}
}

// tcbFlag reads a minimum SEV-SNP TCB: component=level pairs, or a whole
// TCB_VERSION in hex as the report and AMD's KDS print it.
type tcbFlag struct {
	v evidence.SNPTCB
}

func (t *tcbFlag) String() string {
	if t == nil {
		return ""
	}
	return fmt.Sprintf("bootloader=%d,tee=%d,snp=%d,microcode=%d", t.v.BootLoader, t.v.TEE, t.v.SNP, t.v.Microcode)
}

func (t *tcbFlag) Set(s string) error {
	s = strings.TrimSpace(s)
	if h, ok := strings.CutPrefix(strings.ToLower(s), "0x"); ok {
		n, err := strconv.ParseUint(h, 16, 64)
		if err != nil {
			return fmt.Errorf("TCB_VERSION %q: want 16 hex digits at most: %w", s, err)
		}
		// Only the Milan/Genoa layout is read (bytes 0, 1, 6, 7); a value
		// with the reserved bytes set, such as a Turin TCB_VERSION, would
		// lose a level here and lower the minimum without a word.
		if n&0x0000ffffffff0000 != 0 {
			return fmt.Errorf("TCB_VERSION %q: reserved bytes 2-5 are not zero (not the Milan/Genoa layout)", s)
		}
		p := snp.SplitTCB(n)
		t.v = evidence.SNPTCB{BootLoader: p.BootLoader, TEE: p.TEE, SNP: p.SNP, Microcode: p.Microcode}
		return nil
	}
	var v evidence.SNPTCB
	seen := map[*uint8]bool{}
	for _, part := range strings.Split(s, ",") {
		k, val, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			return fmt.Errorf("%q: want component=level (bootloader, tee, snp, microcode) or 0xTCB_VERSION", part)
		}
		var dst *uint8
		switch strings.ToLower(strings.TrimSpace(k)) {
		case "bootloader", "bl":
			dst = &v.BootLoader
		case "tee":
			dst = &v.TEE
		case "snp":
			dst = &v.SNP
		case "microcode", "ucode":
			dst = &v.Microcode
		default:
			return fmt.Errorf("unknown TCB component %q: want bootloader, tee, snp or microcode", k)
		}
		if seen[dst] {
			return fmt.Errorf("TCB component %q given twice", k)
		}
		seen[dst] = true
		n, err := strconv.ParseUint(strings.TrimSpace(val), 10, 8)
		if err != nil {
			return fmt.Errorf("%s level %q: want 0..255: %w", k, val, err)
		}
		*dst = uint8(n)
	}
	t.v = v
	return nil
}

// uintList is a repeatable list of small unsigned integers (VMPLs); policy
// validation checks the range.
type uintList []uint32

func (u *uintList) String() string {
	if u == nil {
		return ""
	}
	s := make([]string, len(*u))
	for i, v := range *u {
		s[i] = strconv.FormatUint(uint64(v), 10)
	}
	return strings.Join(s, ",")
}

func (u *uintList) Set(v string) error {
	for _, part := range strings.Split(v, ",") {
		n, err := strconv.ParseUint(strings.TrimSpace(part), 10, 32)
		if err != nil {
			return fmt.Errorf("want a non-negative integer: %w", err)
		}
		*u = append(*u, uint32(n))
	}
	return nil
}

// uint32Flag is a uint32 flag.
type uint32Flag struct {
	v uint32
}

func (u *uint32Flag) String() string {
	if u == nil {
		return ""
	}
	return strconv.FormatUint(uint64(u.v), 10)
}

func (u *uint32Flag) Set(s string) error {
	n, err := strconv.ParseUint(s, 10, 32)
	if err != nil {
		return fmt.Errorf("want an integer 0..4294967295: %w", err)
	}
	u.v = uint32(n)
	return nil
}

// formatSNPTCB prints security patch levels for the text report.
func formatSNPTCB(t evidence.SNPTCB) string {
	return fmt.Sprintf("bootloader %d, tee %d, snp %d, microcode %d", t.BootLoader, t.TEE, t.SNP, t.Microcode)
}
