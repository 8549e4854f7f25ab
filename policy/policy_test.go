package policy

import (
	"bytes"
	"encoding/hex"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/cloister-dev/cloister/evidence"
)

// Values from the shipped vectors (testdata/README.md), so the examples read
// like real appraisals.
var (
	sgxMRENCLAVE = mustHex("33d8736db756ed4997e04ba358d27833188f1932ff7b1d156904d3f560452fbb")
	sgxMRSIGNER  = mustHex("815f42f11cf64430c30bab7816ba596a1da0130c3b028b673133a66cf9a3e0e6")
	tdxMRTD      = mustHex("91eb2b44d141d4ece09f0c75c2c53d247a3c68edd7fafe8a3520c942a604a407de03ae6dc5f87f27428b2538873118b7")
	snpMeasure   = mustHex("b07af9620f3b839b47996422ddec6058338951d984e312115131ea82705eaf5b6bdf8a9ece31a5a608eb0cf2e4872b01")
	other32      = bytes.Repeat([]byte{0xab}, 32)
	other48      = bytes.Repeat([]byte{0xcd}, 48)
)

func mustHex(s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}

func u16(v uint16) *uint16 { return &v }

func sgxClaims(status string, debug bool, svn uint16) *evidence.Claims {
	return &evidence.Claims{
		TEE: evidence.TEESGX, TCBStatus: status, Debug: debug,
		DCAPClaims: &evidence.DCAPClaims{},
		SGXClaims:  &evidence.SGXClaims{MRENCLAVE: sgxMRENCLAVE, MRSIGNER: sgxMRSIGNER, ISVSVN: svn},
	}
}

func tdxClaims(status string) *evidence.Claims {
	return &evidence.Claims{
		TEE: evidence.TEETDX, TCBStatus: status,
		DCAPClaims: &evidence.DCAPClaims{},
		TDXClaims:  &evidence.TDXClaims{MRTD: tdxMRTD},
	}
}

func snpClaims(debug bool) *evidence.Claims {
	return &evidence.Claims{
		TEE: evidence.TEESNP, TCBStatus: evidence.StatusNotEvaluated, Debug: debug,
		SNPClaims: &evidence.SNPClaims{Measurement: snpMeasure, GuestSVN: 3},
	}
}

// mismatchFields returns the Field of every *Mismatch joined in err, in order.
func mismatchFields(t *testing.T, err error) []string {
	t.Helper()
	if err == nil {
		return nil
	}
	var errs []error
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs = j.Unwrap()
	} else {
		errs = []error{err}
	}
	var fields []string
	for _, e := range errs {
		var m *Mismatch
		if !errors.As(e, &m) {
			t.Fatalf("joined error %q is not a *Mismatch", e)
		}
		fields = append(fields, m.Field)
	}
	return fields
}

