package manifest

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/pelletier/go-toml/v2"

	"github.com/cloister-dev/cloister/tee/appsign"
)

var update = flag.Bool("update", false, "rewrite testdata/*.toml")

// echoOptions is the manifest of examples/echo as the README runs it: a
// signed, non-debug configuration, one argument pair and one host
// variable passed through.
func echoOptions() Options {
	return Options{
		Name:        "echo",
		SHA256:      sha256.Sum256([]byte("the echo binary")),
		Size:        9<<20 + 1,
		Config:      appsign.Config{ProductID: 1, SVN: 2, Debug: false, HeapMB: 512, Threads: 8},
		Args:        []string{"--listen", ":8443"},
		Passthrough: []string{"TZ"},
	}
}

func buildEcho(t testing.TB) []byte {
	t.Helper()
	m, err := Build(echoOptions())
	if err != nil {
		t.Fatal(err)
	}
	b, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestGolden freezes the manifest's bytes: MRENCLAVE depends on them, so a
// change must be deliberate (go test -run Golden -update).
func TestGolden(t *testing.T) {
	got := buildEcho(t)
	golden := filepath.Join("testdata", "echo.manifest")
	if *update {
		if err := os.WriteFile(golden, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("manifest differs from %s (rerun with -update if intended):\n%s", golden, got)
	}
}

// TestBuildDeterministic: one input, one output, whatever the map order.
func TestBuildDeterministic(t *testing.T) {
	first := buildEcho(t)
	for range 20 {
		if !bytes.Equal(buildEcho(t), first) {
			t.Fatal("two builds of one manifest differ")
		}
	}
}

// flatKeys lists every key path of a decoded TOML document: tables are
// descended, arrays of tables are descended as KEY[], other values end a
// path.
func flatKeys(prefix string, v any, out map[string]bool) {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			p := k
			if prefix != "" {
				p = prefix + "." + k
			}
			flatKeys(p, e, out)
		}
	case []any:
		tables := len(x) > 0
		for _, e := range x {
			if _, ok := e.(map[string]any); !ok {
				tables = false
			}
		}
		if !tables {
			out[prefix] = true
			return
		}
		for _, e := range x {
			flatKeys(prefix+"[]", e, out)
		}
	default:
		out[prefix] = true
	}
}

// TestParseBackExactKeys: the written manifest is well-formed TOML (read by
// a generic decoder, not our struct) with exactly the expected keys: no
// insecure__ option, no host argv, no host environment but the listed one.
func TestParseBackExactKeys(t *testing.T) {
	var doc map[string]any
	if err := toml.Unmarshal(buildEcho(t), &doc); err != nil {
		t.Fatalf("not TOML: %v", err)
	}
	got := map[string]bool{}
	flatKeys("", doc, got)
	want := []string{
		"libos.entrypoint",
		"loader.log_level", "loader.argv", "loader.entrypoint.uri",
		"loader.env.CLOISTER_BOUNDARY", "loader.env.GOMAXPROCS", "loader.env.GOMEMLIMIT", "loader.env.TZ.passthrough",
		"fs.mounts[].type", "fs.mounts[].path", "fs.mounts[].uri",
		"sys.enable_sigterm_injection",
		"sgx.debug", "sgx.isvprodid", "sgx.isvsvn", "sgx.edmm_enable", "sgx.enclave_size", "sgx.max_threads",
		"sgx.remote_attestation", "sgx.file_check_policy", "sgx.trusted_files[].uri", "sgx.trusted_files[].sha256",
		"sgx.allowed_files",
	}
	gotList := slices.Sorted(func(yield func(string) bool) {
		for k := range got {
			if !yield(k) {
				return
			}
		}
	})
	slices.Sort(want)
	if !slices.Equal(gotList, want) {
		t.Errorf("keys:\n got %q\nwant %q", gotList, want)
	}
	// The values that carry the security decisions, read generically.
	loader := doc["loader"].(map[string]any)
	if argv := loader["argv"].([]any); len(argv) != 3 || argv[0] != "/app/echo" || argv[1] != "--listen" || argv[2] != ":8443" {
		t.Errorf("loader.argv = %v", argv)
	}
	sgxT := doc["sgx"].(map[string]any)
	for k, v := range map[string]any{
		"remote_attestation": "dcap", "debug": false, "isvprodid": int64(1), "isvsvn": int64(2),
		"enclave_size": "2G", "max_threads": int64(28), "file_check_policy": "strict",
	} {
		if sgxT[k] != v {
			t.Errorf("sgx.%s = %#v, want %#v", k, sgxT[k], v)
		}
	}
	mounts := doc["fs"].(map[string]any)["mounts"].([]any)
	shm := mounts[1].(map[string]any)
	if shm["type"] != "untrusted_shm" || shm["path"] != "/dev/shm" || shm["uri"] != "dev:/dev/shm" {
		t.Errorf("boundary mount = %v", shm)
	}
	tf := sgxT["trusted_files"].([]any)[0].(map[string]any)
	sum := sha256.Sum256([]byte("the echo binary"))
	if tf["uri"] != "file:echo" || tf["sha256"] != hex.EncodeToString(sum[:]) {
		t.Errorf("trusted file = %v", tf)
	}
}

