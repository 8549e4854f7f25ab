package kv

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
)

// Pages of the authenticated index (a Merkle B+-tree keyed by name). A page
// is named by its ref, HMAC-SHA256(MAC key, page plaintext): a parent holds
// each child's ref, and the state holds the root's, so the counter-protected
// state covers every page and, through the leaves' sums, every record. The
// MAC key keeps refs from confirming guesses about page contents.
//
// Page plaintext (all integers big-endian):
//
//	"KVPG" | format u8 (1) | kind u8 (0 leaf, 1 internal) | count u16 | items
//	leaf item:     u16 len | name | rid (32) | version u64 | sum (32)
//	internal item: u16 len | first name (may be empty) | child ref (32)
//
// Names are strictly increasing within a page. Do NOT change this layout:
// it is on disk.
const (
	pageMagic    = "KVPG"
	pageFormat   = 1
	pageLeaf     = 0
	pageInternal = 1
	pageHeader   = 4 + 1 + 1 + 2

	pageRefTag = "cloister kv v2 page\x00"
)

// pageRef names a page by content.
type pageRef [sha256.Size]byte

type leafItem struct {
	name string
	e    entry
}

type childItem struct {
	first string // the least name under the child (the leftmost child's may be "")
	ref   pageRef
}

// page is a decoded page: a leaf (items) or an internal node (kids).
type page struct {
	leaf  bool
	items []leafItem
	kids  []childItem
}

func leafItemSize(n string) int  { return 2 + len(n) + ridSize + 8 + 32 }
func childItemSize(n string) int { return 2 + len(n) + 32 }

// refFor returns the ref of a page plaintext under the store's MAC key.
func refFor(macKey *[32]byte, plain []byte) pageRef {
	m := hmac.New(sha256.New, macKey[:])
	m.Write([]byte(pageRefTag))
	m.Write(plain)
	var r pageRef
	m.Sum(r[:0])
	return r
}

func encodePage(p *page) []byte {
	kind, n := byte(pageInternal), len(p.kids)
	if p.leaf {
		kind, n = pageLeaf, len(p.items)
	}
	b := make([]byte, 0, maxPageSize)
	b = append(b, pageMagic...)
	b = append(b, pageFormat, kind)
	b = binary.BigEndian.AppendUint16(b, uint16(n))
	if p.leaf {
		for _, it := range p.items {
			b = binary.BigEndian.AppendUint16(b, uint16(len(it.name)))
			b = append(b, it.name...)
			b = append(b, it.e.rid[:]...)
			b = binary.BigEndian.AppendUint64(b, it.e.version)
			b = append(b, it.e.sum[:]...)
		}
		return b
	}
	for _, k := range p.kids {
		b = binary.BigEndian.AppendUint16(b, uint16(len(k.first)))
		b = append(b, k.first...)
		b = append(b, k.ref[:]...)
	}
	return b
}

// decodePage parses a page plaintext, failing closed with ErrTampered on
// anything encodePage would not write: a bad header or kind, a count over
// the cap, names out of order, empty or over MaxKeySize (only an internal
// page's first name may be empty), a leaf version of 0, a truncated item,
// trailing bytes, or a page over maxPageSize.
func decodePage(b []byte) (*page, error) {
	bad := func(format string, args ...any) (*page, error) {
		return nil, fmt.Errorf("%w: index page: %s", ErrTampered, fmt.Sprintf(format, args...))
	}
	if len(b) > maxPageSize {
		return bad("%d bytes, limit %d", len(b), maxPageSize)
	}
	if len(b) < pageHeader || string(b[:4]) != pageMagic {
		return bad("header")
	}
	if b[4] != pageFormat {
		return bad("format %d", b[4])
	}
	kind := b[5]
	if kind != pageLeaf && kind != pageInternal {
		return bad("kind %d", kind)
	}
	n := int(binary.BigEndian.Uint16(b[6:]))
	if n > maxItems {
		return bad("%d items", n)
	}
	p := &page{leaf: kind == pageLeaf}
	if kind == pageInternal && n == 0 {
		return bad("internal page without children")
	}
	rest := b[pageHeader:]
	prev := ""
	for i := range n {
		if len(rest) < 2 {
			return bad("item %d truncated", i)
		}
		l := int(binary.BigEndian.Uint16(rest))
		rest = rest[2:]
		if l > MaxKeySize || l > len(rest) {
			return bad("item %d name length %d", i, l)
		}
		name := string(rest[:l])
		rest = rest[l:]
		if (l == 0 && (p.leaf || i > 0)) || (i > 0 && name <= prev) {
			return bad("item %d name out of order or empty", i)
		}
		prev = name
		if p.leaf {
			if len(rest) < ridSize+8+32 {
				return bad("item %d truncated", i)
			}
			var e entry
			copy(e.rid[:], rest)
			e.version = binary.BigEndian.Uint64(rest[ridSize:])
			copy(e.sum[:], rest[ridSize+8:])
			rest = rest[ridSize+8+32:]
			if e.version == 0 {
				return bad("item %d version 0", i)
			}
			p.items = append(p.items, leafItem{name: name, e: e})
			continue
		}
		if len(rest) < 32 {
			return bad("item %d truncated", i)
		}
		var r pageRef
		copy(r[:], rest)
		rest = rest[32:]
		p.kids = append(p.kids, childItem{first: name, ref: r})
	}
	if len(rest) != 0 {
		return bad("%d trailing bytes", len(rest))
	}
	return p, nil
}
