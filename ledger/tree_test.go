package ledger

import (
	"crypto/sha256"
	"encoding/binary"
	"testing"

	"github.com/transparency-dev/merkle/proof"
)

func leafN(i uint64) [32]byte { return sha256.Sum256(binary.BigEndian.AppendUint64(nil, i)) }

// naiveRoot is CCF's tree computed recursively (largest power of two on
// the left), the dumb reference for Tree.
func naiveRoot(leaves [][32]byte) [32]byte {
	if len(leaves) == 1 {
		return leaves[0]
	}
	k := 1
	for k*2 < len(leaves) {
		k *= 2
	}
	l, r := naiveRoot(leaves[:k]), naiveRoot(leaves[k:])
	return sha256.Sum256(append(l[:], r[:]...))
}

// TestTreeProofs checks every root and every inclusion proof of every
// size up to 70 against the naive tree and against the merkle library's
// verifier with the CCF hasher, and that Walk's sides are right.
func TestTreeProofs(t *testing.T) {
	tr := NewTree()
	var leaves [][32]byte
	for i := uint64(0); i < 70; i++ {
		leaves = append(leaves, leafN(i))
		tr.Append(leafN(i))
	}
	for size := uint64(1); size <= 70; size++ {
		root, err := tr.Root(size)
		if err != nil {
			t.Fatal(err)
		}
		if want := naiveRoot(leaves[:size]); root != want {
			t.Fatalf("root of %d: %x, want %x", size, root, want)
		}
		for i := uint64(0); i < size; i++ {
			steps, err := tr.Inclusion(i, size)
			if err != nil {
				t.Fatal(err)
			}
			if got := Walk(leaves[i], steps); got != root {
				t.Fatalf("walk of %d in %d: %x, want %x", i, size, got, root)
			}
			hashes := make([][]byte, len(steps))
			for j := range steps {
				hashes[j] = steps[j].Hash[:]
			}
			if err := proof.VerifyInclusion(Hasher{}, i, size, leaves[i][:], hashes, root[:]); err != nil {
				t.Fatalf("library rejects %d in %d: %v", i, size, err)
			}
			// Flipping any side breaks the walk.
			for j := range steps {
				steps[j].Left = !steps[j].Left
				if Walk(leaves[i], steps) == root && steps[j].Hash != leaves[i] {
					t.Fatalf("walk of %d in %d ignores the side of step %d", i, size, j)
				}
				steps[j].Left = !steps[j].Left
			}
		}
	}
	if _, err := tr.Root(71); err == nil {
		t.Fatal("root beyond the tree")
	}
	if _, err := tr.Inclusion(70, 70); err == nil {
		t.Fatal("proof of a leaf beyond the size")
	}
}

// TestHasherIsNotRFC6962 pins the CCF hashing: no domain prefix.
func TestHasherIsNotRFC6962(t *testing.T) {
	a, b := leafN(1), leafN(2)
	want := sha256.Sum256(append(a[:], b[:]...))
	if got := (Hasher{}).HashChildren(a[:], b[:]); [32]byte(got) != want {
		t.Fatal("HashChildren is not SHA-256(l||r)")
	}
}

func TestTxID(t *testing.T) {
	for _, ok := range []string{"2.15", "1.1", "18446744073709551615.3"} {
		tx, err := ParseTxID(ok)
		if err != nil || tx.String() != ok {
			t.Errorf("%q: %v %v", ok, tx, err)
		}
	}
	for _, bad := range []string{"", "2", "2.", ".3", "0.1", "1.0", "02.1", "1.-1", "1.1.1", "a.1", "+1.1", "99999999999999999999.1"} {
		if _, err := ParseTxID(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
