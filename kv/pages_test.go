package kv

import "testing"

// The page cache never holds more than its cap, and keeps the page just
// put (a reader that verified it uses it at once).
func TestPageCacheCap(t *testing.T) {
	c := newPageCache(16)
	for i := range 100 {
		var r pageRef
		r[0], r[1] = byte(i), byte(i>>8)
		p := &page{leaf: true}
		c.put(r, p)
		if c.get(r) != p {
			t.Fatalf("page %d not kept right after put", i)
		}
		if n := len(c.m); n > 16 {
			t.Fatalf("cache holds %d pages, cap 16", n)
		}
	}
}
