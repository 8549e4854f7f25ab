package appsign

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/iotest"
)

// independentMRENCLAVE builds the preimage straight from the documented
// definition, without the package's helpers.
func independentMRENCLAVE(bin []byte, cfg Config) [32]byte {
	var pre bytes.Buffer
	pre.WriteString("CLOISTER-MRENCLAVE-v1\x00")
	var n [8]byte
	binary.LittleEndian.PutUint64(n[:], uint64(len(bin)))
	pre.Write(n[:])
	inner := sha256.Sum256(bin)
	pre.Write(inner[:])
	pre.Write(cfg.Encode())
	if pre.Len() != 82 {
		panic("preimage is not 82 bytes")
	}
	return sha256.Sum256(pre.Bytes())
}

func TestMeasureGolden(t *testing.T) {
	tests := []struct {
		name string
		bin  []byte
		cfg  Config
		want string // frozen (also computed with Python hashlib): a change here changes every app's identity
	}{
		{"hello default", []byte("hello, enclave\n"), DefaultConfig(), "c6211749c5bd8d06f92cdaadb0f363704d9f834f458e700b9a3b1c11b9d236d7"},
		{"app.bin", readFile(t, appFile), testConfig, "437b0358fcebeee2e4672a2577c28eea5f4c050060fa0f4014e89e89c0ed43bb"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := MeasureReader(bytes.NewReader(tt.bin), tt.cfg)
			if err != nil {
				t.Fatal(err)
			}
			if want := independentMRENCLAVE(tt.bin, tt.cfg); got != want {
				t.Fatalf("MeasureReader = %x, independent computation = %x", got, want)
			}
			if tt.want != "" && hex.EncodeToString(got[:]) != tt.want {
				t.Fatalf("MeasureReader = %x, frozen value %s", got, tt.want)
			}
		})
	}
}

// Reads in odd small pieces give the same result as one read: the
// measurement streams and does not depend on how the reader splits data.
func TestMeasureStreams(t *testing.T) {
	bin := bytes.Repeat([]byte("0123456789abcdef-cloister"), 40000) // ~1 MB
	want := independentMRENCLAVE(bin, testConfig)
	for name, r := range map[string]io.Reader{
		"one byte": iotest.OneByteReader(bytes.NewReader(bin[:4099])),
		"half":     iotest.HalfReader(bytes.NewReader(bin)),
		"data+EOF": iotest.DataErrReader(bytes.NewReader(bin)),
	} {
		got, err := MeasureReader(r, testConfig)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		w := want
		if name == "one byte" {
			w = independentMRENCLAVE(bin[:4099], testConfig)
		}
		if got != w {
			t.Errorf("%s: %x, want %x", name, got, w)
		}
	}
}

func TestMeasureFile(t *testing.T) {
	bin := readFile(t, appFile)
	got, err := MeasureFile(appFile, testConfig)
	if err != nil {
		t.Fatal(err)
	}
	if want := independentMRENCLAVE(bin, testConfig); got != want {
		t.Fatalf("MeasureFile = %x, want %x", got, want)
	}
}

func TestMeasureErrors(t *testing.T) {
	dir := t.TempDir()
	readErr := errors.New("disk on fire")
	tests := []struct {
		name    string
		measure func() ([32]byte, error)
		wantErr string
		wantIs  error
	}{
		{"empty", func() ([32]byte, error) { return MeasureReader(strings.NewReader(""), testConfig) }, "appsign: measure: empty binary", nil},
		{"read error", func() ([32]byte, error) {
			return MeasureReader(io.MultiReader(strings.NewReader("abc"), iotest.ErrReader(readErr)), testConfig)
		}, "appsign: measure: reading the binary", readErr},
		{"bad config", func() ([32]byte, error) { return MeasureReader(strings.NewReader("x"), Config{Debug: true}) }, "appsign: config: heap_mb 0", nil},
		{"directory", func() ([32]byte, error) { return MeasureFile(dir, testConfig) }, "not a regular file", nil},
		{"missing", func() ([32]byte, error) { return MeasureFile(filepath.Join(dir, "nope"), testConfig) }, "appsign: opening the binary", os.ErrNotExist},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.measure()
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("got %x, %v; want error containing %q", got, err, tt.wantErr)
			}
			if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
				t.Fatalf("error %v does not wrap %v", err, tt.wantIs)
			}
		})
	}
}

// Each input of the definition changes MRENCLAVE: a byte of the binary,
// its length, and every configuration field.
func TestMeasureSensitivity(t *testing.T) {
	bin := readFile(t, appFile)
	base, err := MeasureReader(bytes.NewReader(bin), testConfig)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[[32]byte]string{base: "base"}
	add := func(what string, b []byte, cfg Config) {
		t.Helper()
		m, err := MeasureReader(bytes.NewReader(b), cfg)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if prev, dup := seen[m]; dup {
			t.Errorf("%s measures like %s", what, prev)
		}
		seen[m] = what
	}
	for i := range bin {
		b := bytes.Clone(bin)
		b[i] ^= 0x01
		add(fmt.Sprintf("flip byte %d", i), b, testConfig)
	}
	add("one byte longer", append(bytes.Clone(bin), 0), testConfig)
	add("one byte shorter", bin[:len(bin)-1], testConfig)
	c := testConfig
	c.ProductID++
	add("product_id", bin, c)
	c = testConfig
	c.SVN++
	add("svn", bin, c)
	c = testConfig
	c.Debug = true
	add("debug", bin, c)
	c = testConfig
	c.HeapMB++
	add("heap_mb", bin, c)
	c = testConfig
	c.Threads++
	add("threads", bin, c)
}
