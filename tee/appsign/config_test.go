package appsign

import (
	"bytes"
	"encoding/hex"
	"strings"
	"testing"
)

func TestParseConfig(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    Config
		wantErr string // "" = success
	}{
		{"full", `{"product_id": 7, "svn": 3, "debug": false, "heap_mb": 128, "threads": 8}`, testConfig, ""},
		{"any order", `{"threads": 8, "heap_mb": 128, "debug": false, "svn": 3, "product_id": 7}`, testConfig, ""},
		{"defaults", `{"debug": true}`, Config{Debug: true, HeapMB: DefaultHeapMB, Threads: DefaultThreads}, ""},
		{"bounds low", `{"debug": false, "heap_mb": 1, "threads": 1}`, Config{HeapMB: 1, Threads: 1}, ""},
		{"bounds high", `{"product_id": 65535, "svn": 65535, "debug": false, "heap_mb": 65536, "threads": 4096}`,
			Config{ProductID: 65535, SVN: 65535, HeapMB: 65536, Threads: 4096}, ""},
		{"whitespace", " \n{ \"debug\" : true }\n\n", Config{Debug: true, HeapMB: DefaultHeapMB, Threads: DefaultThreads}, ""},

		{"debug missing", `{"svn": 1}`, Config{}, `missing field "debug"`},
		{"empty object", `{}`, Config{}, `missing field "debug"`},
		{"unknown field", `{"debug": true, "heap": 1}`, Config{}, `unknown field "heap"`},
		{"case folded key", `{"Debug": true}`, Config{}, `unknown field "Debug"`},
		{"duplicate", `{"debug": true, "svn": 1, "svn": 2}`, Config{}, `duplicate field "svn"`},
		{"null", `{"debug": true, "svn": null}`, Config{}, `"svn": null`},
		{"negative", `{"debug": true, "svn": -1}`, Config{}, `field "svn"`},
		{"overflow u16", `{"debug": true, "product_id": 65536}`, Config{}, `field "product_id"`},
		{"overflow u32", `{"debug": true, "heap_mb": 4294967296}`, Config{}, `field "heap_mb"`},
		{"fraction", `{"debug": true, "svn": 1.5}`, Config{}, `field "svn"`},
		{"exponent form", `{"debug": true, "svn": 1e1}`, Config{}, `field "svn"`},
		{"string number", `{"debug": true, "svn": "1"}`, Config{}, `field "svn"`},
		{"number bool", `{"debug": 1}`, Config{}, `field "debug"`},
		{"heap zero", `{"debug": true, "heap_mb": 0}`, Config{}, "heap_mb 0: want 1..65536"},
		{"heap too big", `{"debug": true, "heap_mb": 65537}`, Config{}, "heap_mb 65537"},
		{"threads zero", `{"debug": true, "threads": 0}`, Config{}, "threads 0: want 1..4096"},
		{"threads too many", `{"debug": true, "threads": 4097}`, Config{}, "threads 4097"},
		{"both bounds", `{"debug": true, "threads": 0, "heap_mb": 0}`, Config{}, "heap_mb 0: want 1..65536\nthreads 0"},
		{"trailing data", `{"debug": true} {}`, Config{}, "trailing data"},
		{"trailing junk", `{"debug": true}x`, Config{}, "trailing data"},
		{"array", `[{"debug": true}]`, Config{}, "not a JSON object"},
		{"empty", ``, Config{}, "not a JSON object"},
		{"unterminated", `{"debug": true`, Config{}, "unterminated"},
		{"nested", `{"debug": {"x": 1}}`, Config{}, `field "debug"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseConfig([]byte(tt.in))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseConfig(%s) = %+v, %v; want error containing %q", tt.in, got, err, tt.wantErr)
				}
				if !strings.HasPrefix(err.Error(), "appsign: config: ") {
					t.Errorf("error %q lacks the package prefix", err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("ParseConfig(%s) = %+v, %v; want %+v", tt.in, got, err, tt.want)
			}
		})
	}
}

func TestParseConfigTooLarge(t *testing.T) {
	in := `{"debug": true}` + strings.Repeat(" ", MaxConfigSize)
	if _, err := ParseConfig([]byte(in)); err == nil || !strings.Contains(err.Error(), "more than") {
		t.Fatalf("ParseConfig(%d bytes) err = %v, want a size error", len(in), err)
	}
}

func TestReadConfigFile(t *testing.T) {
	got, err := ReadConfigFile(configFile)
	if err != nil || got != testConfig {
		t.Fatalf("ReadConfigFile = %+v, %v; want %+v", got, err, testConfig)
	}
}

func TestDefaultConfig(t *testing.T) {
	want := Config{ProductID: 0, SVN: 0, Debug: true, HeapMB: 256, Threads: 4}
	if got := DefaultConfig(); got != want {
		t.Fatalf("DefaultConfig() = %+v, want %+v", got, want)
	}
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatal(err)
	}
}

// TestConfigEncodeGolden freezes the encoded layout: these bytes are
// measured and signed, so any change breaks every MRENCLAVE.
func TestConfigEncodeGolden(t *testing.T) {
	tests := []struct {
		cfg  Config
		want string
	}{
		{Config{ProductID: 0x0102, SVN: 0x0304, Debug: true, HeapMB: 0x00010000, Threads: 0x0203},
			"434c4346" + // magic "CLCF"
				"0100" + // version 1
				"0201" + // product_id 0x0102
				"0403" + // svn 0x0304
				"0100" + // flags: debug
				"00000100" + // heap_mb 65536
				"03020000"}, // threads 0x0203
		{testConfig,
			"434c4346" + "0100" +
				"0700" + // product_id 7
				"0300" + // svn 3
				"0000" + // flags: not debug
				"80000000" + // heap_mb 128
				"08000000"}, // threads 8
		{DefaultConfig(),
			"434c4346" + "0100" + "0000" + "0000" + "0100" + "00010000" + "04000000"},
	}
	for _, tt := range tests {
		got := tt.cfg.Encode()
		if hex.EncodeToString(got) != tt.want {
			t.Errorf("%+v.Encode() =\n%x\nwant\n%s", tt.cfg, got, tt.want)
		}
		if len(got) != ConfigSize {
			t.Errorf("len(Encode()) = %d, want ConfigSize %d", len(got), ConfigSize)
		}
	}
}

// Every field reaches the encoding: configurations that differ in one
// field encode differently.
func TestConfigEncodeDistinct(t *testing.T) {
	base := testConfig
	variants := []Config{base, base, base, base, base}
	variants[0].ProductID++
	variants[1].SVN++
	variants[2].Debug = !variants[2].Debug
	variants[3].HeapMB++
	variants[4].Threads++
	for _, v := range variants {
		if bytes.Equal(v.Encode(), base.Encode()) {
			t.Errorf("%+v encodes like %+v", v, base)
		}
	}
}
