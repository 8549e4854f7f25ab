package pcs

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeClock is a settable clock for Config.Now, so nextUpdate expiry is
// tested without sleeping.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

// errLog collects what the cache reports.
type errLog struct {
	mu   sync.Mutex
	errs []error
}

func (l *errLog) add(err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.errs = append(l.errs, err)
}

func (l *errLog) all() []error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]error(nil), l.errs...)
}

// URLs of go-tdx-guest's sample collateral under cacheBase.
const (
	cacheBase    = "https://pcs.example"
	cacheTCBURL  = cacheBase + "/tdx/certification/v4/tcb?fmspc=50806f000000"
	cacheQEURL   = cacheBase + "/tdx/certification/v4/qe/identity"
	cachePCKURL  = cacheBase + "/sgx/certification/v4/pckcrl?ca=platform&encoding=der"
	cacheRootURL = cacheBase + "/IntelSGXRootCA.der"
)

// nextUpdate times of the sample items (testdata/README.md): QE identity
// 2023-07-08T07:24:59Z, PCK CRL 2023-07-08T07:27:52Z, TCB info
// 2023-07-18T08:42:58Z, root CRL 2024-04-02T10:22:51Z.
var (
	beforeAllNextUpdates = time.Date(2023, 7, 1, 0, 0, 0, 0, time.UTC)
	afterQEAndPCKCRL     = time.Date(2023, 7, 10, 0, 0, 0, 0, time.UTC)
	afterAll             = time.Date(2024, 5, 1, 0, 0, 0, 0, time.UTC)
)

// cacheFixture is a client with a fake getter, a fake clock and a cache in
// a temporary directory.
type cacheFixture struct {
	dir    string
	fake   *fakeGetter
	clock  *fakeClock
	log    *errLog
	client *Client
	cache  *Cache
}

