package ledger

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"fmt"
	"io"
	"math/big"
	"net"
	"time"
)

// Identity is a ledger node's keys and certificates, all made inside the
// enclave: the service key (whose self-signed CA certificate users are
// given, as ACL's identity service gives it) and the node key (whose
// certificate the service key issues, and which signs the tree roots).
// Both are ECDSA P-384, as CCF's.
type Identity struct {
	ServiceKey  *ecdsa.PrivateKey
	ServiceCert *x509.Certificate
	NodeKey     *ecdsa.PrivateKey
	NodeCert    *x509.Certificate
}

// IdentityOptions say what the certificates name.
type IdentityOptions struct {
	// Rand is the key and serial source; nil means crypto/rand.
	Rand io.Reader
	// Now is the start of validity; required (no hidden clock).
	Now time.Time
	// DNSNames and IPAddresses name the endpoint in both certificates (the
	// Azure SDK checks the name on the node certificate against the service
	// certificate it trusts).
	DNSNames    []string
	IPAddresses []net.IP
	// ServiceExtensions go in the service certificate, e.g. the RA-TLS
	// evidence binding the service key (SPKIExtension builds it).
	ServiceExtensions func(spki []byte) ([]pkix.Extension, error)
}

// certValidity is long: receipts are checked against the service
// certificate years later, as ACL's are.
const certValidity = 10 * 365 * 24 * time.Hour

// NewIdentity generates the service and node keys and certificates.
func NewIdentity(o IdentityOptions) (*Identity, error) {
	if o.Now.IsZero() {
		return nil, fmt.Errorf("ledger: identity: no time given")
	}
	rnd := o.Rand
	if rnd == nil {
		rnd = rand.Reader
	}
	skey, err := ecdsa.GenerateKey(elliptic.P384(), rnd)
	if err != nil {
		return nil, fmt.Errorf("ledger: identity: service key: %w", err)
	}
	nkey, err := ecdsa.GenerateKey(elliptic.P384(), rnd)
	if err != nil {
		return nil, fmt.Errorf("ledger: identity: node key: %w", err)
	}
	id := &Identity{ServiceKey: skey, NodeKey: nkey}
	if err := id.issue(o, rnd); err != nil {
		return nil, err
	}
	return id, nil
}

// issue (re)makes both certificates for the current keys.
func (id *Identity) issue(o IdentityOptions, rnd io.Reader) error {
	sspki, err := x509.MarshalPKIXPublicKey(&id.ServiceKey.PublicKey)
	if err != nil {
		return fmt.Errorf("ledger: identity: %w", err)
	}
	var exts []pkix.Extension
	if o.ServiceExtensions != nil {
		if exts, err = o.ServiceExtensions(sspki); err != nil {
			return fmt.Errorf("ledger: identity: service certificate extensions: %w", err)
		}
	}
	serial := func() (*big.Int, error) {
		s, err := rand.Int(rnd, new(big.Int).Lsh(big.NewInt(1), 127))
		if err != nil {
			return nil, fmt.Errorf("ledger: identity: serial: %w", err)
		}
		return s.Add(s, big.NewInt(1)), nil
	}
	s1, err := serial()
	if err != nil {
		return err
	}
	stmpl := &x509.Certificate{
		SerialNumber:          s1,
		Subject:               pkix.Name{CommonName: "CCF Service"},
		NotBefore:             o.Now.Add(-time.Hour),
		NotAfter:              o.Now.Add(certValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		DNSNames:              o.DNSNames,
		IPAddresses:           o.IPAddresses,
		ExtraExtensions:       exts,
	}
	sder, err := x509.CreateCertificate(rnd, stmpl, stmpl, &id.ServiceKey.PublicKey, id.ServiceKey)
	if err != nil {
		return fmt.Errorf("ledger: identity: service certificate: %w", err)
	}
	scert, err := x509.ParseCertificate(sder)
	if err != nil {
		return fmt.Errorf("ledger: identity: service certificate: %w", err)
	}
	s2, err := serial()
	if err != nil {
		return err
	}
	ntmpl := &x509.Certificate{
		SerialNumber:          s2,
		Subject:               pkix.Name{CommonName: "CCF Node"},
		NotBefore:             o.Now.Add(-time.Hour),
		NotAfter:              o.Now.Add(certValidity),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
		DNSNames:              o.DNSNames,
		IPAddresses:           o.IPAddresses,
	}
	nder, err := x509.CreateCertificate(rnd, ntmpl, scert, &id.NodeKey.PublicKey, id.ServiceKey)
	if err != nil {
		return fmt.Errorf("ledger: identity: node certificate: %w", err)
	}
	ncert, err := x509.ParseCertificate(nder)
	if err != nil {
		return fmt.Errorf("ledger: identity: node certificate: %w", err)
	}
	id.ServiceCert, id.NodeCert = scert, ncert
	return nil
}

// NodeID is CCF's node id: hex SHA-256 of the node public key's DER
// SubjectPublicKeyInfo.
func (id *Identity) NodeID() string {
	return NodeIDOf(id.NodeCert)
}

// NodeIDOf computes the node id of a node certificate.
func NodeIDOf(cert *x509.Certificate) string {
	s := sha256.Sum256(cert.RawSubjectPublicKeyInfo)
	return hex.EncodeToString(s[:])
}

// sign signs a tree root as CCF does: ECDSA over the root taken as a
// SHA-256 digest, ASN.1 DER.
func (id *Identity) sign(rnd io.Reader, root [32]byte) ([]byte, error) {
	if rnd == nil {
		rnd = rand.Reader
	}
	sig, err := ecdsa.SignASN1(rnd, id.NodeKey, root[:])
	if err != nil {
		return nil, fmt.Errorf("ledger: signing root: %w", err)
	}
	return sig, nil
}

// verifySig checks a root signature with the node key.
func verifySig(id *Identity, root [32]byte, sig []byte) bool {
	return ecdsa.VerifyASN1(&id.NodeKey.PublicKey, root[:], sig)
}
