package ledger

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"unicode/utf8"
)

// Kind is a transaction's kind, stored in segments. Do NOT reorder: the
// values are on disk.
type Kind uint8

// Transaction kinds.
const (
	KindEntry     Kind = 1 // an application entry (contents in a collection)
	KindSignature Kind = 2 // a signature over the tree root
	KindUser      Kind = 3 // a user's role set or removed
	KindCounter   Kind = 4 // a named counter moved to a new version
)

// Role is a user's role. Do NOT reorder: the values are on disk.
type Role uint8

// Roles, as ACL names them.
const (
	RoleNone          Role = 0 // no access (a removed user)
	RoleAdministrator Role = 1 // everything, including users
	RoleContributor   Role = 2 // read and write entries
	RoleReader        Role = 3 // read entries and receipts
)

// String is ACL's name of the role.
func (r Role) String() string {
	switch r {
	case RoleAdministrator:
		return "Administrator"
	case RoleContributor:
		return "Contributor"
	case RoleReader:
		return "Reader"
	}
	return "None"
}

// ParseRole reads ACL's role name.
func ParseRole(s string) (Role, error) {
	switch s {
	case "Administrator":
		return RoleAdministrator, nil
	case "Contributor":
		return RoleContributor, nil
	case "Reader":
		return RoleReader, nil
	}
	return RoleNone, fmt.Errorf("%w: role %q: want Administrator, Contributor or Reader", ErrInvalid, s)
}

// Record is one transaction. Which fields are meaningful depends on Kind.
type Record struct {
	Kind  Kind
	Seqno uint64

	// KindEntry
	Collection string
	Contents   string

	// KindSignature: the root of the first TreeSize leaves (= Seqno-1)
	// and the node's ECDSA signature over it (ASN.1 DER).
	TreeSize  uint64
	Root      [32]byte
	Signature []byte

	// KindUser
	UserID string
	Role   Role

	// KindCounter: Name moves to Version (one more than before) holding Value.
	Name    string
	Version uint64
	Value   []byte
}

// appendBody appends the kind-specific body.
func (r *Record) appendBody(b []byte) []byte {
	switch r.Kind {
	case KindEntry:
		b = appendStr16(b, r.Collection)
		b = binary.BigEndian.AppendUint32(b, uint32(len(r.Contents)))
		b = append(b, r.Contents...)
	case KindSignature:
		b = binary.BigEndian.AppendUint64(b, r.TreeSize)
		b = append(b, r.Root[:]...)
		b = appendStr16(b, string(r.Signature))
	case KindUser:
		b = appendStr16(b, r.UserID)
		b = append(b, byte(r.Role))
	case KindCounter:
		b = appendStr16(b, r.Name)
		b = binary.BigEndian.AppendUint64(b, r.Version)
		b = appendStr16(b, string(r.Value))
	}
	return b
}

func appendStr16(b []byte, s string) []byte {
	b = binary.BigEndian.AppendUint16(b, uint16(len(s)))
	return append(b, s...)
}

// writeSetDigest is the SHA-256 of the record's encoding (kind, seqno,
// body): what this ledger's transaction wrote, as CCF digests its write set.
func (r *Record) writeSetDigest() [32]byte {
	b := make([]byte, 0, 64+len(r.Contents))
	b = append(b, byte(r.Kind))
	b = binary.BigEndian.AppendUint64(b, r.Seqno)
	return sha256.Sum256(r.appendBody(b))
}

// validate checks the caps and the kind-specific rules that do not depend
// on ledger state.
func (r *Record) validate() error {
	switch r.Kind {
	case KindEntry:
		if err := checkName("collection id", r.Collection, MaxCollectionID); err != nil {
			return err
		}
		if len(r.Contents) > MaxContents {
			return fmt.Errorf("%w: contents of %d bytes exceed %d", ErrInvalid, len(r.Contents), MaxContents)
		}
		if !utf8.ValidString(r.Contents) {
			return fmt.Errorf("%w: contents are not UTF-8", ErrInvalid)
		}
	case KindSignature:
		if r.TreeSize+1 != r.Seqno {
			return fmt.Errorf("%w: signature at %d covers %d leaves, want %d", ErrInvalid, r.Seqno, r.TreeSize, r.Seqno-1)
		}
		if len(r.Signature) == 0 || len(r.Signature) > MaxSignature {
			return fmt.Errorf("%w: signature of %d bytes", ErrInvalid, len(r.Signature))
		}
	case KindUser:
		if err := checkName("user id", r.UserID, MaxUserID); err != nil {
			return err
		}
		if r.Role > RoleReader {
			return fmt.Errorf("%w: role %d", ErrInvalid, r.Role)
		}
	case KindCounter:
		if err := checkName("counter name", r.Name, MaxCounterName); err != nil {
			return err
		}
		if len(r.Value) > MaxCounterValue {
			return fmt.Errorf("%w: counter value of %d bytes exceeds %d", ErrInvalid, len(r.Value), MaxCounterValue)
		}
	default:
		return fmt.Errorf("%w: unknown transaction kind %d", ErrInvalid, r.Kind)
	}
	return nil
}

