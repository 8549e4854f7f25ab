package pcs

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
)

// cacheVersion is the format version of cache files. Bump it when the
// format changes; files of another version are refetched.
const cacheVersion = 1

// cachedHeaders are the only response headers kept in the cache: the
// issuer chains. Other headers (dates, request IDs) are not needed to
// rebuild a bundle.
var cachedHeaders = func() []string {
	var hs []string
	for _, l := range [][]string{tcbInfoChainHeaders, qeIdentityChainHeaders, pckCRLChainHeaders} {
		hs = append(hs, l...)
	}
	return hs
}()

// Cache is an on-disk cache of PCS responses, one file per URL, kept until
// the nextUpdate of the item in it (the client decides freshness with its
// injected clock). The cache never decides trust: it stores bytes, and
// whatever comes out of it is verified by evidence/dcap exactly like a
// fresh download. A Cache is safe for concurrent use, also by several
// processes: files are replaced atomically.
type Cache struct {
	dir   string
	onErr func(error)
}

// NewCache returns a cache in dir, creating it (mode 0700) if needed.
// onError, if not nil, is told about entries that could not be read or
// written; such entries are then simply refetched, so a broken cache costs
// requests but never fails a fetch. onError may be called from several
// goroutines at once when the cache is shared by concurrent Fetch calls.
func NewCache(dir string, onError func(error)) (*Cache, error) {
	if dir == "" {
		return nil, errors.New("pcs: cache: empty directory name")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("pcs: cache: %w", err)
	}
	return &Cache{dir: dir, onErr: onError}, nil
}

// cacheEntry is the JSON content of one cache file.
type cacheEntry struct {
	Version int         `json:"version"`
	URL     string      `json:"url"`
	Header  http.Header `json:"header,omitempty"`
	Body    []byte      `json:"body"`
}

// path names the file for url: the hex SHA-256 of the URL, so any URL maps
// to a safe, fixed-length file name.
func (c *Cache) path(url string) string {
	sum := sha256.Sum256([]byte(url))
	return filepath.Join(c.dir, hex.EncodeToString(sum[:])+".json")
}

// report passes err to the error hook, if any.
func (c *Cache) report(err error) {
	if c.onErr != nil {
		c.onErr(err)
	}
}

// load returns the stored response for url. A missing file is a plain
// miss; an unreadable or malformed one is reported and is also a miss.
func (c *Cache) load(url string) (http.Header, []byte, bool) {
	p := c.path(url)
	f, err := os.Open(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil, false
	}
	if err != nil {
		c.report(fmt.Errorf("pcs: cache: %w", err))
		return nil, nil, false
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxCacheEntrySize+1))
	if err != nil {
		c.report(fmt.Errorf("pcs: cache: %s: %w", p, err))
		return nil, nil, false
	}
	if len(data) > maxCacheEntrySize {
		c.report(fmt.Errorf("pcs: cache: %s: larger than %d bytes", p, maxCacheEntrySize))
		return nil, nil, false
	}
	var e cacheEntry
	if err := json.Unmarshal(data, &e); err != nil {
		c.report(fmt.Errorf("pcs: cache: %s: corrupt entry: %w", p, err))
		return nil, nil, false
	}
	if e.Version != cacheVersion || e.URL != url {
		c.report(fmt.Errorf("pcs: cache: %s: entry is version %d for %q, want version %d for %q", p, e.Version, e.URL, cacheVersion, url))
		return nil, nil, false
	}
	return e.Header, e.Body, true
}

// store writes the response for url: to a temporary file in the cache
// directory, synced, then renamed over the entry, so readers see the old
// or the new entry and never half of one. Failures are reported, not
// returned: the caller already has the response.
func (c *Cache) store(url string, h http.Header, body []byte) {
	e := cacheEntry{Version: cacheVersion, URL: url, Body: body}
	for _, name := range cachedHeaders {
		if vs := h.Values(name); len(vs) > 0 {
			if e.Header == nil {
				e.Header = make(http.Header)
			}
			e.Header[http.CanonicalHeaderKey(name)] = vs
		}
	}
	data, err := json.Marshal(e)
	if err != nil {
		c.report(fmt.Errorf("pcs: cache: encode entry for %s: %w", url, err))
		return
	}
	if err := c.writeFile(c.path(url), data); err != nil {
		c.report(fmt.Errorf("pcs: cache: write entry for %s: %w", url, err))
	}
}

// writeFile atomically replaces path with data, mode 0600.
func (c *Cache) writeFile(path string, data []byte) (err error) {
	// os.CreateTemp creates the file with mode 0600.
	f, err := os.CreateTemp(c.dir, ".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			os.Remove(tmp)
		}
	}()
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
