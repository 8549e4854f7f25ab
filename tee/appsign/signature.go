package appsign

import (
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
)

// SignatureVersion is the version of the signature file format written by
// Sign and the only one ParseSignature reads.
const SignatureVersion = 1

// ErrMeasurementMismatch is returned (wrapped) by Check when the binary is
// not the one the signature covers: callers tell "wrong or modified
// binary" from a broken signature file.
var ErrMeasurementMismatch = errors.New("binary does not match the signed MRENCLAVE")

// Signature is an app's signature file (APP.sig), the Cloister analog of
// SGX SIGSTRUCT: the configuration and MRENCLAVE, signed with an RSA-3072,
// exponent-3 key whose public half it carries. The file is JSON:
//
//	{
//	  "version": 1,
//	  "config": {"product_id": 0, "svn": 0, "debug": false, "heap_mb": 256, "threads": 4},
//	  "mrenclave": "<64 hex>",
//	  "modulus": "<768 hex, big-endian>",
//	  "exponent": 3,
//	  "signature": "<768 hex, big-endian, RSASSA-PKCS1-v1_5 with SHA-256>"
//	}
//
// Hex is lowercase. The signature covers SignedMessage(Config, MRENCLAVE).
// JSON rather than a binary SIGSTRUCT because the file is read by people
// and tools; the values under the signature are the fixed binary encodings,
// never the JSON text.
//
// SAFETY: a Signature from ParseSignature is only well-formed. Trust its
// fields after Verify returns nil, and trust that it belongs to a binary
// after Check returns nil for it.
type Signature struct {
	// Config is the signed enclave configuration.
	Config Config
	// MRENCLAVE is the signed measurement (see MeasureReader).
	MRENCLAVE [32]byte
	// Modulus is the signer's RSA modulus, big-endian.
	Modulus [ModulusSize]byte
	// Exponent is the signer's public exponent; Verify requires KeyExponent.
	Exponent int
	// RSASignature is the RSASSA-PKCS1-v1_5 SHA-256 signature, big-endian.
	RSASignature [ModulusSize]byte
}

// SignedMessage returns the bytes a signature covers: Config.Encode() ‖
// MRENCLAVE. It is the one definition used by Sign, Verify and the tests.
// The configuration's magic and version start the message, which keeps it
// apart from anything else such a key might sign.
func SignedMessage(cfg Config, mrenclave [32]byte) []byte {
	return append(cfg.Encode(), mrenclave[:]...)
}

// Sign measures the binary read from r with cfg and signs the result with
// key, which must be RSA-3072 with exponent 3. PKCS#1 v1.5 signing is
// deterministic, so the same key, binary and configuration always give the
// same file. The new signature is verified before it is returned, so a
// faulty signing computation never reaches a file.
func Sign(key *rsa.PrivateKey, r io.Reader, cfg Config) (*Signature, error) {
	if key == nil {
		return nil, errors.New("appsign: sign: no key")
	}
	if err := checkPublicKey(&key.PublicKey); err != nil {
		return nil, fmt.Errorf("appsign: sign: key: %w", err)
	}
	if err := fipsOnlyRefuses(); err != nil {
		return nil, fmt.Errorf("appsign: sign: %w", err)
	}
	mr, err := MeasureReader(r, cfg)
	if err != nil {
		return nil, err
	}
	digest := sha256.Sum256(SignedMessage(cfg, mr))
	sig, err := rsa.SignPKCS1v15(nil, key, crypto.SHA256, digest[:])
	if err != nil {
		return nil, fmt.Errorf("appsign: sign: %w", err)
	}
	s := &Signature{Config: cfg, MRENCLAVE: mr, Exponent: key.E}
	key.N.FillBytes(s.Modulus[:])
	if len(sig) != ModulusSize {
		return nil, fmt.Errorf("appsign: sign: signature is %d bytes, want %d", len(sig), ModulusSize)
	}
	copy(s.RSASignature[:], sig)
	if err := s.Verify(); err != nil {
		return nil, fmt.Errorf("appsign: sign: self-check of the new signature: %w", err)
	}
	return s, nil
}

// Verify checks that the signer's key is RSA-3072 with exponent 3 and that
// RSASignature is its valid signature over SignedMessage(Config,
// MRENCLAVE). It does not look at any binary; Check does.
//
// Exponent 3 is safe here because crypto/rsa verifies PKCS#1 v1.5 by
// rebuilding the whole expected encoding and comparing it, not by parsing
// the decrypted block (the lax parsing that made e=3 forgeries possible).
func (s *Signature) Verify() error {
	pub := &rsa.PublicKey{N: new(big.Int).SetBytes(s.Modulus[:]), E: s.Exponent}
	if err := checkPublicKey(pub); err != nil {
		return fmt.Errorf("appsign: verify: key: %w", err)
	}
	if err := s.Config.validate(); err != nil {
		return fmt.Errorf("appsign: verify: config: %w", err)
	}
	if err := fipsOnlyRefuses(); err != nil {
		return fmt.Errorf("appsign: verify: %w", err)
	}
	digest := sha256.Sum256(SignedMessage(s.Config, s.MRENCLAVE))
	if err := rsa.VerifyPKCS1v15(pub, crypto.SHA256, digest[:], s.RSASignature[:]); err != nil {
		return fmt.Errorf("appsign: verify: bad signature over the config and MRENCLAVE: %w", err)
	}
	return nil
}

