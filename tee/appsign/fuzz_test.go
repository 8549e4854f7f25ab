package appsign

import (
	"bytes"
	"encoding/json"
	"testing"
)

// FuzzParseSignature: no input panics; whatever parses re-encodes to a
// file that parses to the same value (one meaning per file). Verify is left
// out: an RSA-3072 verification per input slows the coverage-instrumented
// fuzzer about a thousandfold, and TestSignatureFileFlips already verifies
// every single-bit change of a real file.
func FuzzParseSignature(f *testing.F) {
	good, err := readSeed(sigFile)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add(bytes.Replace(good, []byte(`"exponent": 3`), []byte(`"exponent": 65537`), 1))
	f.Add(bytes.Replace(good, []byte(`"version": 1`), []byte(`"version": 2`), 1))
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"version": 1, "version": 1}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := ParseSignature(data)
		if err != nil {
			if s != nil {
				t.Fatal("error with a non-nil signature")
			}
			return
		}
		again, err := ParseSignature(s.Marshal())
		if err != nil {
			t.Fatalf("re-encoded signature does not parse: %v", err)
		}
		if *again != *s {
			t.Fatalf("round trip changed the signature:\n%+v\n%+v", s, again)
		}
		_ = s.MRSIGNER()
	})
}

// FuzzParseConfig: no input panics; what parses is in range and reads
// back the same from its own JSON.
func FuzzParseConfig(f *testing.F) {
	good, err := readSeed(configFile)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add([]byte(`{"debug": true}`))
	f.Add([]byte(`{"debug": true, "heap_mb": 0}`))
	f.Add([]byte(`{"debug": true, "svn": 1, "svn": 2}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := ParseConfig(data)
		if err != nil {
			return
		}
		if err := cfg.Validate(); err != nil {
			t.Fatalf("parsed config out of range: %v", err)
		}
		if len(cfg.Encode()) != ConfigSize {
			t.Fatal("encoding size")
		}
		out, err := json.Marshal(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if again, err := ParseConfig(out); err != nil || again != cfg {
			t.Fatalf("%s: read back %+v, %v; want %+v", out, again, err, cfg)
		}
	})
}

func readSeed(name string) ([]byte, error) {
	return readLimited(name, MaxSignatureSize)
}
