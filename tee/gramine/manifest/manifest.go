// Package manifest writes and reads the Gramine manifest of a Cloister
// enclave app: the TOML file that `cloister gramine manifest` prints and
// `cloister run --tee sgx` hands to gramine-sgx-sign. The manifest is part
// of the enclave's identity (gramine-sgx-sign measures it into MRENCLAVE),
// so it is written deterministically from the app, its enclave.json and the
// arguments given, and nothing in it comes from the host at run time.
//
// Target: Gramine 1.8 and later, where loader.entrypoint is a table
// (loader.entrypoint.uri, with loader.entrypoint.sha256); earlier releases
// spell it as a string and are not supported. Cloister pins the app's
// SHA-256 itself, so the manifest the user keeps names exactly one binary,
// and the LibOS's when it is installed where loader.entrypoint.uri says
// (ForApp); otherwise Gramine's tools are left to fill it in.
//
// Build is pure (no I/O): the caller hashes the binary. Marshal and Parse
// are inverse: Parse accepts exactly the keys Marshal writes (unknown keys
// are errors) and checks every value as Build would have made it.
package manifest

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/pelletier/go-toml/v2"

	"github.com/cloister-dev/cloister/tee/appsign"
)

// Values Cloister writes for keys that are not the app's choice.
const (
	// DefaultLibOS is where Gramine's Debian/Ubuntu packages install the
	// LibOS (loader.entrypoint.uri); Options.LibOS overrides it.
	DefaultLibOS = "/usr/lib/x86_64-linux-gnu/gramine/libsysdb.so"
	// AppDir is the directory inside the enclave where the binary is
	// mounted (libos.entrypoint = AppDir/NAME).
	AppDir = "/app"
	// ShmDir is the host's shared-memory directory, mounted at the same
	// path inside the enclave as Gramine's untrusted shared memory.
	ShmDir = "/dev/shm"
	// RemoteAttestation is the only attestation type tee/gramine accepts.
	RemoteAttestation = "dcap"
	// FileCheckPolicy: only listed files may be opened.
	FileCheckPolicy = "strict"
	// LogLevel is the only level Gramine calls suitable for production.
	LogLevel = "error"
	// EnvBoundary is the environment variable that tells the enclave SDK
	// where its boundary is (host/wire.EnvBoundary; repeated here so this
	// package stays below host/).
	EnvBoundary = "CLOISTER_BOUNDARY"
)

// Sizing. SGX without EDMM commits the whole enclave at start, so its size
// is fixed in the manifest, and every mapping the app makes (PROT_NONE
// reservations included) is carved from it: the Go heap (GOMEMLIMIT =
// heap_mb) in whole arenas, the address space the Go runtime reserves at
// start, the binary and room for Gramine (PAL, LibOS, thread stacks),
// rounded up to a power of two as gramine-sgx-sign requires.
const (
	// overheadMiB is the room left for Gramine itself and thread stacks.
	overheadMiB = 128
	// goReserveMiB covers what the Go runtime reserves on linux/amd64
	// before it allocates anything, whatever the heap: the page
	// allocator's summary levels (585 MiB) and scavenger index (512 MiB),
	// runtime/mpagealloc_64bit.go, and the arena map (32 MiB), rounded
	// up. Without it a Go program dies at start with "failed to reserve
	// page summary memory" (gramineproject/gramine issue 232).
	goReserveMiB = 1152
	// arenaMiB is the unit the Go heap grows by (heapArenaBytes); one
	// more arena is counted for the runtime's own and alignment.
	arenaMiB = 64
	// extraThreads is added to enclave.json's threads (= GOMAXPROCS) for
	// sgx.max_threads: Go's sysmon and the threads blocked in system calls
	// (the boundary's waiters, up to one per channel, and timers), plus
	// Gramine's own helper threads (IPC, async, TLS handshake; Gramine
	// asks for at least 4). Running out is fatal to the Go runtime, so it
	// is generous; thread slots cost a little enclave memory each.
	extraThreads = 20
	// maxEnclaveMiB caps the computed size (64 GiB heap cap + slack).
	maxEnclaveMiB = 128 << 10
)

// Manifest is a Gramine manifest with exactly the keys Cloister writes.
// Field order is output order.
type Manifest struct {
	Libos  Libos  `toml:"libos"`
	Loader Loader `toml:"loader"`
	FS     FS     `toml:"fs"`
	Sys    Sys    `toml:"sys"`
	SGX    SGX    `toml:"sgx"`
}

