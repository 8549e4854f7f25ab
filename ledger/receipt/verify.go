package receipt

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
)

// Options are the verifier's inputs from outside the receipt.
type Options struct {
	// ServiceCert is the PEM certificate of the ledger's service identity:
	// the one trust anchor (for ACL, the identity service's
	// ledgerTlsCertificate; for Cloister's ledger, its service certificate).
	ServiceCert []byte
	// Claims, when non-nil, are the application claims the receipt must
	// commit to: their ClaimsDigest must equal leafComponents.claimsDigest.
	// Nil skips the check (the claims digest is then only part of the leaf).
	Claims []Claim
}

func (o *Options) validate() error {
	if len(o.ServiceCert) == 0 {
		return fail(StepServiceCert, "", "no service certificate given: it is the trust anchor")
	}
	if o.Claims != nil && len(o.Claims) == 0 {
		return fail(StepClaims, "", "empty claims list")
	}
	return nil
}

// Result is what a verified receipt proves.
type Result struct {
	// TransactionID is "VIEW.SEQNO" from the commit evidence, "" if the
	// evidence is not in CCF's "ce:VIEW.SEQNO:…" form (it is still hashed
	// into the leaf as written).
	TransactionID string
	Leaf          [32]byte
	Root          [32]byte
	// NodeID is SHA-256 of the signing node's public key (DER SPKI);
	// NodeIDInReceipt says the receipt carried it and it matched.
	NodeID          [32]byte
	NodeIDInReceipt bool
	ClaimsDigest    [32]byte
	// ClaimsChecked says Options.Claims were given and match ClaimsDigest.
	ClaimsChecked bool
	// Endorsements is the number of previous service identities the
	// endorsement chain went through (0: the service certificate endorsed
	// the node directly).
	Endorsements int
}

// Verify checks a parsed receipt against the trusted service certificate
// and, when given, the application claims, in the reference's order:
// claims, node certificate, endorsements, then (after the response's
// transaction id, which the reference does not read) the leaf, root, node id
// and signature. It returns an error naming the step that failed and the
// receipt field (paths are relative to the receipt object), and a Result
// only when every check passed.
func Verify(resp *Response, opts Options) (*Result, error) {
	if resp == nil {
		return nil, fail(StepParse, "", "no receipt")
	}
	if err := opts.validate(); err != nil {
		return nil, err
	}
	r := &resp.Receipt
	res := &Result{ClaimsDigest: r.Leaf.ClaimsDigest}

	if opts.Claims != nil {
		got, err := ClaimsDigest(opts.Claims)
		if err != nil {
			return nil, err
		}
		if subtle.ConstantTimeCompare(got[:], r.Leaf.ClaimsDigest[:]) != 1 {
			return nil, fail(StepClaims, "leafComponents.claimsDigest",
				"the application claims digest to %x, the receipt commits to %x", got, r.Leaf.ClaimsDigest)
		}
		res.ClaimsChecked = true
	}

	service, err := parseCert(opts.ServiceCert)
	if err != nil {
		return nil, wrap(StepServiceCert, "", err)
	}
	node, err := parseCert([]byte(r.NodeCert))
	if err != nil {
		return nil, wrap(StepNodeCert, "cert", err)
	}

	// The node is endorsed by the oldest previous identity, each identity
	// by the next, the newest by the current service certificate.
	cur, curName := node, "cert"
	for i, pemText := range r.ServiceEndorsements {
		name := fmt.Sprintf("serviceEndorsements[%d]", i)
		e, err := parseCert([]byte(pemText))
		if err != nil {
			return nil, wrap(StepEndorsement, name, err)
		}
		if err := checkEndorsement(cur, e); err != nil {
			return nil, wrap(StepEndorsement, name, fmt.Errorf("does not endorse %s: %w", curName, err))
		}
		cur, curName = e, name
	}
	if err := checkEndorsement(cur, service); err != nil {
		return nil, wrap(StepEndorsement, "service certificate", fmt.Errorf("does not endorse %s: %w", curName, err))
	}
	res.Endorsements = len(r.ServiceEndorsements)

	if txid, ok := TransactionID(r.Leaf.CommitEvidence); ok {
		res.TransactionID = txid
	}
	if resp.TransactionID != "" && resp.TransactionID != res.TransactionID {
		return nil, fail(StepTransactionID, "transactionId",
			"the response names transaction %q, the receipt's commit evidence %q", resp.TransactionID, r.Leaf.CommitEvidence)
	}

	res.Leaf = LeafHash(r.Leaf)
	res.Root = Root(res.Leaf, r.Proof)

	nodeKey := node.PublicKey.(*ecdsa.PublicKey) // parseCert admits ECDSA keys only
	if res.NodeID, err = NodeID(nodeKey); err != nil {
		return nil, wrap(StepNodeID, "cert", err)
	}
	if r.NodeID != nil {
		if *r.NodeID != res.NodeID {
			return nil, fail(StepNodeID, "nodeId", "%x is not the node certificate's key, whose id is %x", *r.NodeID, res.NodeID)
		}
		res.NodeIDInReceipt = true
	}

	if !ecdsa.VerifyASN1(nodeKey, res.Root[:], r.Signature) {
		return nil, fail(StepSignature, "signature", "does not verify over root %x with the node certificate's key", res.Root)
	}
	return res, nil
}