func TestAppraise(t *testing.T) {
	tests := []struct {
		name   string
		claims *evidence.Claims
		policy Policy
		want   []string // fields that fail, in report order; nil = pass
	}{
		{"sgx zero policy up to date", sgxClaims("UpToDate", false, 0), Policy{}, nil},
		{"sgx all fields match", sgxClaims("UpToDate", false, 5), Policy{
			MRENCLAVE: [][]byte{other32, sgxMRENCLAVE}, MRSIGNER: [][]byte{sgxMRSIGNER}, MinISVSVN: u16(5),
		}, nil},
		{"sgx wrong mrenclave", sgxClaims("UpToDate", false, 0), Policy{MRENCLAVE: [][]byte{other32}}, []string{"mrenclave"}},
		{"sgx wrong mrsigner", sgxClaims("UpToDate", false, 0), Policy{MRSIGNER: [][]byte{other32}}, []string{"mrsigner"}},
		{"sgx svn too low", sgxClaims("UpToDate", false, 4), Policy{MinISVSVN: u16(5)}, []string{"isv_svn"}},
		{"sgx svn zero ok", sgxClaims("UpToDate", false, 0), Policy{MinISVSVN: u16(0)}, nil},
		{"every failure at once", sgxClaims("OutOfDate", true, 1), Policy{
			MRENCLAVE: [][]byte{other32}, MRSIGNER: [][]byte{other32}, MinISVSVN: u16(2),
			MRTD: [][]byte{tdxMRTD}, Measurement: [][]byte{snpMeasure},
		}, []string{"mrenclave", "mrsigner", "isv_svn", "mrtd", "measurement", "tcb_status", "debug"}},

		// Status rules.
		{"default rejects SWHardeningNeeded", sgxClaims("SWHardeningNeeded", false, 0), Policy{}, []string{"tcb_status"}},
		{"listed status passes", sgxClaims("ConfigurationAndSWHardeningNeeded", false, 0),
			Policy{AllowStatus: []string{"UpToDate", "ConfigurationAndSWHardeningNeeded"}}, nil},
		{"list replaces default", sgxClaims("UpToDate", false, 0), Policy{AllowStatus: []string{"SWHardeningNeeded"}}, []string{"tcb_status"}},
		{"NotEvaluated fails default", sgxClaims("NotEvaluated", false, 0), Policy{}, []string{"tcb_status"}},
		{"NotEvaluated fails unless listed", sgxClaims("NotEvaluated", false, 0),
			Policy{AllowStatus: []string{"UpToDate", "SWHardeningNeeded", "OutOfDate"}}, []string{"tcb_status"}},
		{"NotEvaluated listed passes", sgxClaims("NotEvaluated", false, 0), Policy{AllowStatus: []string{"NotEvaluated"}}, nil},
		{"Revoked fails default", tdxClaims("Revoked"), Policy{}, []string{"tcb_status"}},
		{"empty status fails", sgxClaims("", false, 0), Policy{}, []string{"tcb_status"}},

		// Debug.
		{"debug fails by default", sgxClaims("UpToDate", true, 0), Policy{}, []string{"debug"}},
		{"debug allowed", sgxClaims("UpToDate", true, 0), Policy{AllowDebug: true}, nil},

		// Fields of another TEE kind can never be satisfied.
		{"mrtd on sgx", sgxClaims("UpToDate", false, 0), Policy{MRTD: [][]byte{tdxMRTD}}, []string{"mrtd"}},
		{"measurement on sgx", sgxClaims("UpToDate", false, 0), Policy{Measurement: [][]byte{snpMeasure}}, []string{"measurement"}},
		{"mrenclave on tdx", tdxClaims("UpToDate"), Policy{MRENCLAVE: [][]byte{sgxMRENCLAVE}}, []string{"mrenclave"}},
		{"mrsigner on tdx", tdxClaims("UpToDate"), Policy{MRSIGNER: [][]byte{sgxMRSIGNER}}, []string{"mrsigner"}},
		{"min svn on tdx", tdxClaims("UpToDate"), Policy{MinISVSVN: u16(0)}, []string{"isv_svn"}},
		{"min svn on snp", snpClaims(false), Policy{MinISVSVN: u16(0)}, []string{"isv_svn"}},
		{"mrenclave on snp", snpClaims(false), Policy{MRENCLAVE: [][]byte{sgxMRENCLAVE}}, []string{"mrenclave"}},

		// TDX.
		{"tdx mrtd match", tdxClaims("UpToDate"), Policy{MRTD: [][]byte{tdxMRTD}}, nil},
		{"tdx mrtd mismatch", tdxClaims("UpToDate"), Policy{MRTD: [][]byte{other48}}, []string{"mrtd"}},

		// Sim kinds are appraised on their parts, like hardware kinds.
		{"sim-sgx mrenclave", &evidence.Claims{TEE: evidence.TEESimSGX, TCBStatus: "UpToDate",
			SGXClaims: &evidence.SGXClaims{MRENCLAVE: sgxMRENCLAVE}}, Policy{MRENCLAVE: [][]byte{sgxMRENCLAVE}}, nil},

		// SEV-SNP: no status requirement unless AllowStatus is given.
		{"snp no status requirement", snpClaims(false), Policy{Measurement: [][]byte{snpMeasure}}, nil},
		{"snp zero policy", snpClaims(false), Policy{}, nil},
		{"snp explicit status list must name NotEvaluated", snpClaims(false), Policy{AllowStatus: []string{"UpToDate"}}, []string{"tcb_status"}},
		{"snp NotEvaluated listed", snpClaims(false), Policy{AllowStatus: []string{"NotEvaluated"}}, nil},
		{"snp with a real bad status still fails by default", &evidence.Claims{TEE: evidence.TEESNP, TCBStatus: "OutOfDate",
			SNPClaims: &evidence.SNPClaims{Measurement: snpMeasure}}, Policy{}, []string{"tcb_status"}},
		{"snp wrong measurement", snpClaims(false), Policy{Measurement: [][]byte{other48}}, []string{"measurement"}},
		{"snp debug", snpClaims(true), Policy{}, []string{"debug"}},
		{"snp mrtd", snpClaims(false), Policy{MRTD: [][]byte{tdxMRTD}}, []string{"mrtd"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := Appraise(tc.claims, tc.policy)
			got := mismatchFields(t, err)
			if !slices.Equal(got, tc.want) {
				t.Fatalf("Appraise failed fields = %v, want %v (err: %v)", got, tc.want, err)
			}
		})
	}
}