// Libos is the [libos] table.
type Libos struct {
	Entrypoint string `toml:"entrypoint" comment:"The app, as a path inside the enclave (mounted below)."`
}

// Loader is the [loader] table.
type Loader struct {
	LogLevel string   `toml:"log_level" comment:"Only \"error\" is suitable for production: other levels may leak data."`
	Argv     []string `toml:"argv" comment:"The app's arguments are fixed here and measured: the host's are never used\n(no loader.insecure__use_cmdline_argv)."`
	// Entrypoint names the LibOS that Gramine loads first.
	Entrypoint LoaderEntrypoint `toml:"entrypoint" comment:"The LibOS Gramine loads first, pinned when it was installed here."`
	// Env holds string values (fixed in the manifest, so measured) and
	// passthrough tables ({passthrough = true}: taken from the host).
	Env map[string]any `toml:"env" comment:"Environment: fixed values, and host variables only where listed\n(passthrough = true). Nothing else of the host's environment reaches the app."`
}

// LoaderEntrypoint is the [loader.entrypoint] table.
type LoaderEntrypoint struct {
	URI string `toml:"uri"`
	// SHA256 pins the LibOS when it was found where URI says at the time
	// the manifest was written (ForApp); otherwise it is left out for
	// Gramine's tools to fill in.
	SHA256 string `toml:"sha256,omitempty"`
}

// Passthrough is the value of a loader.env entry taken from the host.
type Passthrough struct {
	Passthrough bool `toml:"passthrough"`
}

// FS is the [fs] table.
type FS struct {
	Mounts []Mount `toml:"mounts" comment:"The app binary, and the host's /dev/shm as untrusted shared memory:\nthe boundary region lives there, outside the enclave, and the app\ntreats it as hostile."`
}

// Mount is one fs.mounts entry.
type Mount struct {
	Type string `toml:"type"`
	Path string `toml:"path"`
	URI  string `toml:"uri"`
}

// Sys is the [sys] table.
type Sys struct {
	EnableSigtermInjection bool `toml:"enable_sigterm_injection" comment:"'cloister run' stops the app with SIGTERM, which cancels the app's context."`
}

// SGX is the [sgx] table.
type SGX struct {
	Debug             bool          `toml:"debug" comment:"From enclave.json (debug, product_id, svn, heap_mb, threads)."`
	ISVProdID         uint16        `toml:"isvprodid"`
	ISVSVN            uint16        `toml:"isvsvn"`
	EDMMEnable        bool          `toml:"edmm_enable" comment:"Without EDMM the whole enclave is committed at start: a power of two\nthat holds GOMEMLIMIT, the Go runtime's reservations, the binary and Gramine."`
	EnclaveSize       string        `toml:"enclave_size"`
	MaxThreads        uint32        `toml:"max_threads" comment:"GOMAXPROCS plus Go's and Gramine's extra threads."`
	RemoteAttestation string        `toml:"remote_attestation" comment:"Quotes through DCAP: /dev/attestation/attestation_type reads \"dcap\"."`
	FileCheckPolicy   string        `toml:"file_check_policy"`
	TrustedFiles      []TrustedFile `toml:"trusted_files" comment:"The app binary, pinned by its SHA-256."`
	AllowedFiles      []string      `toml:"allowed_files" comment:"The boundary's shared-memory files, by name (nothing else in /dev/shm)."`
}

// TrustedFile is one sgx.trusted_files entry.
type TrustedFile struct {
	URI    string `toml:"uri"`
	SHA256 string `toml:"sha256"`
}

// Options is what Build needs. Everything is given; Build does no I/O.
type Options struct {
	// Name is the app's file name (no directory). gramine-sgx runs in the
	// app's directory, where the manifest and the binary sit side by side.
	Name string
	// SHA256 and Size describe the binary.
	SHA256 [32]byte
	Size   int64
	// Config is the app's enclave.json.
	Config appsign.Config
	// Args are the app's arguments after argv[0].
	Args []string
	// Passthrough names host environment variables the app may read.
	Passthrough []string
	// LibOS is the host path of Gramine's libsysdb.so; "" means
	// DefaultLibOS.
	LibOS string
	// LibOSSHA256, when set, is the LibOS's SHA-256
	// (loader.entrypoint.sha256).
	LibOSSHA256 *[32]byte
}

