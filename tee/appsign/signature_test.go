package appsign

import (
	"bytes"
	"crypto/rsa"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
	"os"
	"strings"
	"testing"
)

func signTestApp(t *testing.T) *Signature {
	t.Helper()
	s, err := Sign(testKey(t), bytes.NewReader(readFile(t, appFile)), testConfig)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestSignRoundTrip(t *testing.T) {
	bin := readFile(t, appFile)
	s := signTestApp(t)
	parsed, err := ParseSignature(s.Marshal())
	if err != nil {
		t.Fatal(err)
	}
	if *parsed != *s {
		t.Fatalf("parsed signature differs:\n%+v\n%+v", parsed, s)
	}
	if err := parsed.Verify(); err != nil {
		t.Fatal(err)
	}
	if err := parsed.Check(bytes.NewReader(bin)); err != nil {
		t.Fatal(err)
	}
	if want := independentMRENCLAVE(bin, testConfig); parsed.MRENCLAVE != want {
		t.Fatalf("signed MRENCLAVE %x, want %x", parsed.MRENCLAVE, want)
	}
	if signer := parsed.MRSIGNER(); hex.EncodeToString(signer[:]) != sampleMRSIGNER {
		got := hex.EncodeToString(signer[:])
		t.Fatalf("MRSIGNER = %s, want %s", got, sampleMRSIGNER)
	}
	if !bytes.Equal(parsed.Marshal(), s.Marshal()) {
		t.Fatal("Marshal is not stable across a round trip")
	}
}

// TestGoldenSignature freezes the file format (and, PKCS#1 v1.5 being
// deterministic, the whole signing path): testdata/app.sig is what Sign
// writes for app.bin, enclave.json and the sample key.
func TestGoldenSignature(t *testing.T) {
	got := signTestApp(t).Marshal()
	if *update {
		if err := os.WriteFile(sigFile, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want := readFile(t, sigFile)
	if !bytes.Equal(got, want) {
		t.Fatalf("Sign output differs from %s (run with -update if the format changed on purpose):\n%s", sigFile, got)
	}
	s, err := ReadSignatureFile(sigFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Verify(); err != nil {
		t.Fatal(err)
	}
	if err := s.Check(bytes.NewReader(readFile(t, appFile))); err != nil {
		t.Fatal(err)
	}
}

func TestCheckChangedBinary(t *testing.T) {
	bin := readFile(t, appFile)
	s := signTestApp(t)
	for i := range bin {
		b := bytes.Clone(bin)
		b[i] ^= 0x80
		err := s.Check(bytes.NewReader(b))
		if !errors.Is(err, ErrMeasurementMismatch) {
			t.Fatalf("byte %d changed: Check = %v, want ErrMeasurementMismatch", i, err)
		}
	}
	for name, b := range map[string][]byte{"appended": append(bytes.Clone(bin), 0), "truncated": bin[:len(bin)-1]} {
		if err := s.Check(bytes.NewReader(b)); !errors.Is(err, ErrMeasurementMismatch) {
			t.Fatalf("%s: Check = %v, want ErrMeasurementMismatch", name, err)
		}
	}
	if err := s.Check(bytes.NewReader(nil)); err == nil {
		t.Fatal("Check accepted an empty binary")
	}
}

// Every byte of every signed or signing value, flipped, fails Verify.
func TestVerifyFieldFlips(t *testing.T) {
	s := signTestApp(t)
	flip := func(what string, mutate func(*Signature)) {
		t.Helper()
		m := *s
		mutate(&m)
		if err := m.Verify(); err == nil {
			t.Errorf("%s: Verify accepted it", what)
		}
	}
	for i := range s.MRENCLAVE {
		flip(fmt.Sprintf("mrenclave[%d]", i), func(m *Signature) { m.MRENCLAVE[i] ^= 0x01 })
	}
	for i := range s.RSASignature {
		flip(fmt.Sprintf("signature[%d]", i), func(m *Signature) { m.RSASignature[i] ^= 0x01 })
	}
	for i := range s.Modulus {
		flip(fmt.Sprintf("modulus[%d]", i), func(m *Signature) { m.Modulus[i] ^= 0x01 })
	}
	flip("product_id", func(m *Signature) { m.Config.ProductID ^= 1 })
	flip("svn", func(m *Signature) { m.Config.SVN ^= 1 })
	flip("debug", func(m *Signature) { m.Config.Debug = !m.Config.Debug })
	flip("heap_mb", func(m *Signature) { m.Config.HeapMB ^= 1 })
	flip("threads", func(m *Signature) { m.Config.Threads ^= 1 })
	for _, e := range []int{1, 2, 5, 17, 65537} {
		flip(fmt.Sprintf("exponent %d", e), func(m *Signature) { m.Exponent = e })
	}
}

// Every single-bit change anywhere in the file is caught by ParseSignature
// or by Verify: no byte of APP.sig is unprotected.
func TestSignatureFileFlips(t *testing.T) {
	data := readFile(t, sigFile)
	for i := range data {
		for _, bit := range []byte{0x01, 0x20, 0x80} {
			b := bytes.Clone(data)
			b[i] ^= bit
			s, err := ParseSignature(b)
			if err != nil {
				continue
			}
			if err := s.Verify(); err == nil {
				t.Errorf("byte %d ^ %#x (%q→%q): parsed and verified", i, bit, data[i], b[i])
			}
		}
	}
}

func TestVerifyKeyShape(t *testing.T) {
	s := signTestApp(t)

	e := *s
	e.Exponent = 65537
	if err := e.Verify(); err == nil || !strings.Contains(err.Error(), "public exponent 65537, want 3") {
		t.Errorf("exponent 65537: %v", err)
	}

	// A genuine e=3 signature by a 3071-bit key: correct RSA, wrong size.
	short, err := generateKey(nil, 1024)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Sign(short, strings.NewReader("x"), testConfig); err == nil || !strings.Contains(err.Error(), "1024-bit modulus, want 3072") {
		t.Errorf("Sign with a 1024-bit key: %v", err)
	}
	small := *s
	small.Modulus = [ModulusSize]byte{}
	short.N.FillBytes(small.Modulus[:])
	if err := small.Verify(); err == nil || !strings.Contains(err.Error(), "1024-bit modulus") {
		t.Errorf("1024-bit modulus: %v", err)
	}
	top := *s
	top.Modulus[0] &^= 0x80
	if err := top.Verify(); err == nil || !strings.Contains(err.Error(), "modulus, want 3072 bits") {
		t.Errorf("top bit cleared: %v", err)
	}
	even := *s
	even.Modulus[ModulusSize-1] &^= 1
	if err := even.Verify(); err == nil || !strings.Contains(err.Error(), "even modulus") {
		t.Errorf("even modulus: %v", err)
	}
	bad := *s
	bad.RSASignature[10] ^= 1
	if err := bad.Verify(); !errors.Is(err, rsa.ErrVerification) {
		t.Errorf("bad signature: %v, want rsa.ErrVerification wrapped", err)
	}
	cfg := *s
	cfg.Config.HeapMB = 0
	if err := cfg.Verify(); err == nil || !strings.Contains(err.Error(), "heap_mb 0") {
		t.Errorf("out-of-range config: %v", err)
	}
}

func TestSignRejects(t *testing.T) {
	key := testKey(t)
	if _, err := Sign(nil, strings.NewReader("x"), testConfig); err == nil {
		t.Error("Sign(nil key) succeeded")
	}
	if _, err := Sign(key, strings.NewReader("x"), Config{}); err == nil || !strings.Contains(err.Error(), "heap_mb 0") {
		t.Errorf("Sign with an invalid config: %v", err)
	}
	if _, err := Sign(key, strings.NewReader(""), testConfig); err == nil || !strings.Contains(err.Error(), "empty binary") {
		t.Errorf("Sign of an empty binary: %v", err)
	}
	// A key with E=3 but a modulus that is not its own (the self-check).
	wrong := *key
	wrong.PublicKey = rsa.PublicKey{N: new(big.Int).Add(key.N, big.NewInt(2)), E: 3}
	if _, err := Sign(&wrong, strings.NewReader("x"), testConfig); err == nil {
		t.Error("Sign with an inconsistent key succeeded")
	}
}

// replaceField swaps one JSON member's value in the golden file.
func replaceField(t *testing.T, data []byte, key, value string) string {
	t.Helper()
	s := string(data)
	start := strings.Index(s, `"`+key+`": `)
	if start < 0 {
		t.Fatalf("no %q in the file", key)
	}
	start += len(key) + 4
	end := start
	for end < len(s) && s[end] != ',' && s[end] != '\n' {
		end++
	}
	return s[:start] + value + s[end:]
}

func TestParseSignatureRejects(t *testing.T) {
	good := readFile(t, sigFile)
	s, err := ParseSignature(good)
	if err != nil {
		t.Fatal(err)
	}
	mr := hex.EncodeToString(s.MRENCLAVE[:])
	tests := []struct {
		name, in, wantErr string
	}{
		{"version 2", replaceField(t, good, "version", "2"), "version 2 not supported"},
		{"version 0", replaceField(t, good, "version", "0"), "version 0 not supported"},
		{"version string", replaceField(t, good, "version", `"1"`), `field "version"`},
		{"short mrenclave", replaceField(t, good, "mrenclave", `"`+mr[:62]+`"`), "62 hex digits, want 64"},
		{"long mrenclave", replaceField(t, good, "mrenclave", `"`+mr+`00"`), "66 hex digits, want 64"},
		{"uppercase hex", replaceField(t, good, "mrenclave", `"`+strings.ToUpper(mr)+`"`), "not lowercase hex"},
		{"0x prefix", replaceField(t, good, "mrenclave", `"0x`+mr[2:]+`"`), "not lowercase hex"},
		{"short modulus", replaceField(t, good, "modulus", `"`+strings.Repeat("ab", 383)+`"`), "766 hex digits, want 768"},
		{"long signature", replaceField(t, good, "signature", `"`+strings.Repeat("ab", 385)+`"`), "770 hex digits, want 768"},
		{"hex number", replaceField(t, good, "mrenclave", "12"), `field "mrenclave"`},
		{"zero exponent", replaceField(t, good, "exponent", "0"), "0 is not a public exponent"},
		{"negative exponent", replaceField(t, good, "exponent", "-3"), "-3 is not a public exponent"},
		{"huge exponent", replaceField(t, good, "exponent", "99999999999999999999"), `field "exponent"`},
		{"float exponent", replaceField(t, good, "exponent", "3.0"), `field "exponent"`},
		{"null signature", replaceField(t, good, "signature", "null"), `"signature": null`},
		{"unknown field", strings.Replace(string(good), `"version": 1,`, `"version": 1, "comment": "x",`, 1), `unknown field "comment"`},
		{"duplicate field", strings.Replace(string(good), `"version": 1,`, `"version": 1, "version": 1,`, 1), `duplicate field "version"`},
		{"case folded", strings.Replace(string(good), `"version"`, `"Version"`, 1), `unknown field "Version"`},
		{"missing exponent", strings.Replace(string(good), `"exponent": 3,`, ``, 1), `missing field "exponent"`},
		{"config missing field", strings.Replace(string(good), `"threads": 8`, `"threads": 8, "x": 1`, 1), `unknown field "x"`},
		{"config partial", strings.Replace(string(good), `"svn": 3,`, ``, 1), `missing field "svn"`},
		{"config out of range", strings.Replace(string(good), `"heap_mb": 128`, `"heap_mb": 0`, 1), "heap_mb 0"},
		{"trailing data", string(good) + "{}", "trailing data"},
		{"array", "[" + string(good) + "]", "not a JSON object"},
		{"too large", string(good) + strings.Repeat(" ", MaxSignatureSize), "more than"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := ParseSignature([]byte(tt.in))
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("ParseSignature = %v, %v; want error containing %q", s != nil, err, tt.wantErr)
			}
			if !strings.HasPrefix(err.Error(), "appsign: signature file: ") {
				t.Errorf("error %q lacks the prefix", err)
			}
		})
	}
}

// No strict prefix of a valid file parses.
func TestParseSignatureTruncated(t *testing.T) {
	good := bytes.TrimRight(readFile(t, sigFile), "\n")
	for i := range good {
		if _, err := ParseSignature(good[:i]); err == nil {
			t.Fatalf("prefix of %d bytes parsed", i)
		}
	}
}

// The exponent is read as given, so a file claiming another exponent
// parses and then fails Verify, naming the reason.
func TestParseThenVerifyExponent(t *testing.T) {
	in := replaceField(t, readFile(t, sigFile), "exponent", "65537")
	s, err := ParseSignature([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Verify(); err == nil || !strings.Contains(err.Error(), "exponent 65537, want 3") {
		t.Fatalf("Verify = %v", err)
	}
}
