package ledger

import (
	"crypto/ecdsa"
	"crypto/hmac"
	"crypto/sha256"
	"fmt"
	"hash"
	"sort"
)

// Core is the ledger's state machine: the ordered transactions, the Merkle
// tree over them, the collections' indexes, users and counters. It does
// no I/O, starts no goroutine and reads no clock; it is not safe for
// concurrent use. A driver proposes records (checked with Check, then
// Apply) and persists them; Core itself does not know what is durable, so
// readers pass the durable watermark (Node) or the committed index (raft).
type Core struct {
	view   uint64
	mac    hash.Hash // HMAC-SHA-256 keyed with the ledger secret
	nodePK *ecdsa.PublicKey

	tree *Tree
	recs records  // seqno-1 -> Record
	sigs []uint64 // seqnos of signature transactions, ascending

	collections map[string][]uint64 // entry seqnos per collection, ascending
	users       map[string]Role
	counters    map[string]Record // latest KindCounter record per name
}

// NewCore returns an empty Core for a ledger in view, whose commit
// evidence and claim keys derive from secret and whose signatures are by
// nodePK (Apply checks every signature transaction against it).
func NewCore(view uint64, secret []byte, nodePK *ecdsa.PublicKey) *Core {
	return &Core{
		view: view, mac: hmac.New(sha256.New, secret), nodePK: nodePK, tree: NewTree(),
		collections: map[string][]uint64{}, users: map[string]Role{}, counters: map[string]Record{},
	}
}

// View is the ledger's view.
func (c *Core) View() uint64 { return c.view }

// Next is the seqno the next transaction gets.
func (c *Core) Next() uint64 { return c.recs.n + 1 }

// LastSignature is the seqno of the last signature transaction, 0 if none.
func (c *Core) LastSignature() uint64 {
	if len(c.sigs) == 0 {
		return 0
	}
	return c.sigs[len(c.sigs)-1]
}

// Check says whether r can be applied next, without changing anything:
// its format, its seqno, and for a signature its root and signature, for a
// counter its version.
func (c *Core) Check(r *Record) error {
	if r.Seqno != c.Next() {
		return fmt.Errorf("%w: %s at seqno %d, next is %d", ErrInvalid, r.Kind, r.Seqno, c.Next())
	}
	if err := r.validate(); err != nil {
		return err
	}
	switch r.Kind {
	case KindSignature:
		if r.TreeSize == 0 {
			return fmt.Errorf("%w: signature over an empty tree", ErrInvalid)
		}
		root, err := c.tree.Root(r.TreeSize)
		if err != nil {
			return err
		}
		if root != r.Root {
			return fmt.Errorf("%w: signature at %d: root %x, tree has %x", ErrInvalid, r.Seqno, r.Root, root)
		}
		if !ecdsa.VerifyASN1(c.nodePK, r.Root[:], r.Signature) {
			return fmt.Errorf("%w: signature at %d does not verify with the node key", ErrInvalid, r.Seqno)
		}
	case KindCounter:
		if cur := c.counters[r.Name].Version; r.Version != cur+1 {
			return fmt.Errorf("%w: counter %q at version %d, asked to move to %d", ErrCounterConflict, r.Name, cur, r.Version)
		}
	}
	return nil
}

// Apply checks r (Check) and appends it.
func (c *Core) Apply(r Record) error {
	if err := c.Check(&r); err != nil {
		return err
	}
	comp := c.components(&r)
	c.tree.Append(comp.Leaf())
	c.recs.add(r)
	switch r.Kind {
	case KindEntry:
		c.collections[r.Collection] = append(c.collections[r.Collection], r.Seqno)
	case KindSignature:
		c.sigs = append(c.sigs, r.Seqno)
	case KindUser:
		if r.Role == RoleNone {
			delete(c.users, r.UserID)
		} else {
			c.users[r.UserID] = r.Role
		}
	case KindCounter:
		c.counters[r.Name] = r
	}
	return nil
}

// SignatureRecord builds the signature transaction for the tree as it is:
// the root of every transaction so far, signed with sign.
func (c *Core) SignatureRecord(sign func(root [32]byte) ([]byte, error)) (Record, error) {
	size := c.tree.Size()
	if size == 0 {
		return Record{}, fmt.Errorf("%w: nothing to sign", ErrInvalid)
	}
	root, err := c.tree.Root(size)
	if err != nil {
		return Record{}, err
	}
	sig, err := sign(root)
	if err != nil {
		return Record{}, err
	}
	return Record{Kind: KindSignature, Seqno: size + 1, TreeSize: size, Root: root, Signature: sig}, nil
}

// tx is the id of seqno in this ledger.
func (c *Core) tx(seqno uint64) TxID { return TxID{View: c.view, Seqno: seqno} }

// claimKey is the LedgerEntryV1 secret key of an entry.
func (c *Core) claimKey(seqno uint64) [32]byte {
	return deriveWith(c.mac, "cloister-ledger claims key", c.tx(seqno))
}

