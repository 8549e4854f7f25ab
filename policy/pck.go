package policy

import (
	"fmt"
	"slices"
	"strings"

	"github.com/cloister-dev/cloister/evidence"
)

// SizePlatformInstanceID is the size of a PCK platform instance ID.
const SizePlatformInstanceID = 16

// sgxTypes are the PCK SGX type names evidence.Claims carries.
var sgxTypes = []string{"standard", "scalable", "scalable_with_integrity"}

// validatePCK reports unknown SGX type names.
func validatePCK(p Policy) []error {
	var errs []error
	for _, t := range p.SGXTypes {
		if !slices.Contains(sgxTypes, t) {
			errs = append(errs, fmt.Errorf("policy: invalid sgx_type %q: not one of %s", t, strings.Join(sgxTypes, ", ")))
		}
	}
	return errs
}

// appraisePCK checks the PCK platform requirements. They are facts of the
// PCK certificate, so SGX and TDX claims (and their sim kinds) carry them;
// the configuration and instance ID only when the PCK Platform CA issued
// the certificate. A requirement the claims cannot state fails.
func appraisePCK(c *evidence.Claims, p Policy) []*Mismatch {
	var out []*Mismatch
	d := c.DCAPClaims
	if len(p.SGXTypes) > 0 {
		switch {
		case d == nil:
			out = append(out, &Mismatch{Field: "sgx_type", Got: notPresent(c, "sgx_type"), Want: "one of [" + strings.Join(p.SGXTypes, " ") + "]"})
		case !slices.Contains(p.SGXTypes, d.SGXType):
			out = append(out, &Mismatch{Field: "sgx_type", Got: quoteOrEmpty(d.SGXType), Want: "one of [" + strings.Join(p.SGXTypes, " ") + "]"})
		}
	}
	if len(p.PlatformInstanceIDs) > 0 {
		if d == nil || d.PlatformInstanceID == nil {
			out = append(out, &Mismatch{Field: "platform_instance_id", Got: notPresent(c, "platform_instance_id"), Want: wantList(p.PlatformInstanceIDs)})
		} else if m := anyOf("platform_instance_id", d.PlatformInstanceID, p.PlatformInstanceIDs); m != nil {
			out = append(out, m)
		}
	}
	flag := func(required bool, field string, got func(*evidence.DCAPClaims) *bool) {
		if !required {
			return
		}
		if d == nil || got(d) == nil {
			out = append(out, &Mismatch{Field: field, Got: notPresent(c, field), Want: "false"})
		} else if *got(d) {
			out = append(out, &Mismatch{Field: field, Got: "true", Want: "false"})
		}
	}
	flag(p.RequireSMTDisabled, "smt_enabled", func(d *evidence.DCAPClaims) *bool { return d.SMTEnabled })
	flag(p.RequireStaticPlatform, "dynamic_platform", func(d *evidence.DCAPClaims) *bool { return d.DynamicPlatform })
	flag(p.RequireNoCachedKeys, "cached_keys", func(d *evidence.DCAPClaims) *bool { return d.CachedKeys })
	return out
}
