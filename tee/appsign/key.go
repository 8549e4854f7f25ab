package appsign

import (
	"crypto/fips140"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"os"
)

// Signing keys are what SGX SIGSTRUCT requires: RSA-3072 with public
// exponent 3. Cloister keeps that shape so MRSIGNER for a key is the value
// SGX tooling (sgx_sign, gramine-sgx-sign) reports for the same key, and one
// key can sign an app for the sim and for real SGX.
const (
	// KeyBits is the modulus size of a signing key.
	KeyBits = 3072
	// ModulusSize is the modulus (and signature) size in bytes.
	ModulusSize = KeyBits / 8
	// KeyExponent is the public exponent of a signing key.
	KeyExponent = 3
)

var bigOne = big.NewInt(1)

// NewKey generates an RSA-3072 signing key with public exponent 3.
// crypto/rsa.GenerateKey always uses 65537, so the primes come from
// crypto/rand.Prime, each kept only when p ≡ 2 (mod 3), i.e.
// gcd(3, p-1) = 1, so that 3 is invertible; D = 3⁻¹ mod lcm(p-1, q-1).
//
// random is passed to crypto/rand.Prime, which since Go 1.26 ignores it and
// uses the system's secure source unless GODEBUG=cryptocustomrand=1; tests
// that need a repeatable key use testing/cryptotest.SetGlobalRandom. nil
// means crypto/rand.Reader. Keygen takes a second or more of CPU.
//
// Exponent 3 is not FIPS 186-5 approved: under GODEBUG=fips140=only,
// crypto/rsa refuses it, and NewKey, Sign and Verify fail saying so.
func NewKey(random io.Reader) (*rsa.PrivateKey, error) {
	return generateKey(random, KeyBits)
}

// generateKey is NewKey for any even size; tests use small sizes to check
// that wrong-size keys are refused.
func generateKey(random io.Reader, bits int) (*rsa.PrivateKey, error) {
	if err := fipsOnlyRefuses(); err != nil {
		return nil, fmt.Errorf("appsign: new key: %w", err)
	}
	if random == nil {
		random = rand.Reader
	}
	three := big.NewInt(KeyExponent)
	prime := func() (*big.Int, error) {
		for {
			p, err := rand.Prime(random, bits/2)
			if err != nil {
				return nil, fmt.Errorf("appsign: new key: generating a prime: %w", err)
			}
			// p ≡ 2 (mod 3) ⇔ gcd(3, p-1) = 1 for a prime p > 3.
			if new(big.Int).Mod(p, three).Int64() == 2 {
				return p, nil
			}
		}
	}
	for {
		p, err := prime()
		if err != nil {
			return nil, err
		}
		q, err := prime()
		if err != nil {
			return nil, err
		}
		if p.Cmp(q) == 0 {
			continue
		}
		n := new(big.Int).Mul(p, q)
		if n.BitLen() != bits { // rand.Prime sets the top two bits, so this holds; checked anyway
			continue
		}
		pm1 := new(big.Int).Sub(p, bigOne)
		qm1 := new(big.Int).Sub(q, bigOne)
		gcd := new(big.Int).GCD(nil, nil, pm1, qm1)
		lambda := new(big.Int).Div(new(big.Int).Mul(pm1, qm1), gcd)
		d := new(big.Int).ModInverse(three, lambda)
		if d == nil {
			continue // cannot happen given p, q ≡ 2 (mod 3)
		}
		key := &rsa.PrivateKey{
			PublicKey: rsa.PublicKey{N: n, E: KeyExponent},
			D:         d,
			Primes:    []*big.Int{p, q},
		}
		key.Precompute()
		if err := key.Validate(); err != nil {
			return nil, fmt.Errorf("appsign: new key: generated key is invalid: %w", err)
		}
		return key, nil
	}
}

// fipsOnlyRefuses explains up front what crypto/rsa would otherwise report
// deep inside a signature operation.
func fipsOnlyRefuses() error {
	if fips140.Enforced() {
		return errors.New("RSA public exponent 3 (SGX SIGSTRUCT) is not allowed in FIPS 140-only mode (GODEBUG=fips140=only)")
	}
	return nil
}

// checkPublicKey is the one rule for what may sign or verify: exactly
// KeyBits bits and exponent KeyExponent.
func checkPublicKey(pub *rsa.PublicKey) error {
	if pub == nil || pub.N == nil {
		return errors.New("no key")
	}
	if pub.E != KeyExponent {
		return fmt.Errorf("public exponent %d, want %d (SGX SIGSTRUCT)", pub.E, KeyExponent)
	}
	if pub.N.BitLen() != KeyBits {
		return fmt.Errorf("%d-bit modulus, want %d bits (SGX SIGSTRUCT)", pub.N.BitLen(), KeyBits)
	}
	if pub.N.Bit(0) == 0 {
		return errors.New("even modulus")
	}
	return nil
}

