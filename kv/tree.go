package kv

import (
	"crypto/subtle"
	"fmt"
	"sort"
)

// pageSource returns the page named ref, verified: a driver reads the
// page's host record, opens its seal, and checks refFor(plaintext) == ref
// (verifyPage) before decoding. The tree never sees an unverified page.
type pageSource interface {
	page(ref pageRef) (*page, error)
}

// verifyPage checks that plain is the page named ref and decodes it. A page
// of this store that is not the one named (another page, an older version
// of it) is ErrReplay; anything else that does not decode is ErrTampered.
func verifyPage(macKey *[32]byte, ref pageRef, plain []byte) (*page, error) {
	got := refFor(macKey, plain)
	if subtle.ConstantTimeCompare(got[:], ref[:]) != 1 {
		if _, err := decodePage(plain); err == nil {
			return nil, fmt.Errorf("%w: index page %x served for %x", ErrReplay, got[:4], ref[:4])
		}
		return nil, fmt.Errorf("%w: index page %x", ErrTampered, ref[:4])
	}
	return decodePage(plain)
}

// tree is the authenticated index: its root ref and height (0: the root is
// a leaf). It is a value: apply returns a new tree and never changes pages,
// which are immutable and named by content (copy on write).
type tree struct {
	macKey *[32]byte
	root   pageRef
	height int
}

// emptyTree returns the tree of no keys and its one page.
func emptyTree(macKey *[32]byte) (tree, []byte) {
	plain := encodePage(&page{leaf: true})
	return tree{macKey: macKey, root: refFor(macKey, plain), height: 0}, plain
}

// lookup returns name's entry: height+1 page reads.
func (t tree) lookup(src pageSource, name string) (entry, bool, error) {
	ref := t.root
	for depth := 0; ; depth++ {
		p, err := src.page(ref)
		if err != nil {
			return entry{}, false, err
		}
		if p.leaf != (depth == t.height) {
			return entry{}, false, fmt.Errorf("%w: index page at depth %d of %d is a %s", ErrTampered, depth, t.height, kindName(p.leaf))
		}
		if p.leaf {
			i := sort.Search(len(p.items), func(i int) bool { return p.items[i].name >= name })
			if i < len(p.items) && p.items[i].name == name {
				return p.items[i].e, true, nil
			}
			return entry{}, false, nil
		}
		ref = p.kids[childFor(p.kids, name)].ref
	}
}

func kindName(leaf bool) string {
	if leaf {
		return "leaf"
	}
	return "internal page"
}

// childFor returns the index of the child whose range holds name: the last
// child whose first name is <= name, or the first child.
func childFor(kids []childItem, name string) int {
	i := sort.Search(len(kids), func(i int) bool { return kids[i].first > name })
	return max(i-1, 0)
}

// treeChange is one name's new entry, or its deletion.
type treeChange struct {
	name string
	e    entry
	del  bool
}

// treeCommit is the outcome of apply: the new tree, the pages to write (by
// ref, plaintext) and the refs no longer reachable, which the same atomic
// host batch deletes. A ref both written and dead is written.
type treeCommit struct {
	next  tree
	write map[pageRef][]byte
	dead  []pageRef
}

// apply returns the tree with changes (sorted by name, names unique)
// applied. Only the pages on the paths to changed names are read and
// rewritten: O(k · height) pages for k changes.
func (t tree) apply(src pageSource, changes []treeChange) (*treeCommit, error) {
	c := &treeCommit{write: map[pageRef][]byte{}}
	items, err := t.update(src, c, t.root, 0, changes)
	if err != nil {
		return nil, err
	}
	height := t.height
	for len(items) > 1 {
		if items, err = t.pack(c, items, false); err != nil {
			return nil, err
		}
		height++
	}
	switch {
	case len(items) == 0:
		nt, plain := emptyTree(t.macKey)
		c.write[nt.root] = plain
		c.next = nt
	default:
		c.next = tree{macKey: t.macKey, root: items[0].ref, height: height}
	}
	// A root with one child is replaced by the child.
	for c.next.height > 0 {
		plain, ok := c.write[c.next.root]
		if !ok {
			break
		}
		p, err := decodePage(plain)
		if err != nil || p.leaf || len(p.kids) != 1 {
			break
		}
		delete(c.write, c.next.root)
		c.next.root, c.next.height = p.kids[0].ref, c.next.height-1
	}
	dead := c.dead[:0]
	for _, r := range c.dead {
		if _, rewritten := c.write[r]; !rewritten {
			dead = append(dead, r)
		}
	}
	c.dead = dead
	return c, nil
}

