package appsign

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
)

// MeasurementLabel starts every MRENCLAVE preimage. Its version changes
// whenever the definition in MeasureReader does, so measurements under two
// definitions can never be equal by construction.
const MeasurementLabel = "CLOISTER-MRENCLAVE-v1\x00"

// MeasureReader computes MRENCLAVE, the identity of a Cloister enclave app:
//
//	MRENCLAVE = SHA-256( "CLOISTER-MRENCLAVE-v1\x00"   (22 bytes, NUL included)
//	                   ‖ u64le(len(binary))            (8 bytes)
//	                   ‖ SHA-256(binary)               (32 bytes)
//	                   ‖ Config.Encode() )             (ConfigSize = 20 bytes)
//
// The binary is hashed on its own first, so it is read exactly once as a
// stream (never held in memory, any size) and its length is simply counted
// on the way; the outer hash then covers a fixed 82-byte preimage. The
// length is redundant with SHA-256's own padding but costs nothing and keeps
// the preimage self-describing. The configuration is inside the measurement,
// as SGX measures an enclave's layout (heap, threads) with its code, so two
// enclaves from one binary with different limits or debug flags have
// different MRENCLAVEs; product ID and SVN are inside too, so the signed
// MRENCLAVE also pins them.
//
// cfg must be valid; an empty binary is an error (a wrong path or a failed
// build, never an app).
func MeasureReader(r io.Reader, cfg Config) ([32]byte, error) {
	if err := cfg.Validate(); err != nil {
		return [32]byte{}, err
	}
	h := sha256.New()
	n, err := io.Copy(h, r)
	if err != nil {
		return [32]byte{}, fmt.Errorf("appsign: measure: reading the binary: %w", err)
	}
	if n == 0 {
		return [32]byte{}, errors.New("appsign: measure: empty binary")
	}
	var inner [32]byte
	h.Sum(inner[:0])
	return measurement(uint64(n), inner, cfg), nil
}

// measurement is the outer hash of MRENCLAVE, given the binary's length
// and SHA-256.
func measurement(length uint64, binaryHash [32]byte, cfg Config) [32]byte {
	pre := make([]byte, 0, len(MeasurementLabel)+8+32+ConfigSize)
	pre = append(pre, MeasurementLabel...)
	pre = binary.LittleEndian.AppendUint64(pre, length)
	pre = append(pre, binaryHash[:]...)
	pre = append(pre, cfg.Encode()...)
	return sha256.Sum256(pre)
}

// MeasureFile is MeasureReader over the file at path. Only regular files
// are measured: a device or FIFO could stream forever, and a directory is
// a mistake.
func MeasureFile(path string, cfg Config) ([32]byte, error) {
	f, err := OpenBinary(path)
	if err != nil {
		return [32]byte{}, err
	}
	defer f.Close()
	return MeasureReader(f, cfg)
}

// OpenBinary opens an enclave binary for measuring or signing, refusing
// anything but a regular file (see MeasureFile). The caller closes it.
func OpenBinary(path string) (*os.File, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("appsign: opening the binary: %w", err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("appsign: opening the binary: %w", err)
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("appsign: opening the binary: %s is not a regular file (%s)", path, fi.Mode().Type())
	}
	return f, nil
}
