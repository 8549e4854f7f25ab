package kv

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"testing"
)

// memPages is a pageSource over pages by ref, read as the driver must:
// first the seal (here an HMAC tag under a separate key stands in for
// seal's AEAD: a changed byte fails it), then verifyPage. The host-side
// bytes are plaintext ‖ tag. reads counts page reads.
type memPages struct {
	macKey *[32]byte
	m      map[pageRef][]byte
	reads  int
}

var sealStandIn = [32]byte{0xEE}

func sealPage(plain []byte) []byte {
	tag := refFor(&sealStandIn, plain)
	return append(bytes.Clone(plain), tag[:]...)
}

func (s *memPages) page(ref pageRef) (*page, error) {
	s.reads++
	b, ok := s.m[ref]
	if !ok {
		return nil, fmt.Errorf("%w: index page %x", ErrMissingRecord, ref[:4])
	}
	if len(b) < 32 {
		return nil, fmt.Errorf("%w: index page %x: seal", ErrTampered, ref[:4])
	}
	plain := b[:len(b)-32]
	if tag := refFor(&sealStandIn, plain); !bytes.Equal(tag[:], b[len(b)-32:]) {
		return nil, fmt.Errorf("%w: index page %x: seal", ErrTampered, ref[:4])
	}
	return verifyPage(s.macKey, ref, plain)
}

func (s *memPages) commit(c *treeCommit) {
	for r, plain := range c.write {
		s.m[r] = sealPage(plain)
	}
	for _, r := range c.dead {
		delete(s.m, r)
	}
}

func newMemPages(mac *[32]byte) (*memPages, tree) {
	tr, plain := emptyTree(mac)
	return &memPages{macKey: mac, m: map[pageRef][]byte{tr.root: sealPage(plain)}}, tr
}

// reachable walks the tree and returns every page ref it reaches, checking
// sizes and uniform depth on the way.
func reachable(t *testing.T, s *memPages, tr tree) map[pageRef]bool {
	t.Helper()
	seen := map[pageRef]bool{}
	var walk func(ref pageRef, depth int)
	walk = func(ref pageRef, depth int) {
		seen[ref] = true
		if len(s.m[ref])-32 > maxPageSize {
			t.Fatalf("page of %d bytes", len(s.m[ref]))
		}
		p, err := s.page(ref)
		if err != nil {
			t.Fatal(err)
		}
		if p.leaf != (depth == tr.height) {
			t.Fatalf("%s at depth %d of %d", kindName(p.leaf), depth, tr.height)
		}
		for _, k := range p.kids {
			walk(k.ref, depth+1)
		}
	}
	walk(tr.root, 0)
	return seen
}

func name64(i int) string { return fmt.Sprintf("%064d", i) }

// TestTreeAgainstMap applies random batches of puts and deletes of 64-byte
// names, and after each checks every key against a plain map, that the
// host holds exactly the reachable pages (nothing leaked, nothing missing),
// and that a commit of k changes reads O(k · height) pages, not the tree.
func TestTreeAgainstMap(t *testing.T) {
	var mac [32]byte
	mac[0] = 9
	src, tr := newMemPages(&mac)
	ref := map[string]entry{}
	rng := rand.New(rand.NewPCG(1, 2))
	const space = 40000
	version := uint64(0)
	for batch := range 60 {
		version++
		byName := map[string]treeChange{}
		for range 1 + rng.IntN(1500) {
			n := name64(rng.IntN(space))
			e := entry{version: version}
			e.rid[0], e.sum[0] = byte(batch), byte(len(byName))
			byName[n] = treeChange{name: n, e: e, del: rng.IntN(4) == 0}
		}
		if batch == 59 { // delete everything
			clear(byName)
			for n := range ref {
				byName[n] = treeChange{name: n, del: true}
			}
		}
		changes := slices.SortedFunc(maps.Values(byName), func(a, b treeChange) int { return cmpString(a.name, b.name) })
		src.reads = 0
		c, err := tr.apply(src, changes)
		if err != nil {
			t.Fatal(err)
		}
		if limit := len(changes)*(tr.height+1) + 1; src.reads > limit {
			t.Fatalf("batch %d: %d changes read %d pages (height %d)", batch, len(changes), src.reads, tr.height)
		}
		src.commit(c)
		tr = c.next
		for _, ch := range changes {
			if ch.del {
				delete(ref, ch.name)
			} else {
				ref[ch.name] = ch.e
			}
		}
		if seen := reachable(t, src, tr); len(seen) != len(src.m) {
			t.Fatalf("batch %d: %d pages reachable, %d on the host", batch, len(seen), len(src.m))
		}
		for i := 0; i < space; i += 1 + rng.IntN(50) {
			n := name64(i)
			got, ok, err := tr.lookup(src, n)
			want, wantOK := ref[n]
			if err != nil || ok != wantOK || got != want {
				t.Fatalf("batch %d: lookup(%d) = %v, %v, %v; want %v, %v", batch, i, got, ok, err, want, wantOK)
			}
		}
	}
	if tr.height != 0 || len(src.m) != 1 {
		t.Fatalf("after deleting every key: height %d, %d pages", tr.height, len(src.m))
	}
}

