package policy

import (
	"bytes"
	"slices"
	"testing"

	"github.com/cloister-dev/cloister/evidence"
)

func platformCA(c *evidence.Claims, sgxType string, smt, dynamic, cached bool) *evidence.Claims {
	c.SGXType = sgxType
	c.PlatformInstanceID = bytes.Repeat([]byte{0x11}, 16)
	c.SMTEnabled, c.DynamicPlatform, c.CachedKeys = &smt, &dynamic, &cached
	return c
}

// The PCK platform requirements (SGX type, platform instance ID,
// configuration) hold on SGX and TDX claims alike, report every failure,
// and fail on evidence that cannot state them.
func TestAppraisePCKPlatform(t *testing.T) {
	id := bytes.Repeat([]byte{0x11}, 16)
	all := Policy{SGXTypes: []string{"scalable"}, PlatformInstanceIDs: [][]byte{id}, RequireSMTDisabled: true,
		RequireStaticPlatform: true, RequireNoCachedKeys: true}
	for _, tc := range []struct {
		name   string
		claims *evidence.Claims
		p      Policy
		want   []string
	}{
		{"SGX, all satisfied", platformCA(sgxClaims("UpToDate", false, 0), "scalable", false, false, false), all, nil},
		{"TDX, all satisfied", platformCA(tdxClaims("UpToDate"), "scalable", false, false, false), all, nil},
		{"every flag wrong", platformCA(tdxClaims("UpToDate"), "standard", true, true, true), all,
			[]string{"sgx_type", "smt_enabled", "dynamic_platform", "cached_keys"}},
		{"other instance", platformCA(sgxClaims("UpToDate", false, 0), "scalable", false, false, false),
			Policy{PlatformInstanceIDs: [][]byte{bytes.Repeat([]byte{0x22}, 16)}}, []string{"platform_instance_id"}},
		// A Processor CA certificate states no configuration: requiring one fails.
		{"Processor CA PCK", func() *evidence.Claims { c := sgxClaims("UpToDate", false, 0); c.SGXType = "standard"; return c }(), all,
			[]string{"sgx_type", "platform_instance_id", "smt_enabled", "dynamic_platform", "cached_keys"}},
		{"SNP evidence", snpClaims(false), Policy{RequireSMTDisabled: true, SGXTypes: []string{"scalable"}}, []string{"sgx_type", "smt_enabled"}},
		{"no requirement", platformCA(sgxClaims("UpToDate", false, 0), "standard", true, true, true), Policy{}, nil},
	} {
		got := mismatchFields(t, Appraise(tc.claims, tc.p))
		if !slices.Equal(got, tc.want) {
			t.Errorf("%s: mismatches %v; want %v", tc.name, got, tc.want)
		}
	}
}

func TestValidatePCKPlatform(t *testing.T) {
	for _, p := range []Policy{
		{SGXTypes: []string{"scaleable"}},
		{PlatformInstanceIDs: [][]byte{make([]byte, 15)}},
	} {
		if err := p.Validate(); err == nil {
			t.Errorf("%+v: valid", p)
		}
	}
	if err := (Policy{SGXTypes: []string{"standard", "scalable", "scalable_with_integrity"}}).Validate(); err != nil {
		t.Error(err)
	}
}