// KeyMRSIGNER returns MRSIGNER for a signing key: SHA-256 of the modulus
// as ModulusSize little-endian bytes, which is how SGX hashes the modulus
// field of SIGSTRUCT, so it matches SGX tooling for the same key.
func KeyMRSIGNER(pub *rsa.PublicKey) ([32]byte, error) {
	if err := checkPublicKey(pub); err != nil {
		return [32]byte{}, fmt.Errorf("appsign: mrsigner: %w", err)
	}
	var m [ModulusSize]byte
	pub.N.FillBytes(m[:])
	return mrsigner(m), nil
}

// mrsigner hashes a big-endian modulus in SGX's little-endian order.
func mrsigner(modulusBE [ModulusSize]byte) [32]byte {
	var le [ModulusSize]byte
	for i, b := range modulusBE {
		le[ModulusSize-1-i] = b
	}
	return sha256.Sum256(le[:])
}

// ParseKeyPEM reads a signing key from PEM: PKCS#1 ("RSA PRIVATE KEY", as
// sgx_sign and Gramine write) or PKCS#8 ("PRIVATE KEY", as OpenSSL 3
// writes), unencrypted, one block only. The key must be RSA-3072 with
// exponent 3 and pass crypto/rsa's consistency checks.
func ParseKeyPEM(data []byte) (*rsa.PrivateKey, error) {
	if len(data) > MaxKeySize {
		return nil, fmt.Errorf("appsign: key: %d bytes, more than %d", len(data), MaxKeySize)
	}
	block, rest := pem.Decode(data)
	if block == nil {
		return nil, errors.New("appsign: key: no PEM block")
	}
	if next, _ := pem.Decode(rest); next != nil {
		return nil, fmt.Errorf("appsign: key: more than one PEM block (second is %q); a key file holds one key", next.Type)
	}
	if _, ok := block.Headers["Proc-Type"]; ok {
		return nil, errors.New("appsign: key: encrypted PEM is not supported; decrypt it first (openssl rsa -in KEY -out PLAIN)")
	}
	var key *rsa.PrivateKey
	switch block.Type {
	case "RSA PRIVATE KEY":
		k, err := x509.ParsePKCS1PrivateKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("appsign: key: PKCS#1: %w", err)
		}
		key = k
	case "PRIVATE KEY":
		k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("appsign: key: PKCS#8: %w", err)
		}
		rk, ok := k.(*rsa.PrivateKey)
		if !ok {
			return nil, fmt.Errorf("appsign: key: PKCS#8 holds a %T, want an RSA key", k)
		}
		key = rk
	case "ENCRYPTED PRIVATE KEY":
		return nil, errors.New("appsign: key: encrypted PKCS#8 is not supported; decrypt it first (openssl pkcs8 -in KEY -out PLAIN)")
	default:
		return nil, fmt.Errorf("appsign: key: PEM block %q, want \"RSA PRIVATE KEY\" or \"PRIVATE KEY\"", block.Type)
	}
	if err := checkPublicKey(&key.PublicKey); err != nil {
		return nil, fmt.Errorf("appsign: key: %w", err)
	}
	key.Precompute()
	if err := key.Validate(); err != nil {
		return nil, fmt.Errorf("appsign: key: %w", err)
	}
	return key, nil
}

// MarshalKeyPEM encodes key as PKCS#1 PEM ("RSA PRIVATE KEY"), the form SGX
// tooling reads and writes.
func MarshalKeyPEM(key *rsa.PrivateKey) ([]byte, error) {
	if key == nil {
		return nil, errors.New("appsign: marshal key: no key")
	}
	if err := checkPublicKey(&key.PublicKey); err != nil {
		return nil, fmt.Errorf("appsign: marshal key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)}), nil
}

// ReadKeyFile reads and parses a key file (see ParseKeyPEM).
func ReadKeyFile(path string) (*rsa.PrivateKey, error) {
	data, err := readLimited(path, MaxKeySize)
	if err != nil {
		return nil, fmt.Errorf("appsign: reading key: %w", err)
	}
	return ParseKeyPEM(data)
}

// WriteKeyFile writes key to a new file at path with mode 0600. It never
// replaces an existing file: overwriting a signing key by mistake changes
// MRSIGNER for every future release and cannot be undone.
func WriteKeyFile(path string, key *rsa.PrivateKey) error {
	data, err := MarshalKeyPEM(key)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		if errors.Is(err, os.ErrExist) {
			return fmt.Errorf("appsign: writing key: %s already exists; refusing to overwrite a key", path)
		}
		return fmt.Errorf("appsign: writing key: %w", err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		os.Remove(path) // ours: created above with O_EXCL
		return fmt.Errorf("appsign: writing key: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		os.Remove(path)
		return fmt.Errorf("appsign: writing key: %w", err)
	}
	if err := f.Close(); err != nil {
		os.Remove(path)
		return fmt.Errorf("appsign: writing key: %w", err)
	}
	return nil
}

// readLimited reads a small file, failing instead of reading more than max
// bytes (a wrong path must not pull a large file into memory).
func readLimited(path string, max int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > max {
		return nil, fmt.Errorf("%s: more than %d bytes", path, max)
	}
	return data, nil
}
