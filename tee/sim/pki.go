// Package sim is Cloister's simulated TEE: an honest simulator whose
// evidence uses the real Intel DCAP layouts (SGX quote v3, TDX quote v4)
// signed by a real certificate chain, so that the production verifier runs
// on it unchanged. Its root is "Cloister Simulated … NOT FOR PRODUCTION":
// sim evidence verifies only when a caller names that root explicitly, and
// is then reported as sim-sgx or sim-tdx.
//
// The simulator's keys (root CA, PCK CA, PCK certificate, attestation key,
// TCB signing key, sealing secret) persist in a data directory, created on
// first use with owner-only permissions.
package sim

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/big"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// Subjects of the simulated PKI. "PCK Platform CA" is kept in the CA's name
// because the verifier derives the PCK CRL kind from it.
const (
	RootCN    = "Cloister Simulated SGX Root CA - NOT FOR PRODUCTION"
	PCKCACN   = "Cloister Simulated SGX PCK Platform CA - NOT FOR PRODUCTION"
	PCKCN     = "Cloister Simulated SGX PCK Certificate - NOT FOR PRODUCTION"
	TCBSignCN = "Cloister Simulated SGX TCB Signing - NOT FOR PRODUCTION"
)

// Platform facts the sim PCK certificate carries and its TCB info matches.
var (
	// FMSPC is the simulated platform's FMSPC.
	FMSPC = [6]byte{0xC1, 0x05, 0x7E, 0x00, 0x00, 0x00}
	// PCEID is the simulated PCE-ID.
	PCEID = [2]byte{0, 0}
	// CompSVN are the simulated SGX TCB component SVNs.
	CompSVN = [16]byte{5, 5, 2, 2, 3, 1, 0, 5}
	// PCESVN is the simulated PCE SVN.
	PCESVN uint16 = 13
	// PlatformInstanceID is the simulated platform's instance ID, which a
	// PCK certificate from the PCK Platform CA carries.
	PlatformInstanceID = [16]byte{0xC1, 0x05, 0x7E, 0x51, 0x4D}
)

// SGX types of a PCK certificate (Intel SGX PCK Certificate and CRL
// Profile): what the sim PCK says it is.
const (
	SGXTypeStandard              = 0
	SGXTypeScalable              = 1
	SGXTypeScalableWithIntegrity = 2
)

// file names in the sim directory.
const (
	rootKeyFile    = "root.key"
	rootCertFile   = "root.pem"
	pckCAKeyFile   = "pckca.key"
	pckCACertFile  = "pckca.pem"
	pckKeyFile     = "pck.key"
	pckCertFile    = "pck.pem"
	qeKeyFile      = "qe.key"
	tcbKeyFile     = "tcbsign.key"
	tcbCertFile    = "tcbsign.pem"
	sealSecretFile = "seal.secret"
)

// PKI is the simulated platform's keys and certificates.
type PKI struct {
	Dir        string
	Root       *x509.Certificate
	rootKey    *ecdsa.PrivateKey
	PCKCA      *x509.Certificate
	pckCAKey   *ecdsa.PrivateKey
	PCK        *x509.Certificate
	pckKey     *ecdsa.PrivateKey
	qeKey      *ecdsa.PrivateKey
	TCBSigning *x509.Certificate
	tcbKey     *ecdsa.PrivateKey
	sealSecret []byte
	qe         *qeSections
}

// Load opens the PKI in dir, creating it on first use with keys from rnd
// and certificates valid from now. Files are 0600 and the directory 0700.
func Load(dir string, rnd io.Reader, now time.Time) (*PKI, error) {
	if dir == "" {
		return nil, errors.New("sim: no sim directory given")
	}
	if _, err := os.Stat(filepath.Join(dir, rootCertFile)); errors.Is(err, fs.ErrNotExist) {
		if err := create(dir, rnd, now); err != nil {
			return nil, err
		}
	} else if err != nil {
		return nil, fmt.Errorf("sim: %s: %w", dir, err)
	}
	return load(dir)
}

// Reset replaces the PKI in dir with a new one. Evidence from the old one
// stops verifying under the new root.
func Reset(dir string, rnd io.Reader, now time.Time) (*PKI, error) {
	for _, f := range []string{rootKeyFile, rootCertFile, pckCAKeyFile, pckCACertFile, pckKeyFile, pckCertFile, qeKeyFile, tcbKeyFile, tcbCertFile, sealSecretFile} {
		if err := os.Remove(filepath.Join(dir, f)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("sim: reset: %w", err)
		}
	}
	return Load(dir, rnd, now)
}