func cmpString(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// TestTreeHeight: 64-byte names, 29 per leaf and 41 children per
// internal page, so 30,000 keys make a tree of height 2.
func TestTreeHeight(t *testing.T) {
	var mac [32]byte
	src, tr := newMemPages(&mac)
	var changes []treeChange
	for i := range 30000 {
		changes = append(changes, treeChange{name: name64(i), e: entry{version: 1}})
	}
	c, err := tr.apply(src, changes)
	if err != nil {
		t.Fatal(err)
	}
	src.commit(c)
	tr = c.next
	if tr.height != 2 {
		t.Fatalf("height %d, want 2", tr.height)
	}
	src.reads = 0
	if _, ok, err := tr.lookup(src, name64(12345)); !ok || err != nil || src.reads != 3 {
		t.Fatalf("lookup: %v, %v after %d page reads, want 3", ok, err, src.reads)
	}
}

// Each thing a host can do to a page under a root it cannot change: serve
// an older version of the page, another page, a page with a byte changed,
// truncated, or its items reordered, or no page.
func TestTreePageAttacks(t *testing.T) {
	var mac [32]byte
	mac[1] = 3
	src, tr := newMemPages(&mac)
	put := func(from, to int, v uint64) {
		var ch []treeChange
		for i := from; i < to; i++ {
			ch = append(ch, treeChange{name: name64(i), e: entry{version: v}})
		}
		c, err := tr.apply(src, ch)
		if err != nil {
			t.Fatal(err)
		}
		src.commit(c)
		tr = c.next
	}
	put(0, 1000, 1)
	old := maps.Clone(src.m)
	oldTree := tr
	put(0, 1, 2) // rewrites one leaf and the root
	leafOf := func(tr tree, s map[pageRef][]byte, name string) pageRef {
		b := s[tr.root]
		root, _ := decodePage(b[:len(b)-32])
		return root.kids[childFor(root.kids, name)].ref
	}
	newLeaf, oldLeaf := leafOf(tr, src.m, name64(0)), leafOf(oldTree, old, name64(0))
	otherLeaf := leafOf(tr, src.m, name64(999))
	good := bytes.Clone(src.m[newLeaf])
	for _, tc := range []struct {
		name  string
		serve []byte
		want  error
	}{
		{"older page under the newer root", old[oldLeaf], ErrReplay},
		{"another page of the tree", src.m[otherLeaf], ErrReplay},
		{"a byte changed", func() []byte { b := bytes.Clone(good); b[len(b)-1] ^= 1; return b }(), ErrTampered},
		{"truncated", good[:len(good)-1], ErrTampered},
		{"items reordered", func() []byte {
			p, _ := decodePage(good[:len(good)-32])
			p.items[0], p.items[1] = p.items[1], p.items[0]
			return append(encodePage(p), good[len(good)-32:]...)
		}(), ErrTampered},
		{"missing", nil, ErrMissingRecord},
	} {
		if tc.serve == nil {
			delete(src.m, newLeaf)
		} else {
			src.m[newLeaf] = tc.serve
		}
		if _, _, err := tr.lookup(src, name64(0)); !errors.Is(err, tc.want) {
			t.Errorf("%s: lookup = %v, want %v", tc.name, err, tc.want)
		}
		if _, err := tr.apply(src, []treeChange{{name: name64(1), e: entry{version: 3}}}); !errors.Is(err, tc.want) {
			t.Errorf("%s: apply = %v, want %v", tc.name, err, tc.want)
		}
	}
	src.m[newLeaf] = good
	// The whole tree rolled back under the newer root: the root itself is
	// the older page.
	src.m[tr.root] = old[oldTree.root]
	if _, _, err := tr.lookup(src, name64(5)); !errors.Is(err, ErrReplay) {
		t.Errorf("rolled-back root: lookup = %v, want ErrReplay", err)
	}
}

// TestPageDecodeRejectsEveryPrefix: no strict prefix of a page decodes,
// nor a page with a byte appended.
func TestPageDecodeRejectsEveryPrefix(t *testing.T) {
	for _, p := range []*page{
		{leaf: true, items: []leafItem{{name: "a", e: entry{version: 1}}, {name: "bb", e: entry{version: 2}}}},
		{kids: []childItem{{first: ""}, {first: "m"}}},
	} {
		b := encodePage(p)
		for n := range len(b) {
			if q, err := decodePage(b[:n]); !errors.Is(err, ErrTampered) {
				t.Fatalf("prefix of %d/%d bytes decoded to %+v, %v", n, len(b), q, err)
			}
		}
		if _, err := decodePage(append(b, 0)); !errors.Is(err, ErrTampered) {
			t.Fatal("trailing byte accepted")
		}
	}
}

// FuzzPage feeds the page decoder arbitrary bytes: it must not panic, must
// fail closed with ErrTampered, and what it accepts must re-encode to the
// same bytes.
func FuzzPage(f *testing.F) {
	var mac [32]byte
	src, tr := newMemPages(&mac)
	_, plain := emptyTree(&mac)
	f.Add(plain)
	var ch []treeChange
	for i := range 300 {
		ch = append(ch, treeChange{name: name64(i), e: entry{version: 1}})
	}
	c, _ := tr.apply(src, ch)
	for _, p := range c.write {
		f.Add(p)
	}
	f.Add([]byte(pageMagic))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := decodePage(b)
		if err != nil {
			if !errors.Is(err, ErrTampered) {
				t.Fatalf("error %v is not ErrTampered", err)
			}
			return
		}
		if !bytes.Equal(encodePage(p), b) {
			t.Fatal("page does not round-trip")
		}
	})
}
