package kv

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"sort"
)

// Host layout. Everything the host stores for a store sits under
// hostPrefix(name) = "kv1\x00" ‖ locator(16), where the locator is a hash of
// the store name (the name itself is not sent):
//
//	prefix ‖ 's'        the state record
//	prefix ‖ 'r' ‖ rid  one record per key, rid = HMAC-SHA256(macKey, key)
//
// Record (host bytes, all integers big-endian):
//
//	"KVR1" | store id (16) | rid (32) | version u64 | sealed blob
//
// State (host bytes):
//
//	"KVS1" | locator (16) | store id (16) | version u64 | sealed blob
//
// The clear header repeats what the seal label binds, so that the store can
// name what the host did (swap, replay, foreign store) after authenticating
// the blob under the header's own label; it is never trusted before that.
// Do NOT change these layouts: they are on disk.
const (
	recordMagic = "KVR1"
	stateMagic  = "KVS1"

	storeIDSize = 16
	locatorSize = 16
	ridSize     = sha256.Size

	recordHeaderSize = 4 + storeIDSize + ridSize + 8
	stateHeaderSize  = 4 + locatorSize + storeIDSize + 8
)

// Seal labels: what each blob's AAD binds besides the seal header.
const (
	recordLabelTag = "cloister kv v1 record\x00"
	stateLabelTag  = "cloister kv v1 state\x00"
	locatorTag     = "cloister kv v1 store\x00"
)

type (
	storeID [storeIDSize]byte
	locator [locatorSize]byte
	rid     [ridSize]byte
)

// locatorFor hashes a store name into its host locator. It hides the name
// from casual reading, not from guessing: store names are namespaces, and
// the secret parts (key names, values) are MACed or sealed.
func locatorFor(name string) locator {
	h := sha256.Sum256([]byte(locatorTag + name))
	var l locator
	copy(l[:], h[:])
	return l
}

func hostPrefix(l locator) []byte {
	return append([]byte("kv1\x00"), l[:]...)
}

func stateKey(l locator) []byte { return append(hostPrefix(l), 's') }

func recordPrefix(l locator) []byte { return append(hostPrefix(l), 'r') }

func recordKey(l locator, r rid) []byte { return append(recordPrefix(l), r[:]...) }

// recordLabel is the seal label of a record: store id ‖ rid ‖ version. A
// blob moved to another record, another store or another version fails
// authentication there.
func recordLabel(s storeID, r rid, version uint64) []byte {
	b := make([]byte, 0, len(recordLabelTag)+storeIDSize+ridSize+8)
	b = append(b, recordLabelTag...)
	b = append(b, s[:]...)
	b = append(b, r[:]...)
	return binary.BigEndian.AppendUint64(b, version)
}

// stateLabel is the seal label of a state: locator ‖ store id ‖ version.
func stateLabel(l locator, s storeID, version uint64) []byte {
	b := make([]byte, 0, len(stateLabelTag)+locatorSize+storeIDSize+8)
	b = append(b, stateLabelTag...)
	b = append(b, l[:]...)
	b = append(b, s[:]...)
	return binary.BigEndian.AppendUint64(b, version)
}

// recordHeader is the clear header of a host record. UNTRUSTED until the
// blob authenticates under recordLabel(store, rid, version).
type recordHeader struct {
	store   storeID
	rid     rid
	version uint64
	blob    []byte // aliases the input
}

func encodeRecord(h recordHeader) []byte {
	b := make([]byte, 0, recordHeaderSize+len(h.blob))
	b = append(b, recordMagic...)
	b = append(b, h.store[:]...)
	b = append(b, h.rid[:]...)
	b = binary.BigEndian.AppendUint64(b, h.version)
	return append(b, h.blob...)
}

// decodeRecord parses a host record, failing closed: short input, bad
// magic, version 0 or an empty blob are ErrTampered.
func decodeRecord(b []byte) (recordHeader, error) {
	var h recordHeader
	if len(b) <= recordHeaderSize || string(b[:4]) != recordMagic {
		return h, fmt.Errorf("%w: record header (%d bytes)", ErrTampered, len(b))
	}
	copy(h.store[:], b[4:])
	copy(h.rid[:], b[4+storeIDSize:])
	h.version = binary.BigEndian.Uint64(b[4+storeIDSize+ridSize:])
	if h.version == 0 {
		return h, fmt.Errorf("%w: record version 0", ErrTampered)
	}
	h.blob = b[recordHeaderSize:]
	return h, nil
}

// stateHeader is the clear header of the host state record. UNTRUSTED until
// the blob authenticates under stateLabel.
type stateHeader struct {
	loc     locator
	store   storeID
	version uint64
	blob    []byte
}

func encodeStateRecord(h stateHeader) []byte {
	b := make([]byte, 0, stateHeaderSize+len(h.blob))
	b = append(b, stateMagic...)
	b = append(b, h.loc[:]...)
	b = append(b, h.store[:]...)
	b = binary.BigEndian.AppendUint64(b, h.version)
	return append(b, h.blob...)
}