func create(dir string, rnd io.Reader, now time.Time) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("sim: create %s: %w", dir, err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return fmt.Errorf("sim: %w", err)
	}
	keys := map[string]*ecdsa.PrivateKey{}
	for _, f := range []string{rootKeyFile, pckCAKeyFile, pckKeyFile, qeKeyFile, tcbKeyFile} {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rnd)
		if err != nil {
			return fmt.Errorf("sim: key: %w", err)
		}
		keys[f] = k
	}
	notBefore, notAfter := now.Add(-time.Hour).UTC(), now.AddDate(10, 0, 0).UTC()
	serial := func(n int64) *big.Int { return big.NewInt(now.Unix()<<8 | n) }
	// Every certificate carries the extensions Intel's parser requires of
	// each one it reads (QVL REQUIRED_X509_EXTENSIONS: authority and
	// subject key identifiers, CRL distribution points, key usage, basic
	// constraints), as Intel's own certificates do.
	keyID := func(k *ecdsa.PrivateKey) []byte {
		b, _ := k.PublicKey.Bytes()
		sum := sha256.Sum256(b)
		return sum[:20]
	}
	crlDP := []string{"https://sim.cloister.invalid/crl"}
	ca := func(n int64, cn string, key *ecdsa.PrivateKey) *x509.Certificate {
		return &x509.Certificate{SerialNumber: serial(n), Subject: pkix.Name{CommonName: cn, Organization: []string{"Cloister Simulator"}},
			NotBefore: notBefore, NotAfter: notAfter, IsCA: true, BasicConstraintsValid: true,
			KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign, SubjectKeyId: keyID(key), CRLDistributionPoints: crlDP}
	}
	// A real PCK certificate's CPUSVN equals its component SVNs (the
	// components are CPUSVN's bytes, one SVN each).
	ext, err := PCKExtension(PCKFacts{FMSPC: FMSPC, PCEID: PCEID, CompSVN: CompSVN, CPUSVN: CompSVN, PCESVN: PCESVN,
		SGXType: SGXTypeScalable, PlatformInstanceID: &PlatformInstanceID, Configuration: &PCKConfiguration{}})
	if err != nil {
		return err
	}
	rootT := ca(1, RootCN, keys[rootKeyFile])
	// Go writes no authority key identifier into a self-signed
	// certificate unless told to; Intel's root has one.
	rootT.AuthorityKeyId = rootT.SubjectKeyId
	root, err := sign(rnd, rootT, rootT, keys[rootKeyFile], keys[rootKeyFile])
	if err != nil {
		return err
	}
	pckCA, err := sign(rnd, ca(2, PCKCACN, keys[pckCAKeyFile]), root, keys[pckCAKeyFile], keys[rootKeyFile])
	if err != nil {
		return err
	}
	pck, err := sign(rnd, &x509.Certificate{SerialNumber: serial(3), Subject: pkix.Name{CommonName: PCKCN, Organization: []string{"Cloister Simulator"}},
		NotBefore: notBefore, NotAfter: notAfter, KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageContentCommitment,
		BasicConstraintsValid: true, SubjectKeyId: keyID(keys[pckKeyFile]), CRLDistributionPoints: crlDP,
		ExtraExtensions: []pkix.Extension{ext}}, pckCA, keys[pckKeyFile], keys[pckCAKeyFile])
	if err != nil {
		return err
	}
	tcb, err := sign(rnd, &x509.Certificate{SerialNumber: serial(4), Subject: pkix.Name{CommonName: TCBSignCN, Organization: []string{"Cloister Simulator"}},
		NotBefore: notBefore, NotAfter: notAfter, KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageContentCommitment,
		BasicConstraintsValid: true, SubjectKeyId: keyID(keys[tcbKeyFile]), CRLDistributionPoints: crlDP}, root, keys[tcbKeyFile], keys[rootKeyFile])
	if err != nil {
		return err
	}
	secret := make([]byte, 32)
	if _, err := io.ReadFull(rnd, secret); err != nil {
		return fmt.Errorf("sim: seal secret: %w", err)
	}
	files := map[string][]byte{
		rootCertFile: certPEM(root), pckCACertFile: certPEM(pckCA), pckCertFile: certPEM(pck), tcbCertFile: certPEM(tcb),
		sealSecretFile: secret,
	}
	for f, k := range keys {
		der, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			return fmt.Errorf("sim: %w", err)
		}
		files[f] = pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	}
	// The root certificate is written last: its presence marks a complete PKI.
	for f, b := range files {
		if f == rootCertFile {
			continue
		}
		if err := writeFile(filepath.Join(dir, f), b); err != nil {
			return err
		}
	}
	return writeFile(filepath.Join(dir, rootCertFile), files[rootCertFile])
}

