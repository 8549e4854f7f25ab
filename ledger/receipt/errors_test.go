package receipt

import (
	"crypto/x509"
	"errors"
	"testing"
)

func TestErrorForm(t *testing.T) {
	resp, err := Parse(readVector(t, "acl_receipt_1.json"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = Verify(resp, Options{ServiceCert: readVector(t, "acl_receipt_2_service_cert.pem")})
	var ve *VerifyError
	if !errors.As(err, &ve) || ve.Step != StepEndorsement || ve.Where != "service certificate" {
		t.Fatalf("%#v", err)
	}
	if want := "receipt: endorsement: service certificate: does not endorse cert: x509: ECDSA verification failure"; err.Error() != want {
		t.Errorf("%q\nwant %q", err, want)
	}
	// The x509 cause is reachable through Unwrap.
	if !errors.Is(err, x509.ErrUnsupportedAlgorithm) && errors.Unwrap(err) == nil {
		t.Error("no cause")
	}
	if Step(99).String() != "step(99)" || StepSignature.String() != "signature" {
		t.Error("step names")
	}
	// Step values are a contract: never renumbered.
	for s, v := range map[Step]int{StepParse: 1, StepClaims: 2, StepServiceCert: 3, StepNodeCert: 4, StepEndorsement: 5, StepTransactionID: 6, StepNodeID: 7, StepSignature: 8} {
		if int(s) != v {
			t.Errorf("%s = %d, want %d", s, int(s), v)
		}
	}
	if _, ok := StepOf(errors.New("other")); ok {
		t.Error("StepOf an unrelated error")
	}
}
