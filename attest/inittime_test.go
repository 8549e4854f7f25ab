package attest

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/golang-jwt/jwt/v5"

	"github.com/cloister-dev/cloister/evidence"
	"github.com/cloister-dev/cloister/evidence/tdx"
	"github.com/cloister-dev/cloister/tee/sim"
)

// initTimeBody is an attest request with the evidence under member (quote
// or report), optional runtime data (JSON) and initTimeData of dataType.
func initTimeBody(member string, ev, runtime, initTime []byte, dataType string) string {
	b := fmt.Sprintf(`{%q:%q`, member, base64.RawURLEncoding.EncodeToString(ev))
	if runtime != nil {
		b += fmt.Sprintf(`,"runtimeData":{"data":%q,"dataType":"JSON"}`, base64.RawURLEncoding.EncodeToString(runtime))
	}
	if initTime != nil {
		b += fmt.Sprintf(`,"initTimeData":{"data":%q,"dataType":%q}`, base64.RawURLEncoding.EncodeToString(initTime), dataType)
	}
	return b + "}"
}

// tokenClaims decodes the token of a 200 response; the signature is
// checked elsewhere (TestAttestEndToEnd), this test is about its claims.
func tokenClaims(t *testing.T, out map[string]any) jwt.MapClaims {
	t.Helper()
	tok, _, err := jwt.NewParser().ParseUnverified(out["token"].(string), jwt.MapClaims{})
	if err != nil {
		t.Fatal(err)
	}
	return tok.Claims.(jwt.MapClaims)
}

func errCode(out map[string]any) string {
	e, _ := out["error"].(map[string]any)
	c, _ := e["code"].(string)
	return c
}

// sgxKSSQuote is a sim SGX quote of an enclave created with config ID id.
func sgxKSSQuote(t *testing.T, f fixture, id [64]byte, runtime []byte) []byte {
	t.Helper()
	var rd [64]byte
	if runtime != nil {
		sum := sha256.Sum256(runtime)
		copy(rd[:], sum[:])
	}
	q, err := f.pki.QuoteSGX(rand.Reader, sim.SGXReport{
		MRENCLAVE: [32]byte{1, 2}, MRSIGNER: [32]byte{3, 4}, ISVProdID: 7, ISVSVN: 3, ReportData: rd,
		ConfigID: id, ConfigSVN: 5, ISVExtProdID: [16]byte{0xe1}, ISVFamilyID: [16]byte{0xf1},
	})
	if err != nil {
		t.Fatal(err)
	}
	return q
}