// update rewrites the subtree at ref for changes (all within its range)
// and returns the child items that replace it in its parent: none when it
// became empty, several when it split.
func (t tree) update(src pageSource, c *treeCommit, ref pageRef, depth int, changes []treeChange) ([]childItem, error) {
	p, err := src.page(ref)
	if err != nil {
		return nil, err
	}
	if p.leaf != (depth == t.height) {
		return nil, fmt.Errorf("%w: index page at depth %d of %d is a %s", ErrTampered, depth, t.height, kindName(p.leaf))
	}
	c.dead = append(c.dead, ref)
	if p.leaf {
		return t.pack(c, nil, true, mergeLeaf(p.items, changes)...)
	}
	var out []childItem
	i := 0
	for k, kid := range p.kids {
		// The changes in this child's range: up to the next child's first.
		j := i
		if k+1 < len(p.kids) {
			for j < len(changes) && changes[j].name < p.kids[k+1].first {
				j++
			}
		} else {
			j = len(changes)
		}
		if j == i {
			out = append(out, kid)
			continue
		}
		repl, err := t.update(src, c, kid.ref, depth+1, changes[i:j])
		if err != nil {
			return nil, err
		}
		out = append(out, repl...)
		i = j
	}
	if len(out) == 0 {
		return nil, nil
	}
	return t.pack(c, out, false)
}

// mergeLeaf applies sorted changes to sorted items.
func mergeLeaf(items []leafItem, changes []treeChange) []leafItem {
	out := make([]leafItem, 0, len(items)+len(changes))
	i, j := 0, 0
	for i < len(items) || j < len(changes) {
		switch {
		case j == len(changes) || (i < len(items) && items[i].name < changes[j].name):
			out = append(out, items[i])
			i++
		default:
			ch := changes[j]
			if i < len(items) && items[i].name == ch.name {
				i++
			}
			if !ch.del {
				out = append(out, leafItem{name: ch.name, e: ch.e})
			}
			j++
		}
	}
	return out
}

// pack writes kids (or, for leaf, items) into as few pages as fit
// maxPageSize, in order, and returns their child items. A leaf with no
// items yields no page.
func (t tree) pack(c *treeCommit, kids []childItem, leaf bool, items ...leafItem) ([]childItem, error) {
	var out []childItem
	emit := func(p *page, first string) {
		plain := encodePage(p)
		r := refFor(t.macKey, plain)
		c.write[r] = plain
		out = append(out, childItem{first: first, ref: r})
	}
	if leaf {
		size, start := pageHeader, 0
		for i, it := range items {
			s := leafItemSize(it.name)
			if i > start && (size+s > maxPageSize || i-start == maxItems) {
				emit(&page{leaf: true, items: items[start:i:i]}, items[start].name)
				size, start = pageHeader, i
			}
			size += s
		}
		if start < len(items) {
			emit(&page{leaf: true, items: items[start:]}, items[start].name)
		}
		return out, nil
	}
	size, start := pageHeader, 0
	for i, k := range kids {
		s := childItemSize(k.first)
		if i > start && (size+s > maxPageSize || i-start == maxItems) {
			emit(&page{kids: kids[start:i:i]}, kids[start].first)
			size, start = pageHeader, i
		}
		size += s
	}
	emit(&page{kids: kids[start:]}, kids[start].first)
	return out, nil
}

// scan calls fn for every leaf item with name >= from, in name order, until
// fn returns false.
func (t tree) scan(src pageSource, from string, fn func(leafItem) bool) error {
	_, err := t.scanAt(src, t.root, 0, from, fn)
	return err
}

func (t tree) scanAt(src pageSource, ref pageRef, depth int, from string, fn func(leafItem) bool) (bool, error) {
	p, err := src.page(ref)
	if err != nil {
		return false, err
	}
	if p.leaf != (depth == t.height) {
		return false, fmt.Errorf("%w: index page at depth %d of %d is a %s", ErrTampered, depth, t.height, kindName(p.leaf))
	}
	if p.leaf {
		for _, it := range p.items[sort.Search(len(p.items), func(i int) bool { return p.items[i].name >= from }):] {
			if !fn(it) {
				return false, nil
			}
		}
		return true, nil
	}
	for _, k := range p.kids[childFor(p.kids, from):] {
		more, err := t.scanAt(src, k.ref, depth+1, from, fn)
		if err != nil || !more {
			return false, err
		}
	}
	return true, nil
}