// TestRoundTrip: Parse(Marshal(m)) marshals to the same bytes, and its
// accessors say what Build was given.
func TestRoundTrip(t *testing.T) {
	b := buildEcho(t)
	m, err := Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	again, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(again, b) {
		t.Errorf("re-marshalled manifest differs:\n%s", again)
	}
	if m.Name() != "echo" {
		t.Errorf("Name = %q", m.Name())
	}
	wantEnv := []string{"CLOISTER_BOUNDARY=" + BoundaryValue("echo"), "GOMAXPROCS=8", "GOMEMLIMIT=512MiB"}
	if !slices.Equal(m.FixedEnv(), wantEnv) {
		t.Errorf("FixedEnv = %q, want %q", m.FixedEnv(), wantEnv)
	}
	if !slices.Equal(m.PassthroughEnv(), []string{"TZ"}) {
		t.Errorf("PassthroughEnv = %q", m.PassthroughEnv())
	}
}

// TestParseRejects: each edit a hand or a corruption could make is refused
// with an error naming the key.
func TestParseRejects(t *testing.T) {
	good := string(buildEcho(t))
	for _, tc := range []struct{ name, from, to, key string }{
		{"unknown key", "[sys]\n", "[sys]\ninsecure__allow_eventfd = true\n", "insecure__allow_eventfd"},
		{"host argv", "[loader]\n", "[loader]\ninsecure__use_cmdline_argv = true\n", "insecure__use_cmdline_argv"},
		{"host env", "[loader]\n", "[loader]\ninsecure__use_host_env = true\n", "insecure__use_host_env"},
		{"unknown sgx key", "[sgx]\n", "[sgx]\nenable_stats = true\n", "enable_stats"},
		{"log level", "log_level = 'error'", "log_level = 'debug'", "loader.log_level"},
		{"argv0", "argv = ['/app/echo',", "argv = ['/app/other',", "loader.argv"},
		{"entrypoint", "entrypoint = '/app/echo'", "entrypoint = '/bin/sh'", "libos.entrypoint"},
		{"libos uri", "uri = 'file:/usr/lib/x86_64-linux-gnu/gramine/libsysdb.so'", "uri = 'libsysdb.so'", "loader.entrypoint.uri"},
		{"boundary env", "tee=sgx'", "tee=sim-sgx'", "loader.env.CLOISTER_BOUNDARY"},
		{"gomaxprocs", "GOMAXPROCS = '8'", "GOMAXPROCS = 'eight'", "loader.env.GOMAXPROCS"},
		{"gomemlimit", "GOMEMLIMIT = '512MiB'", "GOMEMLIMIT = '512'", "loader.env.GOMEMLIMIT"},
		{"passthrough false", "[loader.env.TZ]\npassthrough = true", "[loader.env.TZ]\npassthrough = false", "loader.env.TZ"},
		{"passthrough reserved", "[loader.env.TZ]", "[loader.env.GODEBUG]", "loader.env.GODEBUG"},
		{"env value table", "[loader.env.TZ]\npassthrough = true", "[loader.env.TZ]\nvalue = 'x'", "loader.env.TZ"},
		{"mount type", "type = 'untrusted_shm'", "type = 'chroot'", "fs.mounts"},
		{"mount uri", "uri = 'dev:/dev/shm'", "uri = 'file:/etc'", "fs.mounts"},
		{"sigterm", "enable_sigterm_injection = true", "enable_sigterm_injection = false", "sys.enable_sigterm_injection"},
		{"edmm", "edmm_enable = false", "edmm_enable = true", "sgx.edmm_enable"},
		{"size not pow2", "enclave_size = '2G'", "enclave_size = '768M'", "sgx.enclave_size"},
		{"size unit", "enclave_size = '2G'", "enclave_size = '1T'", "sgx.enclave_size"},
		{"threads", "max_threads = 28", "max_threads = 4", "sgx.max_threads"},
		// Build writes GOMAXPROCS + 20; another count in range is not Build's.
		{"threads vs gomaxprocs", "max_threads = 28", "max_threads = 29", "sgx.max_threads"},
		// GOMEMLIMIT 512MiB needs 2G (TestEnclaveSizeHoldsGoRuntime).
		{"size below heap", "enclave_size = '2G'", "enclave_size = '1G'", "sgx.enclave_size"},
		{"attestation", "remote_attestation = 'dcap'", "remote_attestation = 'epid'", "sgx.remote_attestation"},
		{"file policy", "file_check_policy = 'strict'", "file_check_policy = 'allow_all_but_log'", "sgx.file_check_policy"},
		{"trusted uri", "uri = 'file:echo'\nsha256", "uri = 'file:other'\nsha256", "sgx.trusted_files"},
		{"trusted hash", "sha256 = '", "sha256 = 'zz", "sgx.trusted_files"},
		{"allowed", "['dev:/dev/shm/cloister-echo.region']", "['dev:/dev/shm/']", "sgx.allowed_files"},
		{"allowed extra", "['dev:/dev/shm/cloister-echo.region']", "['dev:/dev/shm/cloister-echo.region', 'dev:/dev/shm/cloister-echo.events']", "sgx.allowed_files"},
		// Lists compared as printed text would take one entry holding two
		// names (space-separated) for what Build writes.
		{"allowed merged", "['dev:/dev/shm/cloister-echo.region']",
			"['dev:/dev/shm/cloister-echo.region dev:/dev/shm/cloister-echo.events']", "sgx.allowed_files"},
		{"mounts merged", "[[fs.mounts]]\ntype = 'chroot'\npath = '/app/echo'\nuri = 'file:echo'\n\n[[fs.mounts]]\ntype = 'untrusted_shm'",
			"[[fs.mounts]]\ntype = 'chroot /app/echo file:echo} {untrusted_shm'", "fs.mounts"},
		{"wrong type", "isvsvn = 2", "isvsvn = 'two'", "isvsvn"},
		{"svn range", "isvsvn = 2", "isvsvn = 70000", "isvsvn"},
		{"missing table", "[sys]\n# 'cloister run' stops the app with SIGTERM, which cancels the app's context.\nenable_sigterm_injection = true\n", "", "sys.enable_sigterm_injection"},
		{"not toml", "[sgx]", "[sgx", "manifest"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bad := strings.Replace(good, tc.from, tc.to, 1)
			if bad == good {
				t.Fatalf("edit %q not found in the manifest", tc.from)
			}
			_, err := Parse([]byte(bad))
			if err == nil || !strings.Contains(strings.ToLower(err.Error()), strings.ToLower(tc.key)) {
				t.Fatalf("Parse = %v, want an error naming %s", err, tc.key)
			}
		})
	}
	if _, err := Parse(bytes.Repeat([]byte{'#'}, MaxSize+1)); err == nil {
		t.Error("an oversized manifest parsed")
	}
}