func newCacheFixture(t *testing.T) *cacheFixture {
	f := &cacheFixture{
		dir:   filepath.Join(t.TempDir(), "pcs"),
		fake:  newFakeGetter(tdxResponses(t, cacheBase, pcsEscape)),
		clock: &fakeClock{t: beforeAllNextUpdates},
		log:   &errLog{},
	}
	var err error
	if f.cache, err = NewCache(f.dir, f.log.add); err != nil {
		t.Fatal(err)
	}
	f.client, err = NewClient(Config{
		BaseURL:      cacheBase,
		RootCACRLURL: cacheRootURL,
		Getter:       f.fake,
		Cache:        f.cache,
		Now:          f.clock.Now,
	})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// fetch runs one Fetch of the sample query and returns the bundle.
func (f *cacheFixture) fetch(t *testing.T) *Bundle {
	t.Helper()
	b, err := f.client.Fetch(context.Background(), Query{TEE: TDX, FMSPC: tdxFMSPC, CA: "platform"})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// wantCalls checks the request count per URL.
func (f *cacheFixture) wantCalls(t *testing.T, want map[string]int) {
	t.Helper()
	for u, n := range want {
		if got := f.fake.count(u); got != n {
			t.Errorf("%d requests for %s, want %d", got, u, n)
		}
	}
}

// TestCacheFreshHit: while the clock is before every nextUpdate, a second
// Fetch is answered from disk without any request, with the same bundle.
func TestCacheFreshHit(t *testing.T) {
	f := newCacheFixture(t)
	first := f.fetch(t)
	second := f.fetch(t)
	if *first != *second {
		t.Error("cached bundle differs from the fetched one")
	}
	f.wantCalls(t, map[string]int{cacheTCBURL: 1, cacheQEURL: 1, cachePCKURL: 1, cacheRootURL: 1})
	if errs := f.log.all(); len(errs) != 0 {
		t.Errorf("cache reported errors: %v", errs)
	}
}

// TestCacheRefetchAfterNextUpdate: each item is refetched once the clock
// reaches its own nextUpdate, and only then.
func TestCacheRefetchAfterNextUpdate(t *testing.T) {
	f := newCacheFixture(t)
	f.fetch(t)
	f.clock.Set(afterQEAndPCKCRL)
	f.fetch(t)
	f.wantCalls(t, map[string]int{cacheTCBURL: 1, cacheQEURL: 2, cachePCKURL: 2, cacheRootURL: 1})
	f.clock.Set(afterAll)
	f.fetch(t)
	f.wantCalls(t, map[string]int{cacheTCBURL: 2, cacheQEURL: 3, cachePCKURL: 3, cacheRootURL: 2})
	// At exactly nextUpdate an entry is stale.
	f.clock.Set(time.Date(2024, 4, 2, 10, 22, 51, 0, time.UTC))
	f.fetch(t)
	f.wantCalls(t, map[string]int{cacheRootURL: 3})
}

// TestCacheCorruptEntry: an entry that cannot be used is reported and
// refetched, never fatal, and the refetch repairs it.
func TestCacheCorruptEntry(t *testing.T) {
	validEntry := func(t *testing.T, f *cacheFixture) cacheEntry {
		data, err := os.ReadFile(f.cache.path(cacheTCBURL))
		if err != nil {
			t.Fatal(err)
		}
		var e cacheEntry
		if err := json.Unmarshal(data, &e); err != nil {
			t.Fatal(err)
		}
		return e
	}
	encode := func(t *testing.T, e cacheEntry) []byte {
		data, err := json.Marshal(e)
		if err != nil {
			t.Fatal(err)
		}
		return data
	}
	tests := []struct {
		name    string
		content func(t *testing.T, f *cacheFixture) []byte
		want    string
	}{
		{"garbage", func(*testing.T, *cacheFixture) []byte { return []byte("\x00garbage") }, "corrupt entry"},
		{"empty", func(*testing.T, *cacheFixture) []byte { return nil }, "corrupt entry"},
		{"truncated", func(t *testing.T, f *cacheFixture) []byte {
			data, _ := os.ReadFile(f.cache.path(cacheTCBURL))
			return data[:len(data)/2]
		}, "corrupt entry"},
		{"oversized", func(*testing.T, *cacheFixture) []byte {
			return []byte(strings.Repeat(" ", maxCacheEntrySize+1))
		}, "larger than"},
		{"other version", func(t *testing.T, f *cacheFixture) []byte {
			e := validEntry(t, f)
			e.Version = 2
			return encode(t, e)
		}, "entry is version 2"},
		{"other URL", func(t *testing.T, f *cacheFixture) []byte {
			e := validEntry(t, f)
			e.URL = cacheQEURL
			return encode(t, e)
		}, "entry is version 1 for"},
		{"body not usable", func(t *testing.T, f *cacheFixture) []byte {
			e := validEntry(t, f)
			e.Body = e.Body[:50]
			return encode(t, e)
		}, "is unusable, refetching: pcs: tcbInfo response: truncated JSON"},
		{"chain header lost", func(t *testing.T, f *cacheFixture) []byte {
			e := validEntry(t, f)
			e.Header = nil
			return encode(t, e)
		}, "is unusable, refetching: pcs: tcbInfo response: missing header"},
		{"signature broken", func(t *testing.T, f *cacheFixture) []byte {
			e := validEntry(t, f)
			e.Body = []byte(strings.Replace(string(e.Body), `"signature":"`, `"signature":"0`, 1))
			return encode(t, e)
		}, "is unusable, refetching: pcs: tcb_info_signature: want 128 hex characters, got 129"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newCacheFixture(t)
			want := f.fetch(t)
			if err := os.WriteFile(f.cache.path(cacheTCBURL), tt.content(t, f), 0o600); err != nil {
				t.Fatal(err)
			}
			if got := f.fetch(t); *got != *want {
				t.Error("bundle after refetch differs")
			}
			f.wantCalls(t, map[string]int{cacheTCBURL: 2, cacheQEURL: 1, cachePCKURL: 1, cacheRootURL: 1})
			errs := f.log.all()
			if len(errs) != 1 || !strings.Contains(errs[0].Error(), tt.want) {
				t.Fatalf("reported %v, want one error containing %q", errs, tt.want)
			}
			if !strings.HasPrefix(errs[0].Error(), "pcs: cache: ") {
				t.Errorf("report %q lacks the pcs: cache: prefix", errs[0])
			}
			// The refetch rewrote the entry: the next fetch is a hit.
			f.fetch(t)
			f.wantCalls(t, map[string]int{cacheTCBURL: 2})
		})
	}
}

// TestCacheFiles checks the on-disk layout: directory 0700, files 0600
// named by the URL hash, no temporary files left, and only the
// issuer-chain headers stored.
func TestCacheFiles(t *testing.T) {
	f := newCacheFixture(t)
	resp := f.fake.responses[cacheTCBURL]
	resp.header = resp.header.Clone()
	resp.header.Set("Request-ID", "abc")
	f.fake.responses[cacheTCBURL] = resp
	f.fetch(t)

	st, err := os.Stat(f.dir)
	if err != nil {
		t.Fatal(err)
	}
	if perm := st.Mode().Perm(); perm != 0o700 {
		t.Errorf("cache directory mode %o, want 700", perm)
	}
	entries, err := os.ReadDir(f.dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 4 {
		t.Errorf("%d files in the cache, want 4", len(entries))
	}
	for _, e := range entries {
		info, err := e.Info()
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasPrefix(e.Name(), ".tmp-") {
			t.Errorf("temporary file %s left behind", e.Name())
		}
		if len(e.Name()) != 64+len(".json") {
			t.Errorf("file name %q is not a SHA-256 hex", e.Name())
		}
		if perm := info.Mode().Perm(); perm != 0o600 {
			t.Errorf("%s: mode %o, want 600", e.Name(), perm)
		}
	}
	data, err := os.ReadFile(f.cache.path(cacheTCBURL))
	if err != nil {
		t.Fatal(err)
	}
	var e cacheEntry
	if err := json.Unmarshal(data, &e); err != nil {
		t.Fatal(err)
	}
	if e.URL != cacheTCBURL || e.Version != cacheVersion {
		t.Errorf("entry URL %q version %d", e.URL, e.Version)
	}
	if e.Header.Get("Request-ID") != "" || e.Header.Get("TCB-Info-Issuer-Chain") == "" {
		t.Errorf("stored headers %v, want only the issuer chain", e.Header)
	}
}

// TestCacheWriteFailure: a cache that cannot be written is reported, and
// Fetch still succeeds from the network.
func TestCacheWriteFailure(t *testing.T) {
	f := newCacheFixture(t)
	if err := os.RemoveAll(f.dir); err != nil {
		t.Fatal(err)
	}
	f.fetch(t)
	errs := f.log.all()
	if len(errs) != 4 {
		t.Fatalf("reported %d errors, want 4 (one per item): %v", len(errs), errs)
	}
	if !strings.Contains(errs[0].Error(), "pcs: cache: write entry for "+cacheTCBURL) {
		t.Errorf("report %q", errs[0])
	}
}

// TestCacheConcurrentFetch hammers one cache from several clients under
// -race: every Fetch succeeds with the same bundle and no report is made
// (atomic renames mean no reader ever sees half a file).
func TestCacheConcurrentFetch(t *testing.T) {
	f := newCacheFixture(t)
	want := f.fetch(t)
	f.clock.Set(afterAll) // everything stale: every Fetch writes all entries
	const workers, iterations = 4, 5
	var wg sync.WaitGroup
	errs := make(chan error, workers*iterations)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range iterations {
				b, err := f.client.Fetch(context.Background(), Query{TEE: TDX, FMSPC: tdxFMSPC, CA: "platform"})
				if err != nil {
					errs <- err
					continue
				}
				if *b != *want {
					errs <- os.ErrInvalid
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if reported := f.log.all(); len(reported) != 0 {
		t.Errorf("cache reported %v", reported)
	}
}

// TestNewCache checks the constructor's own errors.
func TestNewCache(t *testing.T) {
	if _, err := NewCache("", nil); err == nil {
		t.Error("empty directory accepted")
	}
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := NewCache(file, nil); err == nil {
		t.Error("a regular file accepted as cache directory")
	}
}

// TestFetchPEMPCKCRL: the PCK CRL body may come as PEM; the bundle holds
// the hex of the same DER.
func TestFetchPEMPCKCRL(t *testing.T) {
	resp := tdxResponses(t, cacheBase, pcsEscape)
	r := resp[cachePCKURL]
	der := r.body
	r.body = []byte("-----BEGIN X509 CRL-----\n" + wrap64(der) + "-----END X509 CRL-----\n")
	resp[cachePCKURL] = r
	c, err := NewClient(Config{BaseURL: cacheBase, RootCACRLURL: cacheRootURL, Getter: newFakeGetter(resp)})
	if err != nil {
		t.Fatal(err)
	}
	b, err := c.Fetch(context.Background(), Query{TEE: TDX, FMSPC: tdxFMSPC, CA: "platform"})
	if err != nil {
		t.Fatal(err)
	}
	if b.PCKCRL != crlHex(der) {
		t.Error("PEM PCK CRL not stored as the hex of its DER")
	}
}