// components are r's leaf components.
func (c *Core) components(r *Record) LeafComponents {
	lc := LeafComponents{WriteSetDigest: r.writeSetDigest(), CommitEvidence: commitEvidence(c.mac, c.tx(r.Seqno))}
	if r.Kind == KindEntry {
		k := c.claimKey(r.Seqno)
		lc.ClaimsDigest = ClaimsDigest(LedgerEntryV1Digest(k[:], r.Collection, r.Contents))
	}
	return lc
}

// Record returns the transaction at seqno if seqno <= upto.
func (c *Core) Record(seqno, upto uint64) (Record, bool) {
	if seqno == 0 || seqno > upto || seqno > c.recs.n {
		return Record{}, false
	}
	return *c.recs.at(seqno - 1), true
}

// Lookup resolves a transaction id to a seqno known up to upto: the view
// must be the ledger's.
func (c *Core) Lookup(tx TxID, upto uint64) (Record, error) {
	if tx.View != c.view {
		return Record{}, fmt.Errorf("%w: transaction %s: the ledger is in view %d", ErrNotFound, tx, c.view)
	}
	r, ok := c.Record(tx.Seqno, upto)
	if !ok {
		return Record{}, fmt.Errorf("%w: transaction %s", ErrNotFound, tx)
	}
	return r, nil
}

// CoveringSignature returns the first signature transaction after seqno,
// if there is one at or below upto: the one whose root covers seqno.
func (c *Core) CoveringSignature(seqno, upto uint64) (Record, bool) {
	i := sort.Search(len(c.sigs), func(i int) bool { return c.sigs[i] > seqno })
	if i == len(c.sigs) || c.sigs[i] > upto {
		return Record{}, false
	}
	return *c.recs.at(c.sigs[i] - 1), true
}

// ReceiptParts is what a receipt is built from.
type ReceiptParts struct {
	Tx         TxID
	Components LeafComponents
	Proof      []ProofStep
	Signature  Record
	ClaimKey   [32]byte // the LedgerEntryV1 secret key (entries only)
	Entry      Record
}

// Receipt returns the receipt parts of the transaction at seqno, or
// ok=false while no signature at or below upto covers it.
func (c *Core) Receipt(seqno, upto uint64) (ReceiptParts, bool, error) {
	r, ok := c.Record(seqno, upto)
	if !ok {
		return ReceiptParts{}, false, fmt.Errorf("%w: transaction %s", ErrNotFound, c.tx(seqno))
	}
	sig, ok := c.CoveringSignature(seqno, upto)
	if !ok {
		return ReceiptParts{}, false, nil
	}
	proof, err := c.tree.Inclusion(seqno-1, sig.TreeSize)
	if err != nil {
		return ReceiptParts{}, false, err
	}
	return ReceiptParts{Tx: c.tx(seqno), Components: c.components(&r), Proof: proof, Signature: sig, ClaimKey: c.claimKey(seqno), Entry: r}, true, nil
}

// Collections lists the collection ids with an entry at or below upto, sorted.
func (c *Core) Collections(upto uint64) []string {
	var out []string
	for id, seqs := range c.collections {
		if len(seqs) > 0 && seqs[0] <= upto {
			out = append(out, id)
		}
	}
	sort.Strings(out)
	return out
}

// Entries returns the seqnos of collection's entries in [from, to] that are
// at or below upto, at most max of them, and whether more follow.
func (c *Core) Entries(collection string, from, to, upto uint64, max int) ([]Record, bool) {
	seqs := c.collections[collection]
	if to > upto {
		to = upto
	}
	i := sort.Search(len(seqs), func(i int) bool { return seqs[i] >= from })
	var out []Record
	for ; i < len(seqs) && seqs[i] <= to; i++ {
		if len(out) == max {
			return out, true
		}
		out = append(out, *c.recs.at(seqs[i] - 1))
	}
	return out, false
}

// Latest returns the last entry of collection at or below upto.
func (c *Core) Latest(collection string, upto uint64) (Record, bool) {
	seqs := c.collections[collection]
	i := sort.Search(len(seqs), func(i int) bool { return seqs[i] > upto })
	if i == 0 {
		return Record{}, false
	}
	return *c.recs.at(seqs[i-1] - 1), true
}

// User returns a user's role (RoleNone if unknown).
func (c *Core) User(id string) Role { return c.users[id] }

// Users returns how many users have a role.
func (c *Core) Users() int { return len(c.users) }

// Counter returns a counter's latest record (Version 0 if it never moved).
func (c *Core) Counter(name string) Record {
	r, ok := c.counters[name]
	if !ok {
		return Record{Kind: KindCounter, Name: name}
	}
	return r
}

// records holds transactions in fixed-size chunks, so appending never
// copies what is already there (a flat slice of Records regrows and moves
// everything at each doubling, which showed in profiles).
type records struct {
	chunks [][]Record
	n      uint64
}

const recordChunk = 4096

func (r *records) add(rec Record) {
	if r.n%recordChunk == 0 {
		r.chunks = append(r.chunks, make([]Record, 0, recordChunk))
	}
	last := len(r.chunks) - 1
	r.chunks[last] = append(r.chunks[last], rec)
	r.n++
}

// at returns record i (0-based); i < n.
func (r *records) at(i uint64) *Record { return &r.chunks[i/recordChunk][i%recordChunk] }
