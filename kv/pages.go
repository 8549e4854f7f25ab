package kv

import (
	"context"
	"fmt"
	"sync"
)

// pageCache keeps verified, decoded index pages by ref. Pages are
// immutable and named by content, so a cached page is never stale: a ref
// the committed state no longer reaches is simply not asked for. It holds
// at most max pages and drops an arbitrary one when full (the root and
// upper levels are read on every lookup, so they come back at once).
type pageCache struct {
	mu  sync.Mutex
	m   map[pageRef]*page
	max int
}

func newPageCache(max int) *pageCache { return &pageCache{m: map[pageRef]*page{}, max: max} }

func (c *pageCache) get(r pageRef) *page {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.m[r]
}

func (c *pageCache) put(r pageRef, p *page) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.m[r]; !ok && len(c.m) >= c.max {
		for k := range c.m {
			delete(c.m, k)
			break
		}
	}
	c.m[r] = p
}

// pageReader is the pageSource of one committed state: the cache, else the
// host's page record, authenticated under the store's policy and the label
// its header declares, then checked against the ref asked for.
type pageReader struct {
	s   *Store
	ctx context.Context
	st  *state
}

func (s *Store) pages(ctx context.Context, st *state) pageSource {
	return pageReader{s: s, ctx: ctx, st: st}
}

func (r pageReader) page(ref pageRef) (*page, error) {
	if p := r.s.cache.get(ref); p != nil {
		return p, nil
	}
	raw, ok, err := r.s.b.Get(r.ctx, pageKey(r.s.loc, ref))
	if err != nil {
		return nil, fmt.Errorf("backend: %w", err)
	}
	if !ok {
		return nil, fmt.Errorf("%w: index page %x", ErrMissingRecord, ref[:4])
	}
	h, err := decodePageRecord(raw)
	if err != nil {
		return nil, err
	}
	plain, err := r.s.opts.Sealer.Open(r.ctx, r.s.opts.Policy, pageLabel(h.store, h.ref), h.blob)
	if err != nil {
		return nil, fmt.Errorf("%w: index page %x: %w", ErrTampered, ref[:4], err)
	}
	switch {
	case h.store != r.st.store:
		return nil, fmt.Errorf("%w: index page sealed for store %x", ErrForeignStore, h.store[:4])
	case h.ref != ref:
		return nil, fmt.Errorf("%w: index page %x served for %x", ErrReplay, h.ref[:4], ref[:4])
	}
	p, err := verifyPage(&r.st.macKey, ref, plain)
	if err != nil {
		return nil, err
	}
	r.s.cache.put(ref, p)
	return p, nil
}
