package main

import (
	"fmt"
	"strings"
	"testing"
)

// 'policy test' judges claim numbers exactly, in both languages. The real
// Milan report's reported_tcb is 0x4405000000000002; as a float64 it equals
// 0x4405000000000001 and ...03 (the bootloader SVN is lost), so a bound one
// above or below it must still decide. The 'verify evidence' output of the
// same report gives the MAA names, whose SVNs a policy must see as the
// report holds them.
func TestPolicyTestExactSNPNumbers(t *testing.T) {
	r := runCLI(t, "verify", "evidence", "../../testdata/snp/attestation.bin", "--vcek", "../../testdata/snp/vcek.testcer",
		"--at", "2025-07-01T00:00:00Z", "--any-identity", "--allow-debug")
	if r.code != 0 {
		t.Fatal(r)
	}
	if !strings.Contains(r.stdout, `"reported_tcb": 4901323769462652930`) {
		t.Fatalf("'verify evidence' does not print reported_tcb 0x4405000000000002 exactly:\n%s", r.stdout)
	}
	evidenceClaims := writeTemp(t, "evidence.json", r.stdout)
	svn := writeTemp(t, "svn.rego", `package cloister
allow if {
	input["x-ms-sevsnpvm-bootloader-svn"] == 2
	input["x-ms-sevsnpvm-microcode-svn"] == 68
	input["x-ms-sevsnpvm-snpfw-svn"] == 5
}
`)
	if r := runCLI(t, "policy", "test", svn, "--claims", evidenceClaims); r.code != 0 {
		t.Errorf("rego over the report's SVNs: %s", r)
	}
	svnMAA := writeTemp(t, "svn.policy", `version=1.0;
authorizationrules { [type=="x-ms-sevsnpvm-bootloader-svn", value==2] && [type=="x-ms-sevsnpvm-microcode-svn", value==68] => permit(); };`)
	if r := runCLI(t, "policy", "test", svnMAA, "--claims", evidenceClaims); r.code != 0 {
		t.Errorf("MAA over the report's SVNs: %s", r)
	}

	const tcb = uint64(0x4405000000000002)
	for _, tc := range []struct {
		got  uint64
		want int // exit code with the bound reported_tcb >= tcb
	}{
		{tcb, 0},
		{tcb + 1, 0},
		{tcb - 1, 1}, // a lower bootloader SVN: must be denied
	} {
		claims := writeTemp(t, "c.json", fmt.Sprintf(`{"reported_tcb": %d}`, tc.got))
		rego := writeTemp(t, "p.rego", fmt.Sprintf("package cloister\nallow if input.reported_tcb >= %d\nclaims := {\"tcb\": input.reported_tcb} if allow\n", tcb))
		r := runCLI(t, "policy", "test", rego, "--claims", claims)
		if r.code != tc.want {
			t.Errorf("rego: reported_tcb %#x >= %#x: exit %d, want %d\n%s", tc.got, tcb, r.code, tc.want, r)
		}
		if tc.want == 0 && !strings.Contains(r.stdout, fmt.Sprintf(`"tcb": %d`, tc.got)) {
			t.Errorf("rego: the issued claim is not %d exactly:\n%s", tc.got, r.stdout)
		}
		maaPol := writeTemp(t, "p.policy", fmt.Sprintf(`version=1.0;
authorizationrules { [type=="reported_tcb", value>=%d] => permit(); };
issuancerules { c:[type=="reported_tcb"] => issue(type="tcb", value=c.value); };`, tcb))
		r = runCLI(t, "policy", "test", maaPol, "--claims", claims)
		if r.code != tc.want {
			t.Errorf("MAA: reported_tcb %#x >= %#x: exit %d, want %d\n%s", tc.got, tcb, r.code, tc.want, r)
		}
		if tc.want == 0 && !strings.Contains(r.stdout, fmt.Sprintf(`"value": %d`, tc.got)) {
			t.Errorf("MAA: the issued claim is not %d exactly:\n%s", tc.got, r.stdout)
		}
	}
}
