package appsign

import (
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"testing/cryptotest"
)

// The Intel SGX SDK sample key's MRSIGNER, as SGX tooling reports it.
func TestKeyMRSIGNERIntelSample(t *testing.T) {
	key := testKey(t)
	got, err := KeyMRSIGNER(&key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	if hex.EncodeToString(got[:]) != sampleMRSIGNER {
		t.Fatalf("KeyMRSIGNER(Intel sample key) = %x, want %s", got, sampleMRSIGNER)
	}
}

// independentMRSIGNER reverses the big-endian modulus by hand.
func independentMRSIGNER(n *big.Int) [32]byte {
	be := n.Bytes()
	le := make([]byte, 384)
	for i := range be {
		le[i] = be[len(be)-1-i]
	}
	return sha256.Sum256(le)
}

// TestNewKey is the one RSA-3072 keygen of this test binary. The global
// random source is pinned, so the key (and the test's CPU time) is the same
// on every run.
func TestNewKey(t *testing.T) {
	cryptotest.SetGlobalRandom(t, 1)
	key, err := NewKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	if key.E != 3 || key.N.BitLen() != 3072 || len(key.Primes) != 2 {
		t.Fatalf("NewKey: e=%d, %d bits, %d primes; want e=3, 3072 bits, 2 primes", key.E, key.N.BitLen(), len(key.Primes))
	}
	three := big.NewInt(3)
	for i, p := range key.Primes {
		pm1 := new(big.Int).Sub(p, big.NewInt(1))
		if g := new(big.Int).GCD(nil, nil, three, pm1); g.Int64() != 1 {
			t.Errorf("gcd(3, p%d-1) = %v, want 1", i, g)
		}
	}
	if err := key.Validate(); err != nil {
		t.Fatal(err)
	}
	got, err := KeyMRSIGNER(&key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	if want := independentMRSIGNER(key.N); got != want {
		t.Fatalf("KeyMRSIGNER = %x, want %x", got, want)
	}

	// The new key signs, and its signature verifies with the public half
	// alone, through the file format.
	s, err := Sign(key, strings.NewReader("app"), testConfig)
	if err != nil {
		t.Fatal(err)
	}
	parsed, err := ParseSignature(s.Marshal())
	if err != nil {
		t.Fatal(err)
	}
	if err := parsed.Verify(); err != nil {
		t.Fatal(err)
	}
	if parsed.MRSIGNER() != got {
		t.Fatalf("Signature.MRSIGNER = %x, KeyMRSIGNER = %x", parsed.MRSIGNER(), got)
	}

	// Key files: written 0600, read back equal, never overwritten.
	path := filepath.Join(t.TempDir(), "key.pem")
	if err := WriteKeyFile(path, key); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("key file mode %v, want 0600", fi.Mode().Perm())
	}
	back, err := ReadKeyFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !back.Equal(key) {
		t.Fatal("key read back differs")
	}
	before := readFile(t, path)
	err = WriteKeyFile(path, testKey(t))
	if err == nil || !strings.Contains(err.Error(), "refusing to overwrite") {
		t.Fatalf("WriteKeyFile over an existing key: %v, want a refusal", err)
	}
	if after := readFile(t, path); !slices.Equal(before, after) {
		t.Fatal("existing key file was changed")
	}
}

func TestParseKeyPEMForms(t *testing.T) {
	key := testKey(t)
	pkcs1, err := MarshalKeyPEM(key)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(pkcs1), "-----BEGIN RSA PRIVATE KEY-----") {
		t.Fatalf("MarshalKeyPEM writes %q, want PKCS#1", strings.SplitN(string(pkcs1), "\n", 2)[0])
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	pkcs8 := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	for name, data := range map[string][]byte{"pkcs1": pkcs1, "pkcs8": pkcs8, "file": readFile(t, sampleKeyFile)} {
		got, err := ParseKeyPEM(data)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !got.Equal(key) {
			t.Fatalf("%s: parsed key differs", name)
		}
	}
}

func TestParseKeyPEMRejects(t *testing.T) {
	key := testKey(t)
	small, err := generateKey(nil, 1024) // e=3 but the wrong size; fast
	if err != nil {
		t.Fatal(err)
	}
	smallPEM := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(small)})
	e65537, err := rsa.GenerateKey(nil, 1024)
	if err != nil {
		t.Fatal(err)
	}
	e65537PEM := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(e65537)})
	good := readFile(t, sampleKeyFile)
	pubDER, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	pub := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})
	encrypted := strings.Replace(string(good), "-----BEGIN RSA PRIVATE KEY-----\n",
		"-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,00000000000000000000000000000000\n\n", 1)
	// A key whose CRT values do not match its primes.
	broken := *key
	broken.Precomputed = rsa.PrecomputedValues{}
	broken.D = new(big.Int).Add(key.D, big.NewInt(2))
	brokenPEM := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(&broken)})

	tests := []struct {
		name, in, wantErr string
	}{
		{"empty", "", "no PEM block"},
		{"not pem", "hello", "no PEM block"},
		{"wrong size", string(smallPEM), "1024-bit modulus, want 3072"},
		{"wrong exponent", string(e65537PEM), "public exponent 65537, want 3"},
		{"public key", string(pub), `PEM block "PUBLIC KEY"`},
		{"two blocks", string(good) + string(good), "more than one PEM block"},
		{"encrypted", encrypted, "encrypted PEM is not supported"},
		{"encrypted pkcs8", "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n", "encrypted PKCS#8"},
		{"garbage der", "-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n", "PKCS#1"},
		{"inconsistent", string(brokenPEM), "appsign: key: "},
		{"too large", string(good) + strings.Repeat("\n", MaxKeySize), "more than"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k, err := ParseKeyPEM([]byte(tt.in))
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("ParseKeyPEM = %v, %v; want error containing %q", k != nil, err, tt.wantErr)
			}
			if !strings.HasPrefix(err.Error(), "appsign: key: ") {
				t.Errorf("error %q lacks the prefix", err)
			}
		})
	}
}

func TestKeyMRSIGNERRejects(t *testing.T) {
	if _, err := KeyMRSIGNER(&rsa.PublicKey{N: big.NewInt(15), E: 3}); err == nil {
		t.Fatal("KeyMRSIGNER accepted a 4-bit modulus")
	}
	if _, err := KeyMRSIGNER(nil); err == nil {
		t.Fatal("KeyMRSIGNER accepted nil")
	}
}
