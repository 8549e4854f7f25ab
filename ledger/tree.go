package ledger

import (
	"fmt"

	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/proof"
)

// ProofStep is one element of a receipt's proof: the sibling hash and
// which side it is on. Left means the sibling is the left child
// (h = SHA-256(sibling ‖ h)).
type ProofStep struct {
	Left bool
	Hash [32]byte
}

// Tree is the ledger's Merkle tree: leaves appended through a compact
// range (transparency-dev/merkle) whose visitor keeps every complete node,
// so an inclusion proof against any earlier tree size is a lookup plus at
// most one rehash (proof.Nodes.Rehash). About two hashes per leaf are kept
// in memory. Not safe for concurrent use (Core serialises it).
type Tree struct {
	rng   *compact.Range
	nodes [][][32]byte // nodes[level][index]: every complete node
}

var treeHash = compact.RangeFactory{Hash: Hasher{}.HashChildren}

// NewTree returns an empty tree.
func NewTree() *Tree {
	return &Tree{rng: treeHash.NewEmptyRange(0)}
}

// Size is the number of leaves.
func (t *Tree) Size() uint64 { return t.rng.End() }

// Append adds a leaf hash.
func (t *Tree) Append(leaf [32]byte) {
	// Append only fails on a corrupted range, which this type never builds.
	if err := t.rng.Append(leaf[:], t.visit); err != nil {
		panic("ledger: tree: " + err.Error())
	}
}

func (t *Tree) visit(id compact.NodeID, hash []byte) {
	for uint(len(t.nodes)) <= id.Level {
		t.nodes = append(t.nodes, nil)
	}
	lvl := t.nodes[id.Level]
	if uint64(len(lvl)) != id.Index {
		panic(fmt.Sprintf("ledger: tree: node %d/%d out of order", id.Level, id.Index))
	}
	t.nodes[id.Level] = append(lvl, [32]byte(hash))
}

func (t *Tree) node(id compact.NodeID) ([32]byte, bool) {
	if id.Level >= uint(len(t.nodes)) || id.Index >= uint64(len(t.nodes[id.Level])) {
		return [32]byte{}, false
	}
	return t.nodes[id.Level][id.Index], true
}

// Root returns the root of the tree of the first size leaves (size from 1
// to Size()).
func (t *Tree) Root(size uint64) ([32]byte, error) {
	if size == 0 || size > t.Size() {
		return [32]byte{}, fmt.Errorf("ledger: tree: root of size %d out of 1..%d", size, t.Size())
	}
	ids := compact.RangeNodes(0, size, nil)
	hashes := make([][]byte, len(ids))
	for i, id := range ids {
		h, _ := t.node(id)
		hashes[i] = h[:]
	}
	r, err := treeHash.NewRange(0, size, hashes)
	if err != nil {
		return [32]byte{}, fmt.Errorf("ledger: tree: %w", err)
	}
	root, err := r.GetRootHash(nil)
	if err != nil {
		return [32]byte{}, fmt.Errorf("ledger: tree: %w", err)
	}
	return [32]byte(root), nil
}

// Inclusion returns the proof of leaf index in the tree of size leaves,
// bottom-up, each step saying its side.
func (t *Tree) Inclusion(index, size uint64) ([]ProofStep, error) {
	if size > t.Size() {
		return nil, fmt.Errorf("ledger: tree: proof for size %d beyond %d", size, t.Size())
	}
	nodes, err := proof.Inclusion(index, size)
	if err != nil {
		return nil, fmt.Errorf("ledger: tree: %w", err)
	}
	hashes := make([][]byte, len(nodes.IDs))
	for i, id := range nodes.IDs {
		h, ok := t.node(id)
		if !ok {
			return nil, fmt.Errorf("ledger: tree: node %d/%d missing", id.Level, id.Index)
		}
		hashes[i] = h[:]
	}
	hashes, err = nodes.Rehash(hashes, treeHash.Hash)
	if err != nil {
		return nil, fmt.Errorf("ledger: tree: %w", err)
	}
	return sides(index, size, hashes)
}

// sides assigns each proof hash its side the way RFC 9162 section
// 2.1.3.2 walks an inclusion proof: the sibling is on the left when the
// node is a right child or the last node of its level.
func sides(index, size uint64, hashes [][]byte) ([]ProofStep, error) {
	fn, sn := index, size-1
	out := make([]ProofStep, 0, len(hashes))
	for _, h := range hashes {
		if sn == 0 {
			return nil, fmt.Errorf("ledger: tree: proof longer than the tree is high")
		}
		st := ProofStep{Hash: [32]byte(h)}
		if fn&1 == 1 || fn == sn {
			st.Left = true
			if fn&1 == 0 {
				for fn&1 == 0 && fn != 0 {
					fn >>= 1
					sn >>= 1
				}
			}
		}
		fn >>= 1
		sn >>= 1
		out = append(out, st)
	}
	if sn != 0 {
		return nil, fmt.Errorf("ledger: tree: proof shorter than the tree is high")
	}
	return out, nil
}

// Walk folds a leaf through proof steps to a root, as a receipt verifier
// does.
func Walk(leaf [32]byte, steps []ProofStep) [32]byte {
	h := leaf[:]
	for _, s := range steps {
		if s.Left {
			h = Hasher{}.HashChildren(s.Hash[:], h)
		} else {
			h = Hasher{}.HashChildren(h, s.Hash[:])
		}
	}
	return [32]byte(h)
}
