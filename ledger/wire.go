package ledger

import (
	"encoding/binary"
	"fmt"
)

// This file exports what a replicated driver (ledger/replica) needs from
// the core without reaching into its fields: one record's wire encoding
// (the same body encoding segments use) and receipt building.

// AppendRecord appends r's wire encoding to b: kind u8 | seqno u64 |
// body length u32 | body. A proposal carries seqno 0 (the seqno is
// assigned when the record is applied); a snapshot carries the real one.
func AppendRecord(b []byte, r *Record) []byte {
	body := r.appendBody(nil)
	b = append(b, byte(r.Kind))
	b = binary.BigEndian.AppendUint64(b, r.Seqno)
	b = binary.BigEndian.AppendUint32(b, uint32(len(body)))
	return append(b, body...)
}

// DecodeRecord decodes one record written by AppendRecord from the front
// of b and returns it with the number of bytes it took. Signatures are
// validated against their seqno; other kinds are validated as when
// proposed. Anything malformed is ErrInvalid.
func DecodeRecord(b []byte) (Record, int, error) {
	r := &reader{b: b}
	var kind uint8
	var seqno uint64
	var n uint32
	if !r.u8(&kind) || !r.u64(&seqno) || !r.u32(&n) {
		return Record{}, 0, fmt.Errorf("%w: record header truncated", ErrInvalid)
	}
	body, ok := r.bytes(int(n))
	if !ok {
		return Record{}, 0, fmt.Errorf("%w: record body of %d bytes truncated", ErrInvalid, n)
	}
	rec, err := decodeBody(Kind(kind), seqno, body)
	if err != nil {
		return Record{}, 0, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return rec, r.off, nil
}

// Validate checks the record's format and caps (what does not depend on
// the ledger's state).
func (r *Record) Validate() error { return r.validate() }

// BuildReceipt writes receipt parts in ACL's shape, with id's node
// certificate.
func BuildReceipt(id *Identity, p ReceiptParts) *TransactionReceipt { return buildReceipt(id, p) }

// AppendSignature appends the signature transaction for the tree as it
// is, signed with sign, WITHOUT verifying the signature again as Apply
// does: for a driver that signs with the very key the Core checks against
// (ledger/replica signs at apply time on every node; re-verifying its own
// P-384 signature there was 15% of a 3-node cluster's CPU). Records from
// elsewhere (storage, snapshots, peers) still go through Apply.
func (c *Core) AppendSignature(sign func(root [32]byte) ([]byte, error)) (Record, error) {
	r, err := c.SignatureRecord(sign)
	if err != nil {
		return Record{}, err
	}
	if err := r.validate(); err != nil {
		return Record{}, err
	}
	comp := c.components(&r)
	c.tree.Append(comp.Leaf())
	c.recs.add(r)
	c.sigs = append(c.sigs, r.Seqno)
	return r, nil
}