func writeFile(path string, b []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("sim: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("sim: %w", err)
	}
	return nil
}

func sign(rnd io.Reader, tmpl, parent *x509.Certificate, key, parentKey *ecdsa.PrivateKey) (*x509.Certificate, error) {
	der, err := x509.CreateCertificate(rnd, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		return nil, fmt.Errorf("sim: certificate %q: %w", tmpl.Subject.CommonName, err)
	}
	return x509.ParseCertificate(der)
}

func certPEM(c *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
}

func load(dir string) (*PKI, error) {
	p := &PKI{Dir: dir, qe: &qeSections{byProdID: map[uint16]qeSection{}}}
	var err error
	for _, c := range []struct {
		file string
		out  **x509.Certificate
	}{{rootCertFile, &p.Root}, {pckCACertFile, &p.PCKCA}, {pckCertFile, &p.PCK}, {tcbCertFile, &p.TCBSigning}} {
		if *c.out, err = readCert(filepath.Join(dir, c.file)); err != nil {
			return nil, err
		}
	}
	for _, c := range []*x509.Certificate{p.Root, p.PCKCA, p.PCK, p.TCBSigning} {
		if err := checkCurrent(c); err != nil {
			return nil, fmt.Errorf("%w: %s: %v; run `cloister sim reset --sim-dir %s` to make a new simulated platform", ErrOutdated, dir, err, dir)
		}
	}
	for _, k := range []struct {
		file string
		out  **ecdsa.PrivateKey
	}{{rootKeyFile, &p.rootKey}, {pckCAKeyFile, &p.pckCAKey}, {pckKeyFile, &p.pckKey}, {qeKeyFile, &p.qeKey}, {tcbKeyFile, &p.tcbKey}} {
		if *k.out, err = readKey(filepath.Join(dir, k.file)); err != nil {
			return nil, err
		}
	}
	if p.sealSecret, err = os.ReadFile(filepath.Join(dir, sealSecretFile)); err != nil {
		return nil, fmt.Errorf("sim: %w", err)
	}
	if len(p.sealSecret) != 32 {
		return nil, fmt.Errorf("sim: %s: want 32 bytes, got %d", sealSecretFile, len(p.sealSecret))
	}
	return p, nil
}

// ErrOutdated is returned by Load for a sim directory made by an older
// Cloister whose certificates the verifier now refuses (they lack the
// extensions Intel's verifier requires of every certificate).
var ErrOutdated = errors.New("sim: the simulated platform was made by an older Cloister")

// checkCurrent reports what a certificate made by an older simulator
// lacks: the extensions create writes into every certificate because
// Intel's certificate parser requires them.
func checkCurrent(c *x509.Certificate) error {
	switch {
	case len(c.SubjectKeyId) == 0:
		return fmt.Errorf("%q has no subject key identifier", c.Subject.CommonName)
	case len(c.AuthorityKeyId) == 0:
		return fmt.Errorf("%q has no authority key identifier", c.Subject.CommonName)
	case len(c.CRLDistributionPoints) == 0:
		return fmt.Errorf("%q has no CRL distribution points", c.Subject.CommonName)
	case c.KeyUsage == 0 || !c.BasicConstraintsValid:
		return fmt.Errorf("%q lacks key usage or basic constraints", c.Subject.CommonName)
	}
	return nil
}

func readCert(path string) (*x509.Certificate, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("sim: %w", err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("sim: %s: not a PEM certificate", path)
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("sim: %s: %w", path, err)
	}
	return c, nil
}

