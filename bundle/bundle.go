// Package bundle is the encrypted app bundle format (`cloister sign
// --encrypt`): a loader executable with the app's ciphertext and the
// loader's configuration appended, so that the one file the host
// measures and launches is the loader, the ciphertext and the
// configuration together. Change any byte and the measurement changes,
// and the key broker's policy (which pins the bundle's measurement) no
// longer releases the key.
//
// Layout (all integers little-endian):
//
//	loader executable (ELF; trailing data does not change how it runs)
//	ciphertext        AES-256-GCM of the app under a fresh key (tag last)
//	config            JSON (Config)
//	u64 config length
//	u64 ciphertext length
//	"CLSBNDL1"        magic, the file's last 8 bytes
//
// The package is pure: it parses and builds bytes; the loader (cmd
// cloister) does the I/O, and the key comes from the broker.
package bundle

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
)

// Magic ends every bundle.
const Magic = "CLSBNDL1"

// Sizes and caps.
const (
	// TrailerSize is the fixed tail: two u64 lengths and the magic.
	TrailerSize = 8 + 8 + len(Magic)
	// KeySize is the AES-256 key size.
	KeySize = 32
	// NonceSize is the AES-GCM nonce size.
	NonceSize = 12
	// MaxConfig caps the configuration (trust roots are a few KiB).
	MaxConfig = 64 << 10
	// MaxApp caps the app (ciphertext) size: 1 GiB.
	MaxApp = 1 << 30
)

// Version is the Config version this package writes and reads.
const Version = 1

// Config is what the loader needs; it is inside the measured file, so
// the host cannot change it without changing the measurement.
type Config struct {
	Version int `json:"version"`
	// BrokerURL is the key broker, https://HOST:PORT.
	BrokerURL string `json:"broker_url"`
	// BrokerMRENCLAVE and BrokerMRSIGNER (hex) pin the broker's RA-TLS
	// identity; at least one is required.
	BrokerMRENCLAVE []string `json:"broker_mrenclave,omitempty"`
	BrokerMRSIGNER  []string `json:"broker_mrsigner,omitempty"`
	// BrokerAllowDebug accepts a debug broker enclave (development).
	BrokerAllowDebug bool `json:"broker_allow_debug,omitempty"`
	// BrokerSkipTCB verifies the broker's evidence without collateral
	// (tcb_status NotEvaluated accepted).
	BrokerSkipTCB bool `json:"broker_skip_tcb,omitempty"`
	// TrustRootsPEM replaces Intel's roots for the broker's evidence
	// (the simulator root, by name).
	TrustRootsPEM string `json:"trust_roots_pem,omitempty"`
	// Resource is the broker resource holding the key, repo/type/tag.
	Resource string `json:"resource"`
	// Nonce is the AES-GCM nonce (hex).
	Nonce string `json:"nonce"`
	// CiphertextSHA256 is the ciphertext's digest (hex), checked before
	// the key is asked for.
	CiphertextSHA256 string `json:"ciphertext_sha256"`
}

// ErrNotBundle is returned by Parse for a file without the bundle tail.
var ErrNotBundle = errors.New("bundle: not an encrypted app bundle (no " + Magic + " tail)")

// validate checks c.
func (c *Config) validate() error {
	switch {
	case c.Version != Version:
		return fmt.Errorf("bundle: config: version %d, want %d", c.Version, Version)
	case !strings.HasPrefix(c.BrokerURL, "https://"):
		return fmt.Errorf("bundle: config: broker_url %q: want https://HOST:PORT", c.BrokerURL)
	case len(c.BrokerMRENCLAVE) == 0 && len(c.BrokerMRSIGNER) == 0:
		return errors.New("bundle: config: no broker_mrenclave or broker_mrsigner: the broker must be pinned")
	case c.Resource == "":
		return errors.New("bundle: config: no resource")
	}
	for _, h := range append(append([]string(nil), c.BrokerMRENCLAVE...), c.BrokerMRSIGNER...) {
		if b, err := hex.DecodeString(h); err != nil || len(b) != 32 {
			return fmt.Errorf("bundle: config: broker measurement %q: want 64 hex digits", h)
		}
	}
	if n, err := hex.DecodeString(c.Nonce); err != nil || len(n) != NonceSize {
		return fmt.Errorf("bundle: config: nonce %q: want %d bytes in hex", c.Nonce, NonceSize)
	}
	if d, err := hex.DecodeString(c.CiphertextSHA256); err != nil || len(d) != sha256.Size {
		return fmt.Errorf("bundle: config: ciphertext_sha256 %q: want 32 bytes in hex", c.CiphertextSHA256)
	}
	return nil
}

