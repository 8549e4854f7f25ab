package ledger

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"net"
	"testing"
	"time"

	"github.com/transparency-dev/merkle/proof"

	"github.com/cloister-dev/cloister/kv"
	"github.com/cloister-dev/cloister/kv/kvtest"
)

var testNow = time.Date(2026, 12, 6, 8, 0, 0, 0, time.UTC)

func testOptions(b kv.Backend) Options {
	return Options{
		Backend: b, Sealer: kvtest.Sealer(bytes.Repeat([]byte{7}, 32), 1, 2, 1),
		Now:      func() time.Time { return testNow },
		Identity: IdentityOptions{DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}},
		// The clock is frozen: sign on count (and on the timer, which
		// fires after SignInterval of real time).
		SignEvery: 3, SignInterval: time.Millisecond,
	}
}

func openNode(t *testing.T, b kv.Backend) *Node {
	t.Helper()
	n, err := Open(context.Background(), testOptions(b))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	return n
}

// checkReceipt verifies an ACL-shaped receipt the way a client does, with
// libraries: the leaf from its components, the proof to the root with
// transparency-dev/merkle's verifier (CCF hasher), the signature with
// crypto/ecdsa, the node certificate against the service certificate and
// the node id against the node key. It returns the root.
func checkReceipt(t *testing.T, tr *TransactionReceipt, service *x509.Certificate, index, size uint64) {
	t.Helper()
	r := tr.Receipt
	if tr.State != "Ready" || r == nil {
		t.Fatalf("receipt state %q", tr.State)
	}
	wsd, err1 := hex.DecodeString(r.LeafComponents.WriteSetDigest)
	cd, err2 := hex.DecodeString(r.LeafComponents.ClaimsDigest)
	if err1 != nil || err2 != nil || len(wsd) != 32 || len(cd) != 32 {
		t.Fatalf("leaf components: %v %v", err1, err2)
	}
	lc := LeafComponents{WriteSetDigest: [32]byte(wsd), CommitEvidence: r.LeafComponents.CommitEvidence, ClaimsDigest: [32]byte(cd)}
	leaf := lc.Leaf()
	var hashes [][]byte
	steps := make([]ProofStep, len(r.Proof))
	for i, p := range r.Proof {
		s := p.Left
		steps[i].Left = s != ""
		if s == "" {
			s = p.Right
		}
		h, err := hex.DecodeString(s)
		if err != nil || len(h) != 32 {
			t.Fatalf("proof %d: %q", i, s)
		}
		steps[i].Hash = [32]byte(h)
		hashes = append(hashes, h)
	}
	root := Walk(leaf, steps)
	if err := proof.VerifyInclusion(Hasher{}, index, size, leaf[:], hashes, root[:]); err != nil {
		t.Fatalf("merkle library rejects the proof of %d in %d: %v", index, size, err)
	}
	blk, _ := pem.Decode([]byte(r.Cert))
	if blk == nil {
		t.Fatal("receipt cert is not PEM")
	}
	cert, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if err := cert.CheckSignatureFrom(service); err != nil {
		t.Fatalf("node certificate not issued by the service: %v", err)
	}
	if NodeIDOf(cert) != r.NodeID {
		t.Fatalf("nodeId %s, want %s", r.NodeID, NodeIDOf(cert))
	}
	sig, err := base64.StdEncoding.DecodeString(r.Signature)
	if err != nil {
		t.Fatal(err)
	}
	if !ecdsa.VerifyASN1(cert.PublicKey.(*ecdsa.PublicKey), root[:], sig) {
		t.Fatal("signature over the root does not verify")
	}
}