func TestBuildRejects(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(*Options)
		want string
	}{
		{"empty name", func(o *Options) { o.Name = "" }, "app name"},
		{"dir in name", func(o *Options) { o.Name = "a/b" }, "app name"},
		{"dot name", func(o *Options) { o.Name = ".hidden" }, "app name"},
		{"quote in name", func(o *Options) { o.Name = "a'b" }, "app name"},
		{"empty binary", func(o *Options) { o.Size = 0 }, "never empty"},
		{"bad config", func(o *Options) { o.Config.Threads = 0 }, "threads"},
		{"relative libos", func(o *Options) { o.LibOS = "libsysdb.so" }, "libos"},
		{"reserved boundary", func(o *Options) { o.Passthrough = []string{"CLOISTER_BOUNDARY"} }, "fixed by the manifest"},
		{"reserved godebug", func(o *Options) { o.Passthrough = []string{"GODEBUG"} }, "Go runtime"},
		{"reserved ld", func(o *Options) { o.Passthrough = []string{"LD_PRELOAD"} }, "dynamic loader"},
		{"bad env name", func(o *Options) { o.Passthrough = []string{"A=B"} }, "not a variable name"},
		{"env twice", func(o *Options) { o.Passthrough = []string{"TZ", "TZ"} }, "given twice"},
		{"nul arg", func(o *Options) { o.Args = []string{"a\x00b"} }, "NUL"},
		// TOML strings are UTF-8: go-toml would write \xff as U+00FF, and
		// the app would get an argument other than the one given.
		{"non-UTF-8 arg", func(o *Options) { o.Args = []string{"ok", "caf\xe9"} }, "argument 2 is not valid UTF-8"},
		{"too big", func(o *Options) { o.Config.HeapMB = appsign.MaxHeapMB; o.Size = 100 << 30 }, "more than"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := echoOptions()
			tc.edit(&o)
			if _, err := Build(o); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Build = %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

// TestEnclaveSize: the smallest power of two holding heap + binary +
// Gramine's room, in Gramine's units; every size Build writes parses.
func TestEnclaveSize(t *testing.T) {
	for _, tc := range []struct {
		heap uint32
		bin  int64
		want string
	}{
		// heap in 64 MiB arenas + one arena + 1152 (Go) + binary + 128 (Gramine)
		{1, 1, "2G"},            // 64 + 64 + 1152 + 1 + 128 = 1409
		{512, 9<<20 + 1, "2G"},  // 512 + 64 + 1152 + 10 + 128 = 1866
		{640, 64 << 20, "2G"},   // 640 + 64 + 1152 + 64 + 128 = 2048 exactly
		{640, 64<<20 + 1, "4G"}, // 2049
		{641, 1 << 20, "4G"},    // 704 + 64 + 1152 + 1 + 128 = 2049
		{4096, 20 << 20, "8G"},  // 5460
		{appsign.MaxHeapMB, 50 << 20, "128G"},
	} {
		got, err := enclaveSize(tc.heap, tc.bin)
		if err != nil || got != tc.want {
			t.Errorf("enclaveSize(%d MiB, %d) = %q, %v; want %q", tc.heap, tc.bin, got, err, tc.want)
			continue
		}
		if _, err := parseSize(got); err != nil {
			t.Errorf("parseSize(%q): %v", got, err)
		}
	}
}

// TestBoundaryPaths: the region's shm file sits directly in /dev/shm
// (Gramine refuses sub-directories of an untrusted_shm mount) and is the
// one the manifest allows.
func TestBoundaryPaths(t *testing.T) {
	if RegionPath("echo") != "/dev/shm/cloister-echo.region" {
		t.Errorf("path %s", RegionPath("echo"))
	}
	if BoundaryValue("echo") != "v2 region=/dev/shm/cloister-echo.region tee=sgx" {
		t.Errorf("BoundaryValue = %q", BoundaryValue("echo"))
	}
}

// TestLibOSPinned: with the LibOS's hash (ForApp finds the file), the
// manifest pins it as loader.entrypoint.sha256, which parses back; a bad
// hash is refused; without the file the key is left out.
func TestLibOSPinned(t *testing.T) {
	dir := t.TempDir()
	app := filepath.Join(dir, "echo")
	libos := filepath.Join(dir, "libsysdb.so")
	if err := os.WriteFile(app, []byte("app"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(libos, []byte("the libos"), 0o644); err != nil {
		t.Fatal(err)
	}
	m, err := ForApp(app, Options{Config: appsign.DefaultConfig(), LibOS: libos})
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte("the libos"))
	if m.Loader.Entrypoint.SHA256 != hex.EncodeToString(sum[:]) || m.Loader.Entrypoint.URI != "file:"+libos {
		t.Fatalf("entrypoint %+v", m.Loader.Entrypoint)
	}
	b, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := toml.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	keys := map[string]bool{}
	flatKeys("", doc, keys)
	if !keys["loader.entrypoint.sha256"] || !keys["loader.entrypoint.uri"] {
		t.Errorf("keys %v", keys)
	}
	if _, err := Parse(b); err != nil {
		t.Fatal(err)
	}
	bad := strings.Replace(string(b), "sha256 = '"+hex.EncodeToString(sum[:]), "sha256 = 'XYZ", 1)
	if _, err := Parse([]byte(bad)); err == nil || !strings.Contains(err.Error(), "loader.entrypoint.sha256") {
		t.Errorf("bad libos hash: %v", err)
	}
	m, err = ForApp(app, Options{Config: appsign.DefaultConfig(), LibOS: filepath.Join(dir, "none.so")})
	if err != nil || m.Loader.Entrypoint.SHA256 != "" {
		t.Errorf("absent libos: %+v, %v", m, err)
	}
	if _, err := ForApp(app, Options{Config: appsign.DefaultConfig(), LibOS: dir}); err == nil {
		t.Error("a directory as the libos was hashed")
	}
}

// TestEnclaveSizeHoldsGoRuntime: without EDMM, every mapping Gramine gives
// the app, PROT_NONE reservations included, comes out of sgx.enclave_size.
// A Go program on linux/amd64 reserves, before it allocates anything, the
// page allocator's summary levels and its scavenger index (runtime/
// mpagealloc_64bit.go: levels of 2^(48-shift) eight-byte entries for
// shifts 34, 31, 28, 25, 22; an index of 2^26 eight-byte entries) and the
// arena map (2^22 pointers): about 1.1 GiB. An enclave smaller than that
// plus the heap cannot even start the runtime ("failed to reserve page
// summary memory", gramineproject/gramine issue 232).
func TestEnclaveSizeHoldsGoRuntime(t *testing.T) {
	var reserve int64
	for _, shift := range []uint{34, 31, 28, 25, 22} {
		reserve += (1 << (48 - shift)) * 8
	}
	reserve += (1 << 26) * 8 // scavenger index
	reserve += (1 << 22) * 8 // arena map
	for _, heap := range []uint32{1, 64, 512, 1000, 4096} {
		const bin = 20 << 20
		got, err := enclaveSize(heap, bin)
		if err != nil {
			t.Fatal(err)
		}
		mib, err := parseSize(got)
		if err != nil {
			t.Fatal(err)
		}
		// The heap in whole 64 MiB arenas, the runtime's reservations,
		// the binary: all must fit, with Gramine's own room on top.
		heapBytes := (int64(heap)<<20 + 64<<20 - 1) / (64 << 20) * (64 << 20)
		if need := heapBytes + reserve + bin; mib<<20 < need {
			t.Errorf("heap %d MiB: enclave_size %s (%d MiB) < %d MiB the Go runtime needs before Gramine's own", heap, got, mib, need>>20)
		}
	}
}