func checkName(what, s string, max int) error {
	if s == "" || len(s) > max {
		return fmt.Errorf("%w: %s of %d bytes: want 1 to %d", ErrInvalid, what, len(s), max)
	}
	if !utf8.ValidString(s) {
		return fmt.Errorf("%w: %s is not UTF-8", ErrInvalid, what)
	}
	for _, c := range s {
		if c < 0x20 || c == 0x7f {
			return fmt.Errorf("%w: %s has a control character", ErrInvalid, what)
		}
	}
	return nil
}

// size is the record's encoded size in a segment.
func (r *Record) size() int {
	return 1 + 4 + len(r.appendBody(nil))
}

// reader is a fail-closed cursor over a segment's plaintext.
type reader struct {
	b   []byte
	off int
}

func (r *reader) bytes(n int) ([]byte, bool) {
	if n < 0 || len(r.b)-r.off < n {
		return nil, false
	}
	v := r.b[r.off : r.off+n]
	r.off += n
	return v, true
}

func (r *reader) u8(v *uint8) bool {
	b, ok := r.bytes(1)
	if ok {
		*v = b[0]
	}
	return ok
}

func (r *reader) u16(v *uint16) bool {
	b, ok := r.bytes(2)
	if ok {
		*v = binary.BigEndian.Uint16(b)
	}
	return ok
}

func (r *reader) u32(v *uint32) bool {
	b, ok := r.bytes(4)
	if ok {
		*v = binary.BigEndian.Uint32(b)
	}
	return ok
}

func (r *reader) u64(v *uint64) bool {
	b, ok := r.bytes(8)
	if ok {
		*v = binary.BigEndian.Uint64(b)
	}
	return ok
}

func (r *reader) str16(v *string) bool {
	var n uint16
	if !r.u16(&n) {
		return false
	}
	b, ok := r.bytes(int(n))
	if ok {
		*v = string(b)
	}
	return ok
}

func (r *reader) empty() bool { return r.off == len(r.b) }

// decodeBody decodes a record body of kind k; trailing bytes are an error.
func decodeBody(k Kind, seqno uint64, body []byte) (Record, error) {
	rec := Record{Kind: k, Seqno: seqno}
	r := &reader{b: body}
	ok := true
	switch k {
	case KindEntry:
		var n uint32
		ok = r.str16(&rec.Collection) && r.u32(&n)
		if ok {
			var c []byte
			c, ok = r.bytes(int(n))
			rec.Contents = string(c)
		}
	case KindSignature:
		var root []byte
		var sig string
		ok = r.u64(&rec.TreeSize)
		if ok {
			root, ok = r.bytes(32)
		}
		ok = ok && r.str16(&sig)
		if ok {
			rec.Root = [32]byte(root)
			rec.Signature = []byte(sig)
		}
	case KindUser:
		var role uint8
		ok = r.str16(&rec.UserID) && r.u8(&role)
		rec.Role = Role(role)
	case KindCounter:
		var v string
		ok = r.str16(&rec.Name) && r.u64(&rec.Version) && r.str16(&v)
		rec.Value = []byte(v)
	default:
		return Record{}, fmt.Errorf("unknown transaction kind %d at seqno %d", k, seqno)
	}
	if !ok {
		return Record{}, fmt.Errorf("%s at seqno %d: body truncated", k, seqno)
	}
	if !r.empty() {
		return Record{}, fmt.Errorf("%s at seqno %d: %d trailing bytes", k, seqno, len(body)-r.off)
	}
	if err := rec.validate(); err != nil {
		return Record{}, fmt.Errorf("seqno %d: %w", seqno, err)
	}
	return rec, nil
}

// String names the kind.
func (k Kind) String() string {
	switch k {
	case KindEntry:
		return "entry"
	case KindSignature:
		return "signature"
	case KindUser:
		return "user"
	case KindCounter:
		return "counter"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}