// RegionPath is the boundary's shared-memory file for an app named name:
// fixed by the name, so the manifest (which is measured) never depends on
// the run.
func RegionPath(name string) string { return path.Join(ShmDir, "cloister-"+name+".region") }

// BoundaryValue is the CLOISTER_BOUNDARY value written for an app named
// name: the region by path, and the platform kind sgx. It has the form
// host/wire.Launch writes; host/wire's tests check the two agree.
func BoundaryValue(name string) string {
	return "v2 region=" + RegionPath(name) + " tee=sgx"
}

var (
	// nameRE: the app's file name ends up in paths inside and outside the
	// enclave and in /dev/shm file names, so it is kept plain.
	nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$`)
	// envNameRE is a portable environment variable name.
	envNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,127}$`)
)

// reservedEnv reports why a host variable may not be passed through, or "".
// Cloister's own variable and the Go runtime's knobs are fixed by the
// manifest: GODEBUG alone can turn off security checks (x509sha1,
// tlsrsakex…), so the host must not set them. LD_* are refused by habit
// (the app is static and ignores them, but nothing should look honoured).
func reservedEnv(name string) string {
	switch {
	case name == EnvBoundary || strings.HasPrefix(name, "CLOISTER_"):
		return "Cloister's own variables are fixed by the manifest"
	case strings.HasPrefix(name, "GO"):
		return "Go runtime settings (GODEBUG, GOMAXPROCS, GOMEMLIMIT, …) are fixed by the manifest"
	case strings.HasPrefix(name, "LD_"):
		return "dynamic loader variables are never taken from the host"
	}
	return ""
}

// CheckPassthrough says whether the host variable name may be passed
// through to the app (Options.Passthrough), and if not, why.
func CheckPassthrough(name string) error {
	if !envNameRE.MatchString(name) {
		return fmt.Errorf("manifest: --env %q: not a variable name", name)
	}
	if why := reservedEnv(name); why != "" {
		return fmt.Errorf("manifest: --env %s: %s", name, why)
	}
	return nil
}

// Build returns the manifest for o, or an error naming the bad option.
func Build(o Options) (*Manifest, error) {
	if !nameRE.MatchString(o.Name) || o.Name == "." || o.Name == ".." {
		return nil, fmt.Errorf("manifest: app name %q: want 1-100 of A-Z a-z 0-9 . _ - (not starting with . _ -)", o.Name)
	}
	if o.Size <= 0 {
		return nil, fmt.Errorf("manifest: app %s: size %d: an app is never empty", o.Name, o.Size)
	}
	if err := o.Config.Validate(); err != nil {
		return nil, fmt.Errorf("manifest: %w", err)
	}
	libos := o.LibOS
	if libos == "" {
		libos = DefaultLibOS
	}
	if !path.IsAbs(libos) || path.Clean(libos) != libos {
		return nil, fmt.Errorf("manifest: libos %q: want an absolute, clean host path", libos)
	}
	env := map[string]any{
		EnvBoundary:  BoundaryValue(o.Name),
		"GOMAXPROCS": strconv.FormatUint(uint64(o.Config.Threads), 10),
		"GOMEMLIMIT": strconv.FormatUint(uint64(o.Config.HeapMB), 10) + "MiB",
	}
	for _, n := range o.Passthrough {
		if err := CheckPassthrough(n); err != nil {
			return nil, err
		}
		if _, dup := env[n]; dup {
			return nil, fmt.Errorf("manifest: --env %s: given twice", n)
		}
		env[n] = Passthrough{Passthrough: true}
	}
	for i, a := range o.Args {
		if strings.IndexByte(a, 0) >= 0 {
			return nil, fmt.Errorf("manifest: argument %d contains a NUL byte", i+1)
		}
		// A TOML string is UTF-8: the encoder would turn a stray byte into
		// another character, and the app would get an argument nobody gave.
		if !utf8.ValidString(a) {
			return nil, fmt.Errorf("manifest: argument %d is not valid UTF-8 (a manifest is TOML, which carries only UTF-8)", i+1)
		}
	}
	size, err := enclaveSize(o.Config.HeapMB, o.Size)
	if err != nil {
		return nil, err
	}
	entry := path.Join(AppDir, o.Name)
	return &Manifest{
		Libos: Libos{Entrypoint: entry},
		Loader: Loader{
			LogLevel:   LogLevel,
			Argv:       append([]string{entry}, o.Args...),
			Entrypoint: entrypoint(libos, o.LibOSSHA256),
			Env:        env,
		},
		FS: FS{Mounts: []Mount{
			{Type: "chroot", Path: entry, URI: "file:" + o.Name},
			{Type: "untrusted_shm", Path: ShmDir, URI: "dev:" + ShmDir},
		}},
		Sys: Sys{EnableSigtermInjection: true},
		SGX: SGX{
			Debug:             o.Config.Debug,
			ISVProdID:         o.Config.ProductID,
			ISVSVN:            o.Config.SVN,
			EDMMEnable:        false,
			EnclaveSize:       size,
			MaxThreads:        o.Config.Threads + extraThreads,
			RemoteAttestation: RemoteAttestation,
			FileCheckPolicy:   FileCheckPolicy,
			TrustedFiles:      []TrustedFile{{URI: "file:" + o.Name, SHA256: hex.EncodeToString(o.SHA256[:])}},
			AllowedFiles:      []string{"dev:" + RegionPath(o.Name)},
		},
	}, nil
}

