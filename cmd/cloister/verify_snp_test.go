package main

import (
	"slices"
	"strings"
	"testing"
)

// The SEV-SNP policy flags, on the real Veraison Genoa evidence
// (testdata/README.md: VMPL 0, policy 0x30000, VCEK, TCB boot loader 10,
// TEE 0, SNP 23, microcode 84, guest SVN 0, no ID block).
func TestVerifySNPPolicyFlags(t *testing.T) {
	const (
		evidenceFile = "../../testdata/snp/veraison-sevsnp-tsm-report.json"
		measure      = "7699e6ac12ccdfd1dfac70e649ce1f046cb2afbb003438f4cdddfe2ccbe182fa5ffbe8dcdb930454324e10c52c788980"
		zero48       = "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
	)
	base := []string{"verify", "evidence", evidenceFile, "--at", "2026-01-01T00:00:00Z"}
	r := runCLI(t, base...)
	if r.code != 0 {
		t.Fatalf("no policy: exit %d\n%s", r.code, r)
	}
	m := decodeClaims(t, r)
	if m["tee"] != "sev-snp" || m["snp_signer"] != "vcek" || m["measurement"] != measure {
		t.Errorf("claims tee %v snp_signer %v measurement %v", m["tee"], m["snp_signer"], m["measurement"])
	}
	spl, _ := m["reported_tcb_spl"].(map[string]any)
	if spl["bootloader"] != 10.0 || spl["tee"] != 0.0 || spl["snp"] != 23.0 || spl["microcode"] != 84.0 || m["launch_tcb_spl"] == nil ||
		m["current_tcb"] != float64(0x541700000000000a) || m["committed_tcb"] != float64(0x541700000000000a) {
		t.Errorf("reported_tcb_spl %v launch_tcb_spl %v current_tcb %v committed_tcb %v", m["reported_tcb_spl"], m["launch_tcb_spl"], m["current_tcb"], m["committed_tcb"])
	}
	for _, tc := range []struct {
		flags []string
		code  int
		want  string // in stderr
	}{
		{[]string{"--measurement", measure}, 0, ""},
		{[]string{"--snp-min-tcb", "bootloader=10,tee=0,snp=23,microcode=84", "--snp-min-launch-tcb", "snp=23"}, 0, ""},
		{[]string{"--snp-min-tcb", "0x541700000000000a"}, 0, ""},
		{[]string{"--snp-min-tcb", "snp=24"}, 1, "policy: reported_tcb_spl: got bootloader=10 tee=0 snp=23 microcode=84 (snp 23 < 24)"},
		{[]string{"--snp-min-tcb", "ucode=85"}, 1, "microcode 84 < 85"},
		{[]string{"--snp-min-launch-tcb", "bl=11"}, 1, "policy: launch_tcb_spl"},
		{[]string{"--snp-vmpl", "0,1"}, 0, ""},
		{[]string{"--snp-vmpl", "2"}, 1, "policy: vmpl: got 0, want one of [2]"},
		{[]string{"--snp-require-no-smt"}, 1, "policy: policy.smt"},
		{[]string{"--snp-allow-migration-agent"}, 0, ""},
		{[]string{"--snp-allow-provisional-firmware"}, 0, ""},
		{[]string{"--snp-min-guest-svn", "0"}, 0, ""},
		{[]string{"--snp-min-guest-svn", "1"}, 1, "policy: guest_svn: got 0, want >= 1"},
		{[]string{"--snp-id-key-digest", zero48, "--snp-author-key-digest", zero48}, 0, ""},
		{[]string{"--snp-id-key-digest", strings.Repeat("ab", 48)}, 1, "policy: id_key_digest"},
		{[]string{"--snp-signer", "vcek"}, 0, ""},
		{[]string{"--snp-signer", "vlek"}, 1, "policy: snp_signer: got vcek, want vlek"},
		// Usage errors.
		{[]string{"--snp-signer", "ask"}, 2, "snp_signer"},
		{[]string{"--snp-vmpl", "4"}, 2, "vmpl"},
		{[]string{"--snp-min-tcb", "fmc=1"}, 2, "flag -snp-min-tcb"},
		{[]string{"--snp-min-tcb", "snp=256"}, 2, "flag -snp-min-tcb"},
		{[]string{"--snp-min-tcb", "snp"}, 2, "flag -snp-min-tcb"},
		{[]string{"--snp-min-tcb", "snp=1,snp=2"}, 2, "flag -snp-min-tcb"},
		// Bytes 2-5 are reserved in the Milan/Genoa layout: a value with
		// them set (a Turin TCB_VERSION, SNP level in byte 3) would lose a
		// level silently, so it is refused.
		{[]string{"--snp-min-tcb", "0x0000000017000a00"}, 2, "reserved"},
		{[]string{"--snp-min-launch-tcb", "0x5417000000010000"}, 2, "reserved"},
		{[]string{"--snp-id-key-digest", "abcd"}, 2, "id_key_digest entry 0: 2 bytes"},
		{[]string{"--snp-min-guest-svn", "-1"}, 2, "flag -snp-min-guest-svn"},
	} {
		// Every case names the vector's measurement: a policy needs an identity.
		r := runCLI(t, append(append(slices.Clone(base), "--measurement", measure), tc.flags...)...)
		if r.code != tc.code || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("%v: exit %d, want %d with %q\n%s", tc.flags, r.code, tc.code, tc.want, r)
		}
	}
}

// SNP requirements on other evidence fail; the defaults do not apply.
func TestVerifySNPFlagsOnTDX(t *testing.T) {
	r := runCLI(t, "verify", "evidence", tdxQuote, "--collateral", tdxCollateral, "--any-identity", "--snp-vmpl", "0")
	if r.code != 1 || !strings.Contains(r.stderr, "policy: snp: got nothing") {
		t.Errorf("SNP flag on TDX evidence: want exit 1 naming snp\n%s", r)
	}
}

// FuzzTCBFlag: --snp-min-tcb never panics, and what it accepts prints as a
// spelling it reads back to the same levels.
func FuzzTCBFlag(f *testing.F) {
	for _, s := range []string{"bootloader=10,tee=0,snp=23,microcode=84", "0x541700000000000a", "snp=24", "bl=1,ucode=2", "fmc=1", "snp=256", "snp=1,snp=2", "", "=", ",", "0x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		var a tcbFlag
		if err := a.Set(s); err != nil {
			return
		}
		var b tcbFlag
		if err := b.Set(a.String()); err != nil || b.v != a.v {
			t.Fatalf("%q read as %+v prints %q, which reads as %+v (%v)", s, a.v, a.String(), b.v, err)
		}
	})
}