func readKey(path string) (*ecdsa.PrivateKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("sim: %w", err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, fmt.Errorf("sim: %s: not PEM", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("sim: %s: %w", path, err)
	}
	ek, ok := k.(*ecdsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("sim: %s: not an ECDSA key", path)
	}
	return ek, nil
}

// RootPEM returns the sim root certificate in PEM: what a verifier must be
// given, explicitly, to trust sim evidence.
func (p *PKI) RootPEM() []byte { return certPEM(p.Root) }

// PCKChainPEM is the chain a sim quote carries: PCK, PCK CA, root.
func (p *PKI) PCKChainPEM() []byte {
	return bytes.Join([][]byte{certPEM(p.PCK), certPEM(p.PCKCA), certPEM(p.Root)}, nil)
}

// PCKFacts are the SGX extension values of a PCK certificate.
type PCKFacts struct {
	PPID    [16]byte
	FMSPC   [6]byte
	PCEID   [2]byte
	CompSVN [16]byte
	PCESVN  uint16
	CPUSVN  [16]byte
	SGXType int
	// PlatformInstanceID and Configuration are the two entries only a
	// certificate from the PCK Platform CA carries; nil leaves them out
	// (a Processor CA certificate).
	PlatformInstanceID *[16]byte
	Configuration      *PCKConfiguration
}

// PCKConfiguration is the platform configuration a Platform CA PCK
// certificate states.
type PCKConfiguration struct {
	DynamicPlatform, CachedKeys, SMTEnabled bool
}

var oidSGX = asn1.ObjectIdentifier{1, 2, 840, 113741, 1, 13, 1}

// PCKExtension encodes f as the Intel SGX PCK certificate extension
// (OID 1.2.840.113741.1.13.1), as evidence/dcap reads it.
func PCKExtension(f PCKFacts) (pkix.Extension, error) {
	sub := func(n ...int) asn1.ObjectIdentifier { return append(append(asn1.ObjectIdentifier{}, oidSGX...), n...) }
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		entry := func(oid asn1.ObjectIdentifier, value func(*cryptobyte.Builder)) {
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
				b.AddASN1ObjectIdentifier(oid)
				value(b)
			})
		}
		octets := func(v []byte) func(*cryptobyte.Builder) {
			return func(b *cryptobyte.Builder) { b.AddASN1OctetString(v) }
		}
		entry(sub(1), octets(f.PPID[:]))
		entry(sub(2), func(b *cryptobyte.Builder) {
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
				for i := range 16 {
					b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
						b.AddASN1ObjectIdentifier(sub(2, i+1))
						b.AddASN1Int64(int64(f.CompSVN[i]))
					})
				}
				b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
					b.AddASN1ObjectIdentifier(sub(2, 17))
					b.AddASN1Int64(int64(f.PCESVN))
				})
				b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
					b.AddASN1ObjectIdentifier(sub(2, 18))
					b.AddASN1OctetString(f.CPUSVN[:])
				})
			})
		})
		entry(sub(3), octets(f.PCEID[:]))
		entry(sub(4), octets(f.FMSPC[:]))
		entry(sub(5), func(b *cryptobyte.Builder) { b.AddASN1Enum(int64(f.SGXType)) })
		if f.PlatformInstanceID != nil {
			entry(sub(6), octets(f.PlatformInstanceID[:]))
		}
		if c := f.Configuration; c != nil {
			entry(sub(7), func(b *cryptobyte.Builder) {
				b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
					for i, v := range []bool{c.DynamicPlatform, c.CachedKeys, c.SMTEnabled} {
						b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
							b.AddASN1ObjectIdentifier(sub(7, i+1))
							b.AddASN1Boolean(v)
						})
					}
				})
			})
		}
	})
	der, err := b.Bytes()
	if err != nil {
		return pkix.Extension{}, fmt.Errorf("sim: PCK extension: %w", err)
	}
	return pkix.Extension{Id: oidSGX, Value: der}, nil
}

// DefaultDir is the sim directory used when none is given:
// $XDG_DATA_HOME/cloister/sim, else ~/.local/share/cloister/sim.
func DefaultDir() (string, error) {
	if d := os.Getenv("XDG_DATA_HOME"); d != "" {
		return filepath.Join(d, "cloister", "sim"), nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("sim: no sim directory: %w (pass --sim-dir)", err)
	}
	return filepath.Join(home, ".local", "share", "cloister", "sim"), nil
}