// entrypoint is loader.entrypoint for the LibOS at libos.
func entrypoint(libos string, sum *[32]byte) LoaderEntrypoint {
	e := LoaderEntrypoint{URI: "file:" + libos}
	if sum != nil {
		e.SHA256 = hex.EncodeToString(sum[:])
	}
	return e
}

// enclaveSize is the smallest power of two of MiB holding the heap in
// whole arenas plus one, the Go runtime's reservations, the binary and
// overheadMiB, written as Gramine sizes are ("512M", "4G").
func enclaveSize(heapMB uint32, binSize int64) (string, error) {
	binMiB := (binSize + 1<<20 - 1) >> 20
	heapMiB := (int64(heapMB)+arenaMiB-1)/arenaMiB*arenaMiB + arenaMiB
	need := heapMiB + goReserveMiB + binMiB + overheadMiB
	if need > maxEnclaveMiB {
		return "", fmt.Errorf("manifest: enclave of %d MiB (heap %d MiB in arenas + Go runtime %d MiB + binary %d MiB + %d MiB for Gramine) is more than %d MiB",
			need, heapMiB, goReserveMiB, binMiB, overheadMiB, maxEnclaveMiB)
	}
	size := int64(1)
	for size < need {
		size <<= 1
	}
	if size >= 1<<10 {
		return strconv.FormatInt(size>>10, 10) + "G", nil
	}
	return strconv.FormatInt(size, 10) + "M", nil
}

// header starts every manifest Cloister writes.
const header = `# Gramine manifest of a Cloister enclave app, written by 'cloister gramine manifest'.
# Gramine 1.8 or later. Sign it with gramine-sgx-sign (which measures it into
# MRENCLAVE) and run it with gramine-sgx; 'cloister run --tee sgx' does both.
# Editing it changes MRENCLAVE.

`

// Marshal writes m as TOML, after a comment header. Map keys are sorted,
// so the same manifest always gives the same bytes.
func (m *Manifest) Marshal() ([]byte, error) {
	var buf bytes.Buffer
	buf.WriteString(header)
	enc := toml.NewEncoder(&buf)
	enc.SetIndentTables(false)
	if err := enc.Encode(m); err != nil {
		return nil, fmt.Errorf("manifest: encode: %w", err)
	}
	return buf.Bytes(), nil
}

// MaxSize caps what Parse reads: a manifest Cloister writes is a few KiB.
const MaxSize = 64 << 10

// Parse reads a manifest written by Marshal. It is strict: unknown keys,
// a missing key, and any value Build would not write (for the app name the
// manifest itself gives) are errors naming the key. It is the check behind
// the direct-exec test mode of 'cloister run --tee sgx', which runs the app
// as the manifest says, and behind the parse-back tests.
func Parse(data []byte) (*Manifest, error) {
	if len(data) > MaxSize {
		return nil, fmt.Errorf("manifest: %d bytes, more than %d", len(data), MaxSize)
	}
	var m Manifest
	dec := toml.NewDecoder(bytes.NewReader(data)).DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		var sme *toml.StrictMissingError
		var de *toml.DecodeError
		switch {
		case errors.As(err, &sme):
			return nil, fmt.Errorf("manifest: unknown keys:\n%s: %w", sme.String(), err)
		case errors.As(err, &de):
			row, col := de.Position()
			return nil, fmt.Errorf("manifest: line %d column %d, key %q: %w", row, col, strings.Join(de.Key(), "."), err)
		}
		return nil, fmt.Errorf("manifest: %w", err)
	}
	if err := m.check(); err != nil {
		return nil, err
	}
	return &m, nil
}

