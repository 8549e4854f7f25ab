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

// entry is one key of the index: its record id, the store version at
// which its record was last written, and the SHA-256 of the record's host
// bytes. The sum is what makes the state cover record contents: an
// authentic record of the same key and version that the state does not
// list (an unacknowledged write the host kept) does not match it.
type entry struct {
	rid     rid
	version uint64
	sum     [32]byte
}

// entrySize is the encoded size of an entry with a name of n bytes.
func entrySize(n int) int { return ridSize + 8 + 32 + 2 + n }

// state is the sealed state plaintext: everything the enclave needs to
// read the store, and the freshness data.
//
//	"KVST" | format u8 (2) | store id (16) | mac key (32) | version u64 |
//	count u32 | count × (rid (32) | version u64 | sum (32) | u16 len | name)
//
// Entries are sorted by name and names are unique. Format 1 (the first
// release) carried no sums and is refused: its states do not cover record
// contents.
type state struct {
	store   storeID
	macKey  [32]byte
	version uint64
	entries map[string]entry
	names   []string // the keys of entries, sorted: kept so commits merge instead of sorting
}

const (
	stateFormatMagic   = "KVST"
	stateFormatVersion = 2
	stateFixedSize     = 4 + 1 + storeIDSize + 32 + 8 + 4
)

func encodeState(s *state) []byte {
	names := s.names
	b := make([]byte, 0, stateFixedSize+len(names)*entrySize(16))
	b = append(b, stateFormatMagic...)
	b = append(b, stateFormatVersion)
	b = append(b, s.store[:]...)
	b = append(b, s.macKey[:]...)
	b = binary.BigEndian.AppendUint64(b, s.version)
	b = binary.BigEndian.AppendUint32(b, uint32(len(names)))
	for _, n := range names {
		e := s.entries[n]
		b = append(b, e.rid[:]...)
		b = binary.BigEndian.AppendUint64(b, e.version)
		b = append(b, e.sum[:]...)
		b = binary.BigEndian.AppendUint16(b, uint16(len(n)))
		b = append(b, n...)
	}
	return b
}

// decodeState parses an authenticated state plaintext. It still fails
// closed (ErrTampered) on anything encodeState would not write, so a bug
// or a key compromise cannot turn into an out-of-range index.
func decodeState(b []byte) (*state, error) {
	bad := func(what string) (*state, error) {
		return nil, fmt.Errorf("%w: state: %s", ErrTampered, what)
	}
	if len(b) < stateFixedSize || string(b[:4]) != stateFormatMagic {
		return bad("header")
	}
	if b[4] != stateFormatVersion {
		return bad(fmt.Sprintf("format %d, want %d (format 1 states do not cover record contents and are not read)", b[4], stateFormatVersion))
	}
	s := &state{}
	p := b[5:]
	copy(s.store[:], p)
	p = p[storeIDSize:]
	copy(s.macKey[:], p)
	p = p[32:]
	s.version = binary.BigEndian.Uint64(p)
	p = p[8:]
	n := binary.BigEndian.Uint32(p)
	p = p[4:]
	if n > maxEntries {
		return bad(fmt.Sprintf("%d entries", n))
	}
	s.entries = make(map[string]entry, n)
	s.names = make([]string, 0, n)
	prev := ""
	for i := uint32(0); i < n; i++ {
		if len(p) < entrySize(0) {
			return bad("entry truncated")
		}
		var e entry
		copy(e.rid[:], p)
		e.version = binary.BigEndian.Uint64(p[ridSize:])
		copy(e.sum[:], p[ridSize+8:])
		l := int(binary.BigEndian.Uint16(p[ridSize+8+32:]))
		p = p[entrySize(0):]
		if l == 0 || l > MaxKeySize || l > len(p) {
			return bad("entry name length")
		}
		name := string(p[:l])
		p = p[l:]
		if i > 0 && name <= prev {
			return bad("entries not sorted")
		}
		if e.version == 0 || e.version > s.version {
			return bad(fmt.Sprintf("entry version %d at state version %d", e.version, s.version))
		}
		prev = name
		s.entries[name] = e
		s.names = append(s.names, name)
	}
	if len(p) != 0 {
		return bad("trailing bytes")
	}
	return s, nil
}

func sortStrings(s []string) { sort.Strings(s) }