func TestAppraiseMessages(t *testing.T) {
	err := Appraise(sgxClaims("NotEvaluated", true, 0), Policy{MRENCLAVE: [][]byte{other32, other32[:0:0]}})
	if err == nil {
		t.Fatal("Appraise passed, want failure")
	}
	// The empty entry is a Validate error, not a mismatch.
	if !strings.Contains(err.Error(), "policy: invalid mrenclave entry 1: 0 bytes") {
		t.Fatalf("error %q does not name the invalid entry", err)
	}

	err = Appraise(sgxClaims("NotEvaluated", true, 0), Policy{MRENCLAVE: [][]byte{other32}, MRTD: [][]byte{tdxMRTD}})
	for _, want := range []string{
		"policy: mrenclave: got " + hex.EncodeToString(sgxMRENCLAVE) + ", want one of [" + hex.EncodeToString(other32) + "]",
		`policy: mrtd: got nothing (tee "sgx" evidence has no mrtd), want one of [` + hex.EncodeToString(tdxMRTD) + "]",
		"policy: tcb_status: got NotEvaluated, want one of [UpToDate]",
		"policy: debug: got true, want false",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not contain %q:\n%v", want, err)
		}
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name   string
		policy Policy
		want   []string // substrings of the error; nil = valid
	}{
		{"zero", Policy{}, nil},
		{"good", Policy{MRENCLAVE: [][]byte{other32}, MRSIGNER: [][]byte{other32}, MRTD: [][]byte{other48},
			Measurement: [][]byte{other48}, AllowStatus: []string{"UpToDate", "NotEvaluated", "Revoked"}}, nil},
		{"short mrenclave", Policy{MRENCLAVE: [][]byte{other32[:31]}}, []string{"mrenclave entry 0: 31 bytes"}},
		{"mrtd given a 32-byte value", Policy{MRTD: [][]byte{other32}}, []string{"mrtd entry 0: 32 bytes"}},
		{"measurement too long", Policy{Measurement: [][]byte{append(other48, 0)}}, []string{"measurement entry 0: 49 bytes"}},
		{"mrsigner and status at once", Policy{MRSIGNER: [][]byte{nil}, AllowStatus: []string{"uptodate"}},
			[]string{"mrsigner entry 0: 0 bytes, want 32 bytes", `tcb_status "uptodate"`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.policy.Validate()
			if tc.want == nil {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate() = nil, want errors containing %q", tc.want)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Validate() = %q, want it to contain %q", err, w)
				}
			}
			// Appraise must refuse a malformed policy rather than appraise with it.
			if Appraise(sgxClaims("UpToDate", false, 0), tc.policy) == nil {
				t.Error("Appraise passed with a malformed policy")
			}
		})
	}
}

func TestAppraiseNilClaims(t *testing.T) {
	if err := Appraise(nil, Policy{AllowDebug: true}); err == nil {
		t.Fatal("Appraise(nil) = nil, want error")
	}
}

func TestISVProdID(t *testing.T) {
	c := &evidence.Claims{TEE: evidence.TEESGX, TCBStatus: evidence.StatusUpToDate, SGXClaims: &evidence.SGXClaims{ISVProdID: 3}}
	three, four := uint16(3), uint16(4)
	if err := Appraise(c, Policy{ISVProdID: &three}); err != nil {
		t.Errorf("product 3 against 3: %v", err)
	}
	err := Appraise(c, Policy{ISVProdID: &four})
	var m *Mismatch
	if !errors.As(err, &m) || m.Field != "isv_prod_id" {
		t.Errorf("product 3 against 4: %v", err)
	}
	tdx := &evidence.Claims{TEE: evidence.TEETDX, TCBStatus: evidence.StatusUpToDate, TDXClaims: &evidence.TDXClaims{}}
	if err := Appraise(tdx, Policy{ISVProdID: &three}); err == nil {
		t.Error("an SGX product requirement passed TDX evidence")
	}
}