// SGX: initTimeData binds to the first 32 bytes of the config ID (MAA's
// rule), for both data types, and the token carries the KSS claims.
func TestInitTimeDataSGX(t *testing.T) {
	f := getFixture(t)
	s := newService(t, f, "")
	defer s.Close()

	initJSON := []byte(`{"disk":"sha256:0a1b","replicas":3}`)
	var id [64]byte
	sum := sha256.Sum256(initJSON)
	copy(id[:], sum[:])
	// The upper half is the enclave's own business: MAA constrains only the
	// lower 32 bytes, so a value there must not stop the binding.
	for i := 32; i < 64; i++ {
		id[i] = byte(i)
	}
	runtime := []byte(`{"nonce":"n1"}`)
	q := sgxKSSQuote(t, f, id, runtime)

	code, out := do(t, s, "POST", "/attest/SgxEnclave"+av, initTimeBody("quote", q, runtime, initJSON, "JSON"))
	if code != 200 {
		t.Fatalf("matching JSON initTimeData: %d %v", code, out)
	}
	c := tokenClaims(t, out)
	if want := map[string]any{"disk": "sha256:0a1b", "replicas": float64(3)}; !reflect.DeepEqual(c["x-ms-inittime"], want) {
		t.Errorf("x-ms-inittime = %#v, want %#v", c["x-ms-inittime"], want)
	}
	if !reflect.DeepEqual(c["x-ms-runtime"], map[string]any{"nonce": "n1"}) {
		t.Errorf("x-ms-runtime = %#v", c["x-ms-runtime"])
	}
	for name, want := range map[string]any{
		"x-ms-sgx-config-id":               hex.EncodeToString(id[:]),
		"x-ms-sgx-config-svn":              float64(5),
		"x-ms-sgx-isv-extended-product-id": "e1" + strings.Repeat("00", 15),
		"x-ms-sgx-isv-family-id":           "f1" + strings.Repeat("00", 15),
	} {
		if c[name] != want {
			t.Errorf("%s = %#v, want %#v", name, c[name], want)
		}
	}

	// Binary: the same rule, and the data is not interpreted, so there is
	// no x-ms-inittime.
	bin := []byte{0, 1, 2, 0xff, 0xfe}
	binSum := sha256.Sum256(bin)
	var binID [64]byte
	copy(binID[:], binSum[:])
	code, out = do(t, s, "POST", "/attest/SgxEnclave"+av, initTimeBody("quote", sgxKSSQuote(t, f, binID, nil), nil, bin, "Binary"))
	if code != 200 {
		t.Fatalf("matching Binary initTimeData: %d %v", code, out)
	}
	if c := tokenClaims(t, out); c["x-ms-inittime"] != nil || c["x-ms-sgx-config-id"] != hex.EncodeToString(binID[:]) {
		t.Errorf("Binary: x-ms-inittime %#v (want none), config id %v", c["x-ms-inittime"], c["x-ms-sgx-config-id"])
	}

	// OpenEnclave takes the same SGX evidence, so the same binding.
	if code, out := do(t, s, "POST", "/attest/OpenEnclave"+av, initTimeBody("report", q, nil, initJSON, "JSON")); code != 200 {
		t.Errorf("OpenEnclave with matching initTimeData: %d %v", code, out)
	}

	// Other data: 400 naming both hashes.
	other := []byte(`{"disk":"sha256:ffff","replicas":3}`)
	otherSum := sha256.Sum256(other)
	code, out = do(t, s, "POST", "/attest/SgxEnclave"+av, initTimeBody("quote", q, runtime, other, "JSON"))
	if code != 400 || errCode(out) != "InitTimeDataMismatch" {
		t.Fatalf("mismatched initTimeData: %d %v; want 400 InitTimeDataMismatch", code, out)
	}
	if m := errMsg(out); !strings.Contains(m, hex.EncodeToString(otherSum[:])) || !strings.Contains(m, hex.EncodeToString(sum[:])) {
		t.Errorf("mismatch message %q should show SHA-256(data) and config_id[0:32]", m)
	}
	// Hashing into the upper half does not count: only [0:32] binds.
	var upper [64]byte
	copy(upper[32:], sum[:])
	if code, out := do(t, s, "POST", "/attest/SgxEnclave"+av, initTimeBody("quote", sgxKSSQuote(t, f, upper, nil), nil, initJSON, "JSON")); code != 400 || errCode(out) != "InitTimeDataMismatch" {
		t.Errorf("hash in config_id[32:64]: %d %v; want 400 InitTimeDataMismatch", code, out)
	}
}

// SGX without a config ID (no Key Separation and Sharing): initTimeData
// cannot match, and the token of such an enclave has no config-id claims.
func TestInitTimeDataSGXNoConfigID(t *testing.T) {
	f := getFixture(t)
	s := newService(t, f, "")
	defer s.Close()
	q := quote(t, f, nil, false)
	code, out := do(t, s, "POST", "/attest/SgxEnclave"+av, initTimeBody("quote", q, nil, []byte(`{"a":1}`), "JSON"))
	if code != 400 || errCode(out) != "InitTimeDataMismatch" || !strings.Contains(errMsg(out), "all zero") {
		t.Errorf("initTimeData against a zero config ID: %d %v; want 400 InitTimeDataMismatch saying it is all zero", code, out)
	}
	code, out = do(t, s, "POST", "/attest/SgxEnclave"+av, initTimeBody("quote", q, nil, nil, ""))
	if code != 200 {
		t.Fatalf("without initTimeData: %d %v", code, out)
	}
	c := tokenClaims(t, out)
	for _, name := range []string{"x-ms-sgx-config-id", "x-ms-sgx-config-svn", "x-ms-sgx-isv-extended-product-id", "x-ms-sgx-isv-family-id", "x-ms-inittime"} {
		if v, ok := c[name]; ok {
			t.Errorf("non-KSS enclave: token has %s = %v", name, v)
		}
	}
}