// LeafHash is SHA-256(writeSetDigest ‖ SHA-256(commitEvidence) ‖ claimsDigest).
func LeafHash(l LeafComponents) [32]byte {
	ce := sha256.Sum256([]byte(l.CommitEvidence))
	var buf [96]byte
	copy(buf[0:32], l.WriteSetDigest[:])
	copy(buf[32:64], ce[:])
	copy(buf[64:96], l.ClaimsDigest[:])
	return sha256.Sum256(buf[:])
}

// Root folds the proof over the leaf: a left sibling h gives
// SHA-256(h ‖ cur), a right one SHA-256(cur ‖ h).
func Root(leaf [32]byte, proof []ProofStep) [32]byte {
	cur := leaf
	var buf [64]byte
	for _, p := range proof {
		if p.Left {
			copy(buf[0:32], p.Digest[:])
			copy(buf[32:64], cur[:])
		} else {
			copy(buf[0:32], cur[:])
			copy(buf[32:64], p.Digest[:])
		}
		cur = sha256.Sum256(buf[:])
	}
	return cur
}

// NodeID is CCF's node id: SHA-256 of the public key's DER
// SubjectPublicKeyInfo, re-encoded from the key (as the reference does with
// public_bytes(DER, SubjectPublicKeyInfo)), not copied from the certificate.
func NodeID(pub *ecdsa.PublicKey) ([32]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return [32]byte{}, err
	}
	return sha256.Sum256(der), nil
}

// errCertFormat marks a certificate refused for its encoding (not for a
// signature): the one kind of verdict where this package and the
// reference's parser may differ, this package being the stricter
// (refdiff_test.go tells them apart with it).
var errCertFormat = errors.New("malformed certificate")

// parseCert reads exactly one PEM CERTIFICATE block (surrounding whitespace
// allowed) whose key is ECDSA, as the reference requires of every
// certificate in a receipt.
func parseCert(pemText []byte) (*x509.Certificate, error) {
	c, err := parseCertFormat(pemText)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errCertFormat, err)
	}
	return c, nil
}

func parseCertFormat(pemText []byte) (*x509.Certificate, error) {
	block, rest := pem.Decode(pemText)
	if block == nil {
		return nil, errors.New("no PEM certificate")
	}
	if block.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("PEM block %q, want CERTIFICATE", block.Type)
	}
	if len(bytes.TrimSpace(rest)) != 0 {
		return nil, errors.New("data after the PEM certificate")
	}
	if len(block.Headers) != 0 {
		return nil, errors.New("PEM headers in a certificate")
	}
	if err := checkCertificateDER(block.Bytes); err != nil {
		return nil, err
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, err
	}
	if _, ok := c.PublicKey.(*ecdsa.PublicKey); !ok {
		return nil, fmt.Errorf("%T key, want ECDSA", c.PublicKey)
	}
	return c, nil
}

// checkEndorsement verifies endorser's signature over endorsee's TBS
// certificate, hashed with endorsee's signature algorithm: the reference's
// check_endorsement. Like it, it looks at no name, CA flag or validity.
// Unlike it, SHA-1 is refused: x509.Certificate.CheckSignature (and
// Python's cryptography) would accept ECDSA with SHA-1, whose collisions
// could make one signature endorse two certificates; CCF never signs with it.
func checkEndorsement(endorsee, endorser *x509.Certificate) error {
	switch endorsee.SignatureAlgorithm {
	case x509.ECDSAWithSHA1, x509.SHA1WithRSA, x509.DSAWithSHA1:
		return fmt.Errorf("signed with %v: SHA-1 is refused", endorsee.SignatureAlgorithm)
	}
	return endorser.CheckSignature(endorsee.SignatureAlgorithm, endorsee.RawTBSCertificate, endorsee.Signature)
}
