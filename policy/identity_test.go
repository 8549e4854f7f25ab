package policy

import (
	"errors"
	"testing"
)

// A policy must name whose code it accepts; a signer without a product, or
// only status and debug rules, is not an identity.
func TestRequireIdentity(t *testing.T) {
	one := uint16(1)
	b32, b48 := make([]byte, 32), make([]byte, 48)
	for name, tc := range map[string]struct {
		p  Policy
		ok bool
	}{
		"zero":                   {Policy{}, false},
		"status and debug only":  {Policy{AllowStatus: []string{"UpToDate"}, AllowDebug: true}, false},
		"svn only":               {Policy{MinISVSVN: &one}, false},
		"product only":           {Policy{ISVProdID: &one}, false},
		"signer without product": {Policy{MRSIGNER: [][]byte{b32}}, false},
		"signer and product":     {Policy{MRSIGNER: [][]byte{b32}, ISVProdID: &one}, true},
		"mrenclave":              {Policy{MRENCLAVE: [][]byte{b32}}, true},
		"mrtd":                   {Policy{MRTD: [][]byte{b48}}, true},
		"measurement":            {Policy{Measurement: [][]byte{b48}}, true},
		"any identity":           {Policy{AnyIdentity: true}, true},
	} {
		err := tc.p.RequireIdentity()
		if tc.ok != (err == nil) || (err != nil && !errors.Is(err, ErrNoIdentity)) {
			t.Errorf("%s: RequireIdentity() = %v, want ok=%v", name, err, tc.ok)
		}
	}
}
