package receipt

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"testing"
	"time"
)

// identity is a key with its certificate, as CCF's service and node
// identities are: tests build services with previous identities, which no
// published receipt has.
type identity struct {
	key  crypto.Signer
	cert *x509.Certificate
	pem  string
}

var serial int64

// newIdentity makes a certificate for a fresh key of curve c (nil: Ed25519
// is not ECDSA, see newKeyIdentity), signed by issuer (nil: self-signed).
func newIdentity(t testing.TB, cn string, c elliptic.Curve, issuer *identity, isCA bool) *identity {
	t.Helper()
	k, err := ecdsa.GenerateKey(c, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return newKeyIdentity(t, cn, k, issuer, isCA)
}

func newKeyIdentity(t testing.TB, cn string, k crypto.Signer, issuer *identity, isCA bool) *identity {
	t.Helper()
	return newKeyIdentityAlg(t, cn, k, issuer, isCA, x509.UnknownSignatureAlgorithm)
}

// newKeyIdentityAlg is newKeyIdentity with the issuer's signature algorithm
// chosen (Unknown: Go's default for the issuer's key).
func newKeyIdentityAlg(t testing.TB, cn string, k crypto.Signer, issuer *identity, isCA bool, alg x509.SignatureAlgorithm) *identity {
	t.Helper()
	serial++
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(serial),
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC),
		NotAfter:              time.Date(2026, 4, 1, 0, 0, 0, 0, time.UTC),
		BasicConstraintsValid: true,
		IsCA:                  isCA,
		SignatureAlgorithm:    alg,
	}
	parent, signer := tmpl, k
	if issuer != nil {
		parent, signer = issuer.cert, issuer.key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, k.Public(), signer)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &identity{key: k, cert: c, pem: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))}
}

// endorse is CCF's endorsement of a previous service identity by a newer
// one: the old identity's key in a certificate the new identity signed.
func endorse(t testing.TB, old, by *identity) *identity {
	t.Helper()
	return newKeyIdentity(t, old.cert.Subject.CommonName, old.key, by, true)
}

// built is a receipt made by a test ledger: a tree of leaves, one of which
// the receipt proves, the root signed by node.
type built struct {
	Cert                string              `json:"cert"`
	LeafComponents      map[string]string   `json:"leafComponents"`
	NodeID              string              `json:"nodeId,omitempty"`
	Proof               []map[string]string `json:"proof"`
	ServiceEndorsements []string            `json:"serviceEndorsements"`
	Signature           string              `json:"signature"`
}

// buildReceipt proves leaf index idx of a tree of n leaves (n ≥ 1) signed by
// node, with the given endorsements (oldest first), claims committed to by
// their digest (zero when nil).
func buildReceipt(t testing.TB, node *identity, endorsements []*identity, claims []Claim, n, idx int) []byte {
	t.Helper()
	var claimsDigest [32]byte
	if claims != nil {
		var err error
		if claimsDigest, err = ClaimsDigest(claims); err != nil {
			t.Fatal(err)
		}
	}
	leaves := make([][32]byte, n)
	var target LeafComponents
	for i := range leaves {
		lc := LeafComponents{
			WriteSetDigest: sha256.Sum256([]byte{byte(i)}),
			CommitEvidence: "ce:3." + itoa(i+1) + ":" + hex.EncodeToString([]byte{byte(i), 1, 2, 3}),
			ClaimsDigest:   claimsDigest,
		}
		leaves[i] = LeafHash(lc)
		if i == idx {
			target = lc
		}
	}
	// A plain binary tree of the leaves (odd nodes promoted), enough to give
	// proofs with left and right siblings.
	var proof []ProofStep
	level, pos := leaves, idx
	for len(level) > 1 {
		var next [][32]byte
		for i := 0; i < len(level); i += 2 {
			if i+1 == len(level) {
				next = append(next, level[i])
				continue
			}
			var buf [64]byte
			copy(buf[:32], level[i][:])
			copy(buf[32:], level[i+1][:])
			next = append(next, sha256.Sum256(buf[:]))
		}
		switch {
		case pos%2 == 1:
			proof = append(proof, ProofStep{Left: true, Digest: level[pos-1]})
		case pos+1 < len(level):
			proof = append(proof, ProofStep{Left: false, Digest: level[pos+1]})
		}
		level, pos = next, pos/2
	}
	root := Root(LeafHash(target), proof)
	if root != level[0] {
		t.Fatalf("builder: proof folds to %x, tree root %x", root, level[0])
	}
	sig, err := node.key.Sign(rand.Reader, root[:], crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	id, err := NodeID(node.key.Public().(*ecdsa.PublicKey))
	if err != nil {
		t.Fatal(err)
	}
	b := built{
		Cert: node.pem,
		LeafComponents: map[string]string{
			"writeSetDigest": hex.EncodeToString(target.WriteSetDigest[:]),
			"commitEvidence": target.CommitEvidence,
			"claimsDigest":   hex.EncodeToString(target.ClaimsDigest[:]),
		},
		NodeID:              hex.EncodeToString(id[:]),
		Proof:               []map[string]string{},
		ServiceEndorsements: []string{},
		Signature:           base64.StdEncoding.EncodeToString(sig),
	}
	for _, p := range proof {
		side := "right"
		if p.Left {
			side = "left"
		}
		b.Proof = append(b.Proof, map[string]string{side: hex.EncodeToString(p.Digest[:])})
	}
	for _, e := range endorsements {
		b.ServiceEndorsements = append(b.ServiceEndorsements, e.pem)
	}
	out, err := json.Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func itoa(i int) string { return big.NewInt(int64(i)).String() }
