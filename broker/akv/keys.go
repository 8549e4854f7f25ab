package akv

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"math/big"
	"regexp"
	"slices"
	"strings"
)

// Key types a vault creates. The -HSM kinds are accepted as Azure spells
// them (exportable keys are HSM keys in Azure); here every key is kept the
// same way, sealed in the broker's kv store, and reported with the kind it
// was created as.
var keyTypes = []string{"RSA", "RSA-HSM", "EC", "EC-HSM", "oct", "oct-HSM"}

// Key operations Azure defines.
var keyOperations = []string{"encrypt", "decrypt", "sign", "verify", "wrapKey", "unwrapKey", "import", "export"}

// keyNameRE is Azure's rule for key names.
var keyNameRE = regexp.MustCompile(`^[0-9A-Za-z-]{1,127}$`)

// keyVersionRE is the form of the versions this vault makes.
var keyVersionRE = regexp.MustCompile(`^[0-9a-f]{32}$`)

// errBadParameter marks a request whose parameters are refused (400).
var errBadParameter = errors.New("akv: bad parameter")

func badParam(format string, args ...any) error {
	return fmt.Errorf("%w: %s", errBadParameter, fmt.Sprintf(format, args...))
}

// keySpec is what a create request asks for, checked.
type keySpec struct {
	kty     string
	size    int    // RSA modulus bits or oct key bits
	crv     string // EC curve
	pubExp  int    // RSA public exponent (65537)
	keyOps  []string
	private []byte // filled by generate: PKCS#8 DER, or the oct bytes
}

func (s *keySpec) base() string { return strings.TrimSuffix(s.kty, "-HSM") }

// check validates and fills defaults as Azure does: RSA 2048 bits, EC
// P-256, oct 256 bits; default key_ops by type.
func (s *keySpec) check() error {
	if !slices.Contains(keyTypes, s.kty) {
		return badParam("kty %q: want one of %s", s.kty, strings.Join(keyTypes, ", "))
	}
	switch s.base() {
	case "RSA":
		if s.crv != "" {
			return badParam("crv is for EC keys, not %s", s.kty)
		}
		if s.size == 0 {
			s.size = 2048
		}
		if s.size != 2048 && s.size != 3072 && s.size != 4096 {
			return badParam("key_size %d: RSA keys are 2048, 3072 or 4096 bits", s.size)
		}
		if s.pubExp == 0 {
			s.pubExp = 65537
		}
		if s.pubExp != 65537 {
			return badParam("public_exponent %d: only 65537 is supported", s.pubExp)
		}
	case "EC":
		if s.size != 0 || s.pubExp != 0 {
			return badParam("key_size and public_exponent are not for EC keys")
		}
		if s.crv == "" {
			s.crv = "P-256"
		}
		if s.crv != "P-256" && s.crv != "P-384" && s.crv != "P-521" {
			return badParam("crv %q: want P-256, P-384 or P-521", s.crv)
		}
	case "oct":
		if s.crv != "" || s.pubExp != 0 {
			return badParam("crv and public_exponent are not for oct keys")
		}
		if s.size == 0 {
			s.size = 256
		}
		if s.size != 128 && s.size != 192 && s.size != 256 {
			return badParam("key_size %d: oct keys are 128, 192 or 256 bits", s.size)
		}
	}
	if s.keyOps == nil {
		switch s.base() {
		case "RSA":
			s.keyOps = []string{"encrypt", "decrypt", "sign", "verify", "wrapKey", "unwrapKey"}
		case "EC":
			s.keyOps = []string{"sign", "verify"}
		case "oct":
			s.keyOps = []string{"encrypt", "decrypt", "wrapKey", "unwrapKey"}
		}
	}
	for i, op := range s.keyOps {
		if !slices.Contains(keyOperations, op) {
			return badParam("key_ops: %q is not an operation (want %s)", op, strings.Join(keyOperations, ", "))
		}
		// Each operation once: a body of one repeated would make a record
		// larger than the sealed store holds.
		if slices.Contains(s.keyOps[:i], op) {
			return badParam("key_ops: %q is listed twice", op)
		}
	}
	return nil
}

// generate makes the key material from rnd.
func (s *keySpec) generate(rnd io.Reader) error {
	var err error
	switch s.base() {
	case "RSA":
		var k *rsa.PrivateKey
		if k, err = rsa.GenerateKey(rnd, s.size); err == nil {
			s.private, err = x509.MarshalPKCS8PrivateKey(k)
		}
	case "EC":
		var k *ecdsa.PrivateKey
		if k, err = ecdsa.GenerateKey(curve(s.crv), rnd); err == nil {
			s.private, err = x509.MarshalPKCS8PrivateKey(k)
		}
	case "oct":
		s.private = make([]byte, s.size/8)
		_, err = io.ReadFull(rnd, s.private)
	}
	if err != nil {
		return fmt.Errorf("akv: generating a %s key: %w", s.kty, err)
	}
	return nil
}

func curve(name string) elliptic.Curve {
	switch name {
	case "P-384":
		return elliptic.P384()
	case "P-521":
		return elliptic.P521()
	}
	return elliptic.P256()
}

// JSONWebKey is a key as the vault returns it: public parts only, except
// key_hsm in a release (the wrapped private key).
type JSONWebKey struct {
	Kid    string   `json:"kid"`
	Kty    string   `json:"kty"`
	KeyOps []string `json:"key_ops"`
	N      string   `json:"n,omitempty"`
	E      string   `json:"e,omitempty"`
	Crv    string   `json:"crv,omitempty"`
	X      string   `json:"x,omitempty"`
	Y      string   `json:"y,omitempty"`
	KeyHSM string   `json:"key_hsm,omitempty"`
}

// publicJWK returns the public JWK of a stored key.
func (r *keyRecord) publicJWK(vaultURL string) (JSONWebKey, error) {
	j := JSONWebKey{Kid: r.id(vaultURL), Kty: r.Kty, KeyOps: r.KeyOps}
	if strings.HasPrefix(r.Kty, "oct") {
		return j, nil // symmetric: nothing public to show
	}
	k, err := x509.ParsePKCS8PrivateKey(r.Private)
	if err != nil {
		return j, fmt.Errorf("akv: stored key %s: %w", r.Name, err)
	}
	enc := base64.RawURLEncoding.EncodeToString
	switch k := k.(type) {
	case *rsa.PrivateKey:
		j.N = enc(k.N.Bytes())
		j.E = enc(big.NewInt(int64(k.E)).Bytes())
	case *ecdsa.PrivateKey:
		pub, err := k.PublicKey.Bytes() // uncompressed: 0x04 ‖ X ‖ Y
		if err != nil {
			return j, fmt.Errorf("akv: stored key %s: %w", r.Name, err)
		}
		n := (len(pub) - 1) / 2
		j.Crv, j.X, j.Y = r.Crv, enc(pub[1:1+n]), enc(pub[1+n:])
	default:
		return j, fmt.Errorf("akv: stored key %s: %T", r.Name, k)
	}
	return j, nil
}
