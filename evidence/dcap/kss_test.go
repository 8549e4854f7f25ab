package dcap

import (
	"bytes"
	"encoding/binary"
	"testing"
)

// The Key Separation and Sharing fields sit where the SGX report body
// layout puts them (ISVEXTPRODID at 32, CONFIGID at 192, CONFIGSVN at 260,
// ISVFAMILYID at 304), survive a Marshal/Parse round trip, and KSS reads
// the KSS attribute (flags bit 7).
func TestEnclaveReportKSSFields(t *testing.T) {
	var e EnclaveReport
	for i := range e.ConfigID {
		e.ConfigID[i] = byte(0x40 + i)
	}
	e.ConfigSVN = 0x0d7b
	e.ISVExtProdID = [16]byte{0xe1, 15: 0xe2}
	e.ISVFamilyID = [16]byte{0xf1, 15: 0xf2}
	if e.KSS() {
		t.Error("KSS set without the attribute")
	}
	e.Attributes[0] = 0x85 // INIT | MODE64BIT | KSS
	b := e.Marshal()
	if !bytes.Equal(b[192:256], e.ConfigID[:]) || binary.LittleEndian.Uint16(b[260:]) != e.ConfigSVN ||
		!bytes.Equal(b[32:48], e.ISVExtProdID[:]) || !bytes.Equal(b[304:320], e.ISVFamilyID[:]) {
		t.Fatalf("KSS fields at the wrong offsets: %x", b)
	}
	got, err := ParseEnclaveReport(b, "report")
	if err != nil {
		t.Fatal(err)
	}
	if *got != e || !got.KSS() {
		t.Errorf("round trip: %+v, want %+v (KSS %v)", got, e, got.KSS())
	}
}