// Name returns the app's file name, from libos.entrypoint.
func (m *Manifest) Name() string { return path.Base(m.Libos.Entrypoint) }

// FixedEnv returns the loader.env values fixed in the manifest, sorted by
// name, as NAME=VALUE.
func (m *Manifest) FixedEnv() []string {
	var out []string
	for _, k := range sortedKeys(m.Loader.Env) {
		if s, ok := m.Loader.Env[k].(string); ok {
			out = append(out, k+"="+s)
		}
	}
	return out
}

// PassthroughEnv returns the names of host variables the app may read,
// sorted.
func (m *Manifest) PassthroughEnv() []string {
	var out []string
	for _, k := range sortedKeys(m.Loader.Env) {
		if _, ok := m.Loader.Env[k].(string); !ok {
			out = append(out, k)
		}
	}
	return out
}

// check validates a decoded manifest against what Build writes for its own
// app name, so that a hand-edited or corrupted file is named, not run.
func (m *Manifest) check() error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("manifest: %s: %s", key, fmt.Sprintf(format, args...)))
	}
	name := m.Name()
	entry := path.Join(AppDir, name)
	if m.Libos.Entrypoint != entry || !nameRE.MatchString(name) {
		bad("libos.entrypoint", "%q: want %s/NAME with a plain NAME", m.Libos.Entrypoint, AppDir)
		return errors.Join(errs...)
	}
	if m.Loader.LogLevel != LogLevel {
		bad("loader.log_level", "%q, want %q", m.Loader.LogLevel, LogLevel)
	}
	if len(m.Loader.Argv) == 0 || m.Loader.Argv[0] != entry {
		bad("loader.argv", "must start with %q", entry)
	}
	for i, a := range m.Loader.Argv {
		if strings.IndexByte(a, 0) >= 0 {
			bad("loader.argv", "argument %d contains a NUL byte", i)
		}
	}
	libos, ok := strings.CutPrefix(m.Loader.Entrypoint.URI, "file:")
	if !ok || !path.IsAbs(libos) || path.Clean(libos) != libos {
		bad("loader.entrypoint.uri", "%q: want file:ABSOLUTE-PATH", m.Loader.Entrypoint.URI)
	}
	if h := m.Loader.Entrypoint.SHA256; h != "" && !isSHA256Hex(h) {
		bad("loader.entrypoint.sha256", "%q: want 64 lower-case hex digits", h)
	}
	m.checkEnv(name, bad)
	wantMounts := []Mount{
		{Type: "chroot", Path: entry, URI: "file:" + name},
		{Type: "untrusted_shm", Path: ShmDir, URI: "dev:" + ShmDir},
	}
	// Compared element by element: as printed text, one crafted entry can
	// read the same as two.
	if !slices.Equal(m.FS.Mounts, wantMounts) {
		bad("fs.mounts", "%v, want %v", m.FS.Mounts, wantMounts)
	}
	if !m.Sys.EnableSigtermInjection {
		bad("sys.enable_sigterm_injection", "must be true ('cloister run' stops the app with SIGTERM)")
	}
	s := m.SGX
	if s.EDMMEnable {
		bad("sgx.edmm_enable", "must be false")
	}
	size, err := parseSize(s.EnclaveSize)
	if err != nil {
		bad("sgx.enclave_size", "%v", err)
	}
	if s.MaxThreads <= extraThreads || s.MaxThreads > appsign.MaxThreads+extraThreads {
		bad("sgx.max_threads", "%d: want %d..%d", s.MaxThreads, extraThreads+1, appsign.MaxThreads+extraThreads)
	}
	// Cross-checks with the environment Build wrote alongside (checkEnv
	// reports a malformed value): the thread slots follow GOMAXPROCS, and
	// the enclave holds at least GOMEMLIMIT with the Go runtime and
	// Gramine (for the smallest binary; the real one is not known here).
	if procs, err := strconv.ParseUint(envString(m.Loader.Env, "GOMAXPROCS"), 10, 32); err == nil && uint64(s.MaxThreads) != procs+extraThreads {
		bad("sgx.max_threads", "%d: want GOMAXPROCS %d + %d", s.MaxThreads, procs, extraThreads)
	}
	heap, err := strconv.ParseUint(strings.TrimSuffix(envString(m.Loader.Env, "GOMEMLIMIT"), "MiB"), 10, 32)
	if least, minErr := enclaveSize(uint32(heap), 1); err == nil && size > 0 && minErr == nil {
		if want, _ := parseSize(least); size < want {
			bad("sgx.enclave_size", "%q: GOMEMLIMIT %dMiB needs at least %q", s.EnclaveSize, heap, least)
		}
	}
	if s.RemoteAttestation != RemoteAttestation {
		bad("sgx.remote_attestation", "%q, want %q", s.RemoteAttestation, RemoteAttestation)
	}
	if s.FileCheckPolicy != FileCheckPolicy {
		bad("sgx.file_check_policy", "%q, want %q", s.FileCheckPolicy, FileCheckPolicy)
	}
	if len(s.TrustedFiles) != 1 || s.TrustedFiles[0].URI != "file:"+name {
		bad("sgx.trusted_files", "want exactly the app, file:%s", name)
	} else if !isSHA256Hex(s.TrustedFiles[0].SHA256) {
		bad("sgx.trusted_files", "sha256 %q: want 64 lower-case hex digits", s.TrustedFiles[0].SHA256)
	}
	wantAllowed := []string{"dev:" + RegionPath(name)}
	if !slices.Equal(s.AllowedFiles, wantAllowed) {
		bad("sgx.allowed_files", "%q, want %q", s.AllowedFiles, wantAllowed)
	}
	return errors.Join(errs...)
}

