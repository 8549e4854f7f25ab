package appsign

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
)

// Config is the signed enclave configuration, read from enclave.json:
//
//	{"product_id": 0, "svn": 0, "debug": false, "heap_mb": 256, "threads": 4}
//
// It is part of the enclave identity: Encode's bytes go into MRENCLAVE and
// under the signature, and ProductID, SVN and Debug are what the platform
// reports as ISVPRODID, ISVSVN and the DEBUG attribute.
type Config struct {
	// ProductID tells apart products signed with the same key (SGX
	// ISVPRODID); sealing to the signer is per product.
	ProductID uint16 `json:"product_id"`
	// SVN is the security version (SGX ISVSVN): raise it when a release
	// fixes a vulnerability, so sealed data and policies can refuse older
	// releases.
	SVN uint16 `json:"svn"`
	// Debug marks an enclave the host may inspect. Verifiers refuse debug
	// enclaves unless told otherwise.
	Debug bool `json:"debug"`
	// HeapMB is the enclave heap in MiB, MinHeapMB..MaxHeapMB.
	HeapMB uint32 `json:"heap_mb"`
	// Threads is the number of enclave threads (SGX TCS), MinThreads..MaxThreads.
	Threads uint32 `json:"threads"`
}

// Defaults for fields enclave.json leaves out (the same values as
// Gramine's sgx.enclave_size and sgx.max_threads defaults).
const (
	DefaultHeapMB  = 256
	DefaultThreads = 4
)

// DefaultConfig is the configuration of an app measured without one
// ("cloister measure APP" with neither --config nor --sig): product 0,
// SVN 0, debug true, DefaultHeapMB, DefaultThreads. It is a debug
// configuration on purpose: an app nobody configured is a development
// build, and verifiers refuse debug enclaves by default.
func DefaultConfig() Config {
	return Config{ProductID: 0, SVN: 0, Debug: true, HeapMB: DefaultHeapMB, Threads: DefaultThreads}
}

// ParseConfig reads enclave.json strictly: one JSON object; unknown,
// duplicate, case-mismatched and null fields are errors; numbers must be
// integers in range. "debug" is required, because neither value is a safe
// guess for a release; product_id and svn default to 0, heap_mb to
// DefaultHeapMB and threads to DefaultThreads. The result is validated.
func ParseConfig(data []byte) (Config, error) {
	if len(data) > MaxConfigSize {
		return Config{}, fmt.Errorf("appsign: config: %d bytes, more than %d", len(data), MaxConfigSize)
	}
	cfg, err := decodeConfig(data, true)
	if err != nil {
		return Config{}, fmt.Errorf("appsign: config: %w", err)
	}
	return cfg, nil
}

// decodeConfig reads a configuration object. With defaults (enclave.json),
// only "debug" is required; without (the copy inside a signature file,
// which Sign always writes in full), every field is.
func decodeConfig(data []byte, defaults bool) (Config, error) {
	cfg := Config{HeapMB: DefaultHeapMB, Threads: DefaultThreads}
	seen := map[string]bool{}
	err := decodeStrictObject(data, func(key string, raw json.RawMessage) error {
		var dst any
		switch key {
		case "product_id":
			dst = &cfg.ProductID
		case "svn":
			dst = &cfg.SVN
		case "debug":
			dst = &cfg.Debug
		case "heap_mb":
			dst = &cfg.HeapMB
		case "threads":
			dst = &cfg.Threads
		default:
			return errUnknownField
		}
		seen[key] = true
		return json.Unmarshal(raw, dst)
	})
	if err != nil {
		return Config{}, err
	}
	required := []string{"debug"}
	if !defaults {
		required = []string{"product_id", "svn", "debug", "heap_mb", "threads"}
	}
	for _, k := range required {
		if !seen[k] {
			return Config{}, fmt.Errorf("missing field %q", k)
		}
	}
	if err := cfg.validate(); err != nil {
		return Config{}, err
	}
	return cfg, nil
}

// Validate checks the bounds of every field. Sign, MeasureReader and
// ParseConfig call it, so an out-of-range configuration is never measured
// or signed.
func (c Config) Validate() error {
	if err := c.validate(); err != nil {
		return fmt.Errorf("appsign: config: %w", err)
	}
	return nil
}

func (c Config) validate() error {
	var errs []error
	if c.HeapMB < MinHeapMB || c.HeapMB > MaxHeapMB {
		errs = append(errs, fmt.Errorf("heap_mb %d: want %d..%d", c.HeapMB, MinHeapMB, MaxHeapMB))
	}
	if c.Threads < MinThreads || c.Threads > MaxThreads {
		errs = append(errs, fmt.Errorf("threads %d: want %d..%d", c.Threads, MinThreads, MaxThreads))
	}
	return errors.Join(errs...)
}

// Encoded configuration layout (version 1), little-endian like SGX
// structures. These bytes are measured into MRENCLAVE and signed; changing
// the layout means a new ConfigVersion and new MRENCLAVE values.
//
//	offset size field
//	0      4    magic "CLCF"
//	4      2    version (ConfigVersion)
//	6      2    product_id
//	8      2    svn
//	10     2    flags: bit 0 debug; other bits zero
//	12     4    heap_mb
//	16     4    threads
const (
	// ConfigMagic starts every encoded configuration, so the signed
	// message can never be mistaken for another structure.
	ConfigMagic = "CLCF"
	// ConfigVersion is the layout version written and measured.
	ConfigVersion = 1
	// ConfigSize is the length of Encode's output.
	ConfigSize = 20

	configFlagDebug = 1 << 0
)

// Encode returns the canonical binary form of c: the bytes measured into
// MRENCLAVE and signed (layout above). It does not validate c; Sign and
// MeasureReader do.
func (c Config) Encode() []byte {
	b := make([]byte, 0, ConfigSize)
	b = append(b, ConfigMagic...)
	b = binary.LittleEndian.AppendUint16(b, ConfigVersion)
	b = binary.LittleEndian.AppendUint16(b, c.ProductID)
	b = binary.LittleEndian.AppendUint16(b, c.SVN)
	var flags uint16
	if c.Debug {
		flags |= configFlagDebug
	}
	b = binary.LittleEndian.AppendUint16(b, flags)
	b = binary.LittleEndian.AppendUint32(b, c.HeapMB)
	b = binary.LittleEndian.AppendUint32(b, c.Threads)
	return b
}