// TDX: MRCONFIGID must be SHA-256(initTimeData) followed by 16 zero bytes
// (Cloister's rule, docs/maa-contract.md §6).
func TestInitTimeDataTDX(t *testing.T) {
	f := getFixture(t)
	s, _ := newTDXService(t, f)
	defer s.Close()
	tdQuote := func(cfg [48]byte) []byte {
		t.Helper()
		b := tdx.Body{MRTD: sim.MRTD([32]byte{0x77}), MRConfigID: cfg}
		b.XFAM[0], b.XFAM[1] = 0xE7, 0x02
		q, err := f.pki.QuoteTDX(rand.Reader, b)
		if err != nil {
			t.Fatal(err)
		}
		return q
	}
	bound := func(data []byte) (cfg [48]byte) {
		sum := sha256.Sum256(data)
		copy(cfg[:], sum[:])
		return cfg
	}

	initJSON := []byte(`{"policy":"allow-all"}`)
	cfg := bound(initJSON)
	q := tdQuote(cfg)
	code, out := do(t, s, "POST", "/attest/TdxVm"+av, initTimeBody("quote", q, nil, initJSON, "JSON"))
	if code != 200 {
		t.Fatalf("matching JSON initTimeData: %d %v", code, out)
	}
	c := tokenClaims(t, out)
	if !reflect.DeepEqual(c["x-ms-inittime"], map[string]any{"policy": "allow-all"}) || c["tdx_mrconfigid"] != hex.EncodeToString(cfg[:]) {
		t.Errorf("x-ms-inittime %#v, tdx_mrconfigid %v", c["x-ms-inittime"], c["tdx_mrconfigid"])
	}

	bin := []byte("\x00binary init data\xff")
	code, out = do(t, s, "POST", "/attest/TdxVm"+av, initTimeBody("quote", tdQuote(bound(bin)), nil, bin, "Binary"))
	if code != 200 {
		t.Fatalf("matching Binary initTimeData: %d %v", code, out)
	}
	if c := tokenClaims(t, out); c["x-ms-inittime"] != nil {
		t.Errorf("Binary: x-ms-inittime = %#v, want none", c["x-ms-inittime"])
	}

	// Other data: 400 naming both values.
	other := []byte(`{"policy":"deny-all"}`)
	otherSum := sha256.Sum256(other)
	code, out = do(t, s, "POST", "/attest/TdxVm"+av, initTimeBody("quote", q, nil, other, "JSON"))
	if code != 400 || errCode(out) != "InitTimeDataMismatch" {
		t.Fatalf("mismatched initTimeData: %d %v; want 400 InitTimeDataMismatch", code, out)
	}
	if m := errMsg(out); !strings.Contains(m, hex.EncodeToString(otherSum[:])) || !strings.Contains(m, hex.EncodeToString(cfg[:32])) {
		t.Errorf("mismatch message %q should show SHA-256(data) and mr_config_id[0:32]", m)
	}

	// The hash in place but something in the last 16 bytes: the host chose
	// bytes initTimeData does not account for, so it does not bind.
	tail := cfg
	tail[47] = 1
	code, out = do(t, s, "POST", "/attest/TdxVm"+av, initTimeBody("quote", tdQuote(tail), nil, initJSON, "JSON"))
	if code != 400 || errCode(out) != "InitTimeDataMismatch" || !strings.Contains(errMsg(out), "must be zero") {
		t.Errorf("nonzero mr_config_id[32:48]: %d %v; want 400 InitTimeDataMismatch", code, out)
	}
	// A TD launched without a config ID.
	if code, out := do(t, s, "POST", "/attest/TdxVm"+av, initTimeBody("quote", tdQuote([48]byte{}), nil, initJSON, "JSON")); code != 400 || errCode(out) != "InitTimeDataMismatch" {
		t.Errorf("zero mr_config_id: %d %v; want 400 InitTimeDataMismatch", code, out)
	}
}

// bindInitTimeData on claims no HTTP test reaches: SEV-SNP keeps its rule,
// and evidence with no launch-time field is refused, not passed.
func TestBindInitTimeDataKinds(t *testing.T) {
	data := []byte("host config")
	sum := sha256.Sum256(data)
	snp := &evidence.Claims{TEE: evidence.TEESNP, SNPClaims: &evidence.SNPClaims{HostData: sum[:]}}
	if code, err := bindInitTimeData(TypeSevSnpVm, snp, data); err != nil {
		t.Errorf("SNP match: %s %v", code, err)
	}
	if code, err := bindInitTimeData(TypeSevSnpVm, snp, []byte("other")); code != "InitTimeDataMismatch" || err == nil || !strings.Contains(err.Error(), hex.EncodeToString(sum[:])) {
		t.Errorf("SNP mismatch: %q %v", code, err)
	}
	if code, err := bindInitTimeData(TypeSgxEnclave, &evidence.Claims{TEE: "other"}, data); code != "InvalidRequest" || err == nil {
		t.Errorf("no TEE part: %q %v; want InvalidRequest", code, err)
	}
	// A KSS enclave whose config ID was left zero: same answer as no KSS.
	kssZero := &evidence.Claims{TEE: evidence.TEESGX, SGXClaims: &evidence.SGXClaims{SGXKSSClaims: &evidence.SGXKSSClaims{ConfigID: make([]byte, 64)}}}
	if code, err := bindInitTimeData(TypeSgxEnclave, kssZero, data); code != "InitTimeDataMismatch" || err == nil || !strings.Contains(err.Error(), "all zero") {
		t.Errorf("KSS with zero config ID: %q %v", code, err)
	}
}