func decodeStateRecord(b []byte) (stateHeader, error) {
	var h stateHeader
	if len(b) <= stateHeaderSize || string(b[:4]) != stateMagic {
		return h, fmt.Errorf("%w: state header (%d bytes)", ErrTampered, len(b))
	}
	copy(h.loc[:], b[4:])
	copy(h.store[:], b[4+locatorSize:])
	h.version = binary.BigEndian.Uint64(b[4+locatorSize+storeIDSize:])
	if h.version == 0 {
		return h, fmt.Errorf("%w: state version 0", ErrTampered)
	}
	h.blob = b[stateHeaderSize:]
	return h, nil
}

// entry is one key of the index (a leaf item): its record id, the store
// version at which its record was last written, and the SHA-256 of the
// record's host bytes. The sum is what makes the state cover record contents: an
// authentic record of the same key and version that the state does not
// list (an unacknowledged write the host kept) does not match it.
type entry struct {
	rid     rid
	version uint64
	sum     [32]byte
}

// state is the sealed state plaintext: what the enclave needs to read the
// store, and the freshness data.
//
//	"KVST" | format u8 (3) | store id (16) | mac key (32) | version u64 |
//	root ref (32) | height u8 | keys u64
//
// The root ref names the index's root page (page.go), which names every
// other page by content, down to the leaves that hold each record's sum:
// the state covers every page and every record. Formats 1 and 2 (one
// record holding the whole index) are refused.
type state struct {
	store   storeID
	macKey  [32]byte
	version uint64
	index   tree
	keys    uint64
}

const (
	stateFormatMagic   = "KVST"
	stateFormatVersion = 3
	stateSize          = 4 + 1 + storeIDSize + 32 + 8 + 32 + 1 + 8
)

func encodeState(s *state) []byte {
	b := make([]byte, 0, stateSize)
	b = append(b, stateFormatMagic...)
	b = append(b, stateFormatVersion)
	b = append(b, s.store[:]...)
	b = append(b, s.macKey[:]...)
	b = binary.BigEndian.AppendUint64(b, s.version)
	b = append(b, s.index.root[:]...)
	b = append(b, byte(s.index.height))
	return binary.BigEndian.AppendUint64(b, s.keys)
}

// decodeState parses an authenticated state plaintext. It still fails
// closed (ErrTampered) on anything encodeState would not write.
func decodeState(b []byte) (*state, error) {
	bad := func(what string) (*state, error) {
		return nil, fmt.Errorf("%w: state: %s", ErrTampered, what)
	}
	if len(b) < 5 || string(b[:4]) != stateFormatMagic {
		return bad("header")
	}
	if b[4] != stateFormatVersion {
		return bad(fmt.Sprintf("format %d, want %d (formats 1 and 2 are not read)", b[4], stateFormatVersion))
	}
	if len(b) != stateSize {
		return bad(fmt.Sprintf("%d bytes, want %d", len(b), stateSize))
	}
	s := &state{}
	p := b[5:]
	copy(s.store[:], p)
	p = p[storeIDSize:]
	copy(s.macKey[:], p)
	p = p[32:]
	s.version = binary.BigEndian.Uint64(p)
	p = p[8:]
	copy(s.index.root[:], p)
	p = p[32:]
	s.index.height = int(p[0])
	s.keys = binary.BigEndian.Uint64(p[1:])
	if s.index.height > maxHeight {
		return bad(fmt.Sprintf("index height %d", s.index.height))
	}
	s.index.macKey = &s.macKey
	return s, nil
}

// Index page host record:
//
//	"KVP1" | store id (16) | ref (32) | sealed blob
//
// sealed with pageLabel(store, ref); like a record's, the clear header is
// only read to name what the host did once the blob authenticates.
const (
	pageRecordMagic      = "KVP1"
	pageRecordHeaderSize = 4 + storeIDSize + 32
	pageLabelTag         = "cloister kv v3 page\x00"
)

func pagePrefix(l locator) []byte { return append(hostPrefix(l), 'p') }

func pageKey(l locator, r pageRef) []byte { return append(pagePrefix(l), r[:]...) }

func pageLabel(s storeID, r pageRef) []byte {
	b := make([]byte, 0, len(pageLabelTag)+storeIDSize+32)
	b = append(b, pageLabelTag...)
	b = append(b, s[:]...)
	return append(b, r[:]...)
}

type pageRecord struct {
	store storeID
	ref   pageRef
	blob  []byte
}

func encodePageRecord(h pageRecord) []byte {
	b := make([]byte, 0, pageRecordHeaderSize+len(h.blob))
	b = append(b, pageRecordMagic...)
	b = append(b, h.store[:]...)
	b = append(b, h.ref[:]...)
	return append(b, h.blob...)
}

func decodePageRecord(b []byte) (pageRecord, error) {
	var h pageRecord
	if len(b) <= pageRecordHeaderSize || string(b[:4]) != pageRecordMagic {
		return h, fmt.Errorf("%w: index page record header (%d bytes)", ErrTampered, len(b))
	}
	copy(h.store[:], b[4:])
	copy(h.ref[:], b[4+storeIDSize:])
	h.blob = b[pageRecordHeaderSize:]
	return h, nil
}

func sortStrings(s []string) { sort.Strings(s) }