// checkEnv checks loader.env: the fixed values Build writes, and
// passthrough tables for allowed names only. Decoded tables arrive as
// map[string]any.
func (m *Manifest) checkEnv(name string, bad func(key, format string, args ...any)) {
	env := m.Loader.Env
	if v, _ := env[EnvBoundary].(string); v != BoundaryValue(name) {
		bad("loader.env."+EnvBoundary, "%q, want %q", env[EnvBoundary], BoundaryValue(name))
	}
	for _, k := range []string{"GOMAXPROCS", "GOMEMLIMIT"} {
		v, ok := env[k].(string)
		if !ok {
			bad("loader.env."+k, "missing or not a string")
			continue
		}
		num := strings.TrimSuffix(v, "MiB")
		if k == "GOMEMLIMIT" && num == v {
			bad("loader.env."+k, "%q: want NMiB", v)
			continue
		}
		if n, err := strconv.ParseUint(num, 10, 32); err != nil || n == 0 || strconv.FormatUint(n, 10) != num {
			bad("loader.env."+k, "%q: want a positive number", v)
		}
	}
	for _, k := range sortedKeys(env) {
		if k == EnvBoundary || k == "GOMAXPROCS" || k == "GOMEMLIMIT" {
			continue
		}
		if !envNameRE.MatchString(k) {
			bad("loader.env", "%q is not a variable name", k)
			continue
		}
		if why := reservedEnv(k); why != "" {
			bad("loader.env."+k, "%s", why)
			continue
		}
		t, ok := env[k].(map[string]any)
		if p, isBool := t["passthrough"].(bool); !ok || len(t) != 1 || !isBool || !p {
			bad("loader.env."+k, "%v: only {passthrough = true} is written for a listed variable", env[k])
		}
	}
}

// envString is env[name] if it is a string, else "".
func envString(env map[string]any, name string) string {
	v, _ := env[name].(string)
	return v
}

// isSHA256Hex reports whether h is a SHA-256 in lower-case hex.
func isSHA256Hex(h string) bool {
	b, err := hex.DecodeString(h)
	return err == nil && len(b) == 32 && hex.EncodeToString(b) == h
}

// parseSize reads a Gramine size ("512M", "4G"): a power of two of MiB.
func parseSize(s string) (int64, error) {
	var mult int64
	switch {
	case strings.HasSuffix(s, "M"):
		mult = 1
	case strings.HasSuffix(s, "G"):
		mult = 1 << 10
	default:
		return 0, fmt.Errorf("%q: want NM or NG", s)
	}
	num := s[:len(s)-1]
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n <= 0 || strconv.FormatInt(n, 10) != num || n > maxEnclaveMiB/mult {
		return 0, fmt.Errorf("%q: want a positive size up to %d MiB", s, maxEnclaveMiB)
	}
	mib := n * mult
	if mib&(mib-1) != 0 {
		return 0, fmt.Errorf("%q: not a power of two", s)
	}
	return mib, nil
}

// sortedKeys returns m's keys in order.
func sortedKeys(m map[string]any) []string { return slices.Sorted(maps.Keys(m)) }
