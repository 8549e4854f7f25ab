package kv

import "context"

// RecordKeyForTest returns the host key of name's record, which only the
// enclave can compute (the MAC key is in the sealed state).
func (s *Store) RecordKeyForTest(name string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return string(recordKey(s.loc, ridFor(&s.core.st.macKey, name)))
}

// StateKeyForTest returns the host key of the store's state record.
func StateKeyForTest(name string) string { return string(stateKey(locatorFor(name))) }

// IndexPathKeysForTest returns the host keys of the index pages on the path
// from the committed root to name's leaf, root first.
func (s *Store) IndexPathKeysForTest(name string) ([]string, error) {
	st := s.committed()
	src := s.pages(context.Background(), st)
	var out []string
	ref := st.index.root
	for {
		out = append(out, string(pageKey(s.loc, ref)))
		p, err := src.page(ref)
		if err != nil {
			return nil, err
		}
		if p.leaf {
			return out, nil
		}
		ref = p.kids[childFor(p.kids, name)].ref
	}
}

// DropPageCacheForTest forgets every cached index page, so the next reads
// go to the host.
func (s *Store) DropPageCacheForTest() { s.cache = newPageCache(pageCacheSize) }

// SetPageCacheForTest gives the store a page cache of n pages; call it
// before the store is used concurrently.
func (s *Store) SetPageCacheForTest(n int) { s.cache = newPageCache(n) }