// Bundle is a parsed bundle: views into the file's bytes.
type Bundle struct {
	// Config is the decoded configuration.
	Config Config
	// Ciphertext is the encrypted app.
	Ciphertext []byte
	// LoaderSize is the length of the loader executable at the start.
	LoaderSize int
}

// Parse reads a bundle from its bytes: the tail, the lengths (within the
// file and the caps), strict JSON config (no unknown fields, nothing after
// it) and the ciphertext digest. It decrypts nothing.
func Parse(file []byte) (*Bundle, error) {
	if len(file) < TrailerSize || string(file[len(file)-len(Magic):]) != Magic {
		return nil, ErrNotBundle
	}
	t := file[len(file)-TrailerSize:]
	cfgLen := binary.LittleEndian.Uint64(t[0:8])
	ctLen := binary.LittleEndian.Uint64(t[8:16])
	rest := uint64(len(file) - TrailerSize)
	if cfgLen == 0 || cfgLen > MaxConfig || cfgLen > rest {
		return nil, fmt.Errorf("bundle: config length %d: want 1..%d within the file", cfgLen, MaxConfig)
	}
	rest -= cfgLen
	if ctLen < 16 || ctLen > MaxApp+16 || ctLen > rest {
		return nil, fmt.Errorf("bundle: ciphertext length %d: want 16..%d within the file", ctLen, MaxApp+16)
	}
	b := &Bundle{LoaderSize: int(rest - ctLen)}
	b.Ciphertext = file[b.LoaderSize : b.LoaderSize+int(ctLen)]
	raw := file[int(rest) : int(rest)+int(cfgLen)]
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&b.Config); err != nil {
		return nil, fmt.Errorf("bundle: config: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("bundle: config: data after the JSON object")
	}
	if err := b.Config.validate(); err != nil {
		return nil, err
	}
	sum := sha256.Sum256(b.Ciphertext)
	if hex.EncodeToString(sum[:]) != b.Config.CiphertextSHA256 {
		return nil, errors.New("bundle: the ciphertext does not match its digest in the config")
	}
	return b, nil
}

// aad binds the ciphertext to the format and to the resource its key is
// released under.
func aad(resource string) []byte { return []byte("cloister bundle v1\x00" + resource) }

// Build encrypts app under key (KeySize bytes) with nonce (NonceSize
// bytes, fresh for the key) and returns loader ‖ ciphertext ‖ config ‖
// trailer. cfg's Version, Nonce and CiphertextSHA256 are filled in.
func Build(loader, app, key, nonce []byte, cfg Config) ([]byte, error) {
	if len(key) != KeySize || len(nonce) != NonceSize {
		return nil, fmt.Errorf("bundle: build: key of %d bytes and nonce of %d, want %d and %d", len(key), len(nonce), KeySize, NonceSize)
	}
	if len(app) == 0 || len(app) > MaxApp {
		return nil, fmt.Errorf("bundle: build: app of %d bytes, want 1..%d", len(app), MaxApp)
	}
	if _, err := Parse(loader); err == nil {
		return nil, errors.New("bundle: build: the loader is itself a bundle")
	}
	gcm, err := newGCM(key)
	if err != nil {
		return nil, err
	}
	ct := gcm.Seal(nil, nonce, app, aad(cfg.Resource))
	sum := sha256.Sum256(ct)
	cfg.Version, cfg.Nonce, cfg.CiphertextSHA256 = Version, hex.EncodeToString(nonce), hex.EncodeToString(sum[:])
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	cj, err := json.Marshal(cfg)
	if err != nil {
		return nil, fmt.Errorf("bundle: build: %w", err)
	}
	out := make([]byte, 0, len(loader)+len(ct)+len(cj)+TrailerSize)
	out = append(append(append(out, loader...), ct...), cj...)
	out = binary.LittleEndian.AppendUint64(out, uint64(len(cj)))
	out = binary.LittleEndian.AppendUint64(out, uint64(len(ct)))
	return append(out, Magic...), nil
}

// Decrypt opens the app with key; a wrong key or any changed byte of the
// ciphertext, nonce or resource fails.
func (b *Bundle) Decrypt(key []byte) ([]byte, error) {
	if len(key) != KeySize {
		return nil, fmt.Errorf("bundle: the key is %d bytes, want %d", len(key), KeySize)
	}
	gcm, err := newGCM(key)
	if err != nil {
		return nil, err
	}
	nonce, _ := hex.DecodeString(b.Config.Nonce)
	app, err := gcm.Open(nil, nonce, b.Ciphertext, aad(b.Config.Resource))
	if err != nil {
		return nil, errors.New("bundle: the app does not decrypt with the released key (tampered bundle or wrong key)")
	}
	return app, nil
}

func newGCM(key []byte) (cipher.AEAD, error) {
	blk, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("bundle: %w", err)
	}
	return cipher.NewGCM(blk)
}
