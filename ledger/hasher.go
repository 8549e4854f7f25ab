package ledger

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"hash"
)

// Hasher is CCF's Merkle tree hashing as a merkle.LogHasher: a leaf's
// bytes are its three components (writeSetDigest ‖ SHA-256(commitEvidence)
// ‖ claimsDigest, 96 bytes) and its hash is their SHA-256; an inner node is
// SHA-256(left ‖ right). Unlike RFC 6962 there is no 0x00/0x01 domain
// prefix, which is why the library's rfc6962 hasher cannot be used.
type Hasher struct{}

// EmptyRoot is the SHA-256 of nothing; no signature ever covers an empty
// tree.
func (Hasher) EmptyRoot() []byte { s := sha256.Sum256(nil); return s[:] }

// HashLeaf hashes a leaf's concatenated components.
func (Hasher) HashLeaf(leaf []byte) []byte { s := sha256.Sum256(leaf); return s[:] }

// HashChildren hashes two children with no prefix.
func (Hasher) HashChildren(l, r []byte) []byte {
	h := sha256.New()
	h.Write(l)
	h.Write(r)
	return h.Sum(nil)
}

// Size is SHA-256's.
func (Hasher) Size() int { return sha256.Size }

// LeafComponents are what a receipt gives to rebuild its leaf.
type LeafComponents struct {
	WriteSetDigest [32]byte
	CommitEvidence string
	ClaimsDigest   [32]byte
}

// Bytes returns writeSetDigest ‖ SHA-256(commitEvidence) ‖ claimsDigest,
// the leaf's input to Hasher.HashLeaf.
func (c LeafComponents) Bytes() []byte {
	ce := sha256.Sum256([]byte(c.CommitEvidence))
	out := make([]byte, 0, 96)
	out = append(out, c.WriteSetDigest[:]...)
	out = append(out, ce[:]...)
	return append(out, c.ClaimsDigest[:]...)
}

// Leaf returns the leaf hash.
func (c LeafComponents) Leaf() [32]byte { return sha256.Sum256(c.Bytes()) }

// deriveWith is HMAC-SHA-256(secret, label ‖ 0 ‖ txid), m being an HMAC
// keyed with the ledger secret (Core keeps one: hmac.New costs more than
// the MAC of a short id): per-transaction values (commit evidence nonce,
// claims secret key) derived from the ledger secret, so none needs storing
// and none tells anything about another.
func deriveWith(m hash.Hash, label string, tx TxID) [32]byte {
	m.Reset()
	m.Write([]byte(label))
	m.Write([]byte{0})
	m.Write([]byte(tx.String()))
	var out [32]byte
	m.Sum(out[:0])
	return out
}

// ProtocolLedgerEntryV1 is ACL's application claim protocol for entries.
const ProtocolLedgerEntryV1 = "LedgerEntryV1"

// LedgerEntryV1Digest is the digest of one LedgerEntryV1 claim:
// SHA-256("LedgerEntryV1" ‖ SHA-256(HMAC(key, collectionId) ‖
// HMAC(key, contents))).
func LedgerEntryV1Digest(key []byte, collectionID, contents string) [32]byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(collectionID))
	macs := m.Sum(make([]byte, 0, 64))
	m.Reset()
	m.Write([]byte(contents))
	inner := sha256.Sum256(m.Sum(macs))
	return sha256.Sum256(append([]byte(ProtocolLedgerEntryV1), inner[:]...))
}

// ClaimsDigest is the receipt's claimsDigest over claim digests, in order:
// SHA-256(uint32le(len) ‖ digests...).
func ClaimsDigest(claims ...[32]byte) [32]byte {
	buf := binary.LittleEndian.AppendUint32(nil, uint32(len(claims)))
	for _, c := range claims {
		buf = append(buf, c[:]...)
	}
	return sha256.Sum256(buf)
}

// commitEvidence is CCF's "ce:view.seqno:hex(nonce)".
func commitEvidence(m hash.Hash, tx TxID) string {
	n := deriveWith(m, "cloister-ledger commit evidence", tx)
	const hx = "0123456789abcdef"
	b := make([]byte, 0, 3+20+1+64)
	b = append(b, "ce:"...)
	b = append(b, tx.String()...)
	b = append(b, ':')
	for _, c := range n {
		b = append(b, hx[c>>4], hx[c&15])
	}
	return string(b)
}