// Check measures the binary read from r with the signed Config and
// compares the result with the signed MRENCLAVE; a difference is
// ErrMeasurementMismatch. Check does not verify the signature: call Verify
// first. The comparison is not constant-time; both values are public.
func (s *Signature) Check(r io.Reader) error {
	mr, err := MeasureReader(r, s.Config)
	if err != nil {
		return err // already "appsign: measure: ..."
	}
	if mr != s.MRENCLAVE {
		return fmt.Errorf("appsign: check: %w: the binary measures %x, the signature is for %x",
			ErrMeasurementMismatch, mr, s.MRENCLAVE)
	}
	return nil
}

// MRSIGNER returns SHA-256 of the signer's modulus in little-endian order,
// as SGX computes MRSIGNER from SIGSTRUCT. It means "this signer" only
// after Verify returns nil.
func (s *Signature) MRSIGNER() [32]byte {
	return mrsigner(s.Modulus)
}

// signatureFile is the JSON form of Signature, in the order written.
type signatureFile struct {
	Version   int    `json:"version"`
	Config    Config `json:"config"`
	MRENCLAVE string `json:"mrenclave"`
	Modulus   string `json:"modulus"`
	Exponent  int    `json:"exponent"`
	Signature string `json:"signature"`
}

// Marshal returns the signature file: indented JSON with a final newline,
// the same bytes for the same Signature.
func (s *Signature) Marshal() []byte {
	f := signatureFile{
		Version:   SignatureVersion,
		Config:    s.Config,
		MRENCLAVE: hex.EncodeToString(s.MRENCLAVE[:]),
		Modulus:   hex.EncodeToString(s.Modulus[:]),
		Exponent:  s.Exponent,
		Signature: hex.EncodeToString(s.RSASignature[:]),
	}
	out, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		// Unreachable: the struct holds only strings, ints and bools.
		return nil
	}
	return append(out, '\n')
}

// ParseSignature reads a signature file strictly: one JSON object with
// exactly the documented fields (unknown, duplicate, case-mismatched and
// null fields rejected), version SignatureVersion, a complete and in-range
// configuration, lowercase hex of exactly the right length, and a positive
// exponent. It checks format only; Verify checks the key and the signature.
func ParseSignature(data []byte) (*Signature, error) {
	if len(data) > MaxSignatureSize {
		return nil, fmt.Errorf("appsign: signature file: %d bytes, more than %d", len(data), MaxSignatureSize)
	}
	var s Signature
	seen := map[string]bool{}
	err := decodeStrictObject(data, func(key string, raw json.RawMessage) error {
		seen[key] = true
		switch key {
		case "version":
			var v int
			if err := json.Unmarshal(raw, &v); err != nil {
				return err
			}
			if v != SignatureVersion {
				return fmt.Errorf("version %d not supported (want %d)", v, SignatureVersion)
			}
			return nil
		case "config":
			cfg, err := decodeConfig(raw, false)
			if err != nil {
				return err
			}
			s.Config = cfg
			return nil
		case "mrenclave":
			return decodeHex(raw, s.MRENCLAVE[:])
		case "modulus":
			return decodeHex(raw, s.Modulus[:])
		case "exponent":
			if err := json.Unmarshal(raw, &s.Exponent); err != nil {
				return err
			}
			if s.Exponent <= 0 {
				return fmt.Errorf("%d is not a public exponent", s.Exponent)
			}
			return nil
		case "signature":
			return decodeHex(raw, s.RSASignature[:])
		}
		return errUnknownField
	})
	if err != nil {
		return nil, fmt.Errorf("appsign: signature file: %w", err)
	}
	for _, k := range []string{"version", "config", "mrenclave", "modulus", "exponent", "signature"} {
		if !seen[k] {
			return nil, fmt.Errorf("appsign: signature file: missing field %q", k)
		}
	}
	return &s, nil
}

// decodeHex reads a JSON string of lowercase hex that fills dst exactly.
// Only the canonical spelling is accepted, so one value has one file form.
func decodeHex(raw json.RawMessage, dst []byte) error {
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return err
	}
	if len(s) != 2*len(dst) {
		return fmt.Errorf("%d hex digits, want %d (%d bytes)", len(s), 2*len(dst), len(dst))
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return fmt.Errorf("not lowercase hex at offset %d", i)
		}
	}
	_, err := hex.Decode(dst, []byte(s))
	return err
}

// ReadSignatureFile reads and parses a signature file (see ParseSignature).
func ReadSignatureFile(path string) (*Signature, error) {
	data, err := readLimited(path, MaxSignatureSize)
	if err != nil {
		return nil, fmt.Errorf("appsign: reading signature: %w", err)
	}
	return ParseSignature(data)
}

// ReadConfigFile reads and parses enclave.json (see ParseConfig).
func ReadConfigFile(path string) (Config, error) {
	data, err := readLimited(path, MaxConfigSize)
	if err != nil {
		return Config{}, fmt.Errorf("appsign: reading config: %w", err)
	}
	return ParseConfig(data)
}
