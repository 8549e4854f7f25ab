package dcap

import (
	"crypto/x509"
	"encoding/asn1"
	"fmt"
	"strings"

	"github.com/cloister-dev/cloister/evidence/internal/verr"
	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// OIDs of the Intel SGX PCK certificate extensions (Intel SGX PCK
// Certificate and CRL Profile).
var (
	oidSGXExtensions = asn1.ObjectIdentifier{1, 2, 840, 113741, 1, 13, 1}
	oidPPID          = asn1.ObjectIdentifier{1, 2, 840, 113741, 1, 13, 1, 1}
	oidTCB           = asn1.ObjectIdentifier{1, 2, 840, 113741, 1, 13, 1, 2}
	oidPCEID         = asn1.ObjectIdentifier{1, 2, 840, 113741, 1, 13, 1, 3}
	oidFMSPC         = asn1.ObjectIdentifier{1, 2, 840, 113741, 1, 13, 1, 4}
	oidSGXType       = asn1.ObjectIdentifier{1, 2, 840, 113741, 1, 13, 1, 5}
	oidPlatformInst  = asn1.ObjectIdentifier{1, 2, 840, 113741, 1, 13, 1, 6}
	oidConfiguration = asn1.ObjectIdentifier{1, 2, 840, 113741, 1, 13, 1, 7}
)

// PCKExtensions are the platform facts Intel certifies in a PCK certificate.
// TCB level matching uses these, never the quote header's SVNs.
type PCKExtensions struct {
	PPID  [16]byte
	FMSPC [6]byte
	PCEID [2]byte
	// CompSVN are the 16 SGX TCB component SVNs.
	CompSVN [16]byte
	PCESVN  uint16
	CPUSVN  [16]byte
	// SGXType is 0 (Standard), 1 (Scalable) or 2 (Scalable with integrity).
	SGXType int
	// PlatformInstanceID and Configuration are carried by certificates of
	// the PCK Platform CA only; nil otherwise.
	PlatformInstanceID *[16]byte
	Configuration      *PCKConfiguration
}

// PCKConfiguration is the platform configuration a Platform CA PCK
// certificate states (OID 1.2.840.113741.1.13.1.7).
type PCKConfiguration struct {
	// DynamicPlatform: the platform may add or replace packages.
	DynamicPlatform bool
	// CachedKeys: platform root keys are cached by Intel's registration
	// service.
	CachedKeys bool
	// SMTEnabled: simultaneous multithreading is on.
	SMTEnabled bool
}

// SGXTypeName names an SGX type as the claims print it: "standard",
// "scalable", "scalable_with_integrity", or "unknown(N)".
func SGXTypeName(t int) string {
	switch t {
	case 0:
		return "standard"
	case 1:
		return "scalable"
	case 2:
		return "scalable_with_integrity"
	}
	return fmt.Sprintf("unknown(%d)", t)
}

// ParsePCKExtensions reads the SGX extensions (OID 1.2.840.113741.1.13.1)
// of a PCK certificate, as Intel's parser does (QVL PckCertificate,
// PlatformPckCertificate, Configuration): five entries (Processor CA) or
// seven (Platform CA: with the platform instance ID and configuration);
// every required field exactly once; other OIDs are skipped.
func ParsePCKExtensions(cert *x509.Certificate) (*PCKExtensions, error) {
	var raw []byte
	for _, e := range cert.Extensions {
		if e.Id.Equal(oidSGXExtensions) {
			if raw != nil {
				return nil, pckErr("SGX extension appears twice")
			}
			raw = e.Value
		}
	}
	if raw == nil {
		return nil, pckErr("no SGX extension (OID %s): not a PCK certificate", oidSGXExtensions)
	}
	return parseSGXExtensionValue(raw)
}

func pckErr(format string, args ...any) error {
	return verr.New("dcap", "PCK certificate extensions", verr.Malformed, format, args...)
}

func parseSGXExtensionValue(raw []byte) (*PCKExtensions, error) {
	var p PCKExtensions
	in := cryptobyte.String(raw)
	var seq cryptobyte.String
	if !in.ReadASN1(&seq, cbasn1.SEQUENCE) || !in.Empty() {
		return nil, pckErr("not one SEQUENCE")
	}
	seen := map[string]bool{}
	n := 0
	for !seq.Empty() {
		n++
		var item cryptobyte.String
		var oid asn1.ObjectIdentifier
		if !seq.ReadASN1(&item, cbasn1.SEQUENCE) || !item.ReadASN1ObjectIdentifier(&oid) {
			return nil, pckErr("bad entry")
		}
		key := oid.String()
		if seen[key] {
			return nil, pckErr("entry %s appears twice", key)
		}
		seen[key] = true
		var err error
		switch {
		case oid.Equal(oidPPID):
			err = readOctets(&item, p.PPID[:], "PPID")
		case oid.Equal(oidTCB):
			err = parseTCB(&item, &p)
		case oid.Equal(oidPCEID):
			err = readOctets(&item, p.PCEID[:], "PCE-ID")
		case oid.Equal(oidFMSPC):
			err = readOctets(&item, p.FMSPC[:], "FMSPC")
		case oid.Equal(oidSGXType):
			var v int
			if !item.ReadASN1Enum(&v) {
				err = pckErr("SGX type is not an ENUMERATED")
			}
			p.SGXType = v
		case oid.Equal(oidPlatformInst):
			p.PlatformInstanceID = new([16]byte)
			err = readOctets(&item, p.PlatformInstanceID[:], "platform instance ID")
		case oid.Equal(oidConfiguration):
			p.Configuration, err = parseConfiguration(&item)
		default:
			// Intel's parser skips OIDs it does not know.
			item = nil
		}
		if err != nil {
			return nil, err
		}
		if !item.Empty() {
			return nil, pckErr("trailing data in entry %s", key)
		}
	}
	if n != 5 && n != 7 {
		return nil, pckErr("%d entries; want 5 (Processor CA) or 7 (Platform CA)", n)
	}
	for _, need := range []asn1.ObjectIdentifier{oidPPID, oidTCB, oidPCEID, oidFMSPC, oidSGXType} {
		if !seen[need.String()] {
			return nil, pckErr("missing entry %s", need)
		}
	}
	return &p, nil
}

// parseConfiguration reads the configuration SEQUENCE: dynamicPlatform
// (.7.1), cachedKeys (.7.2) and SMTEnabled (.7.3), each a BOOLEAN, each
// exactly once; other OIDs are skipped, as Intel's parser does.
func parseConfiguration(s *cryptobyte.String) (*PCKConfiguration, error) {
	var seq cryptobyte.String
	if !s.ReadASN1(&seq, cbasn1.SEQUENCE) {
		return nil, pckErr("configuration: not a SEQUENCE")
	}
	var c PCKConfiguration
	var seen [4]bool
	for !seq.Empty() {
		var item cryptobyte.String
		var oid asn1.ObjectIdentifier
		if !seq.ReadASN1(&item, cbasn1.SEQUENCE) || !item.ReadASN1ObjectIdentifier(&oid) {
			return nil, pckErr("configuration: bad entry")
		}
		if len(oid) != len(oidConfiguration)+1 || !asn1.ObjectIdentifier(oid[:len(oidConfiguration)]).Equal(oidConfiguration) ||
			oid[len(oidConfiguration)] < 1 || oid[len(oidConfiguration)] > 3 {
			continue
		}
		k := oid[len(oidConfiguration)]
		if seen[k] {
			return nil, pckErr("configuration: entry %s appears twice", oid)
		}
		seen[k] = true
		var v bool
		if !item.ReadASN1Boolean(&v) || !item.Empty() {
			return nil, pckErr("configuration: entry %s is not one BOOLEAN", oid)
		}
		*[]*bool{nil, &c.DynamicPlatform, &c.CachedKeys, &c.SMTEnabled}[k] = v
	}
	if !seen[1] || !seen[2] || !seen[3] {
		return nil, pckErr("configuration: want dynamicPlatform, cachedKeys and SMTEnabled")
	}
	return &c, nil
}

func readOctets(s *cryptobyte.String, out []byte, what string) error {
	var v cryptobyte.String
	if !s.ReadASN1(&v, cbasn1.OCTET_STRING) || len(v) != len(out) {
		return pckErr("%s: want an OCTET STRING of %d bytes", what, len(out))
	}
	copy(out, v)
	return nil
}

func parseTCB(s *cryptobyte.String, p *PCKExtensions) error {
	var seq cryptobyte.String
	if !s.ReadASN1(&seq, cbasn1.SEQUENCE) {
		return pckErr("TCB: not a SEQUENCE")
	}
	var seen [19]bool
	for !seq.Empty() {
		var item cryptobyte.String
		var oid asn1.ObjectIdentifier
		if !seq.ReadASN1(&item, cbasn1.SEQUENCE) || !item.ReadASN1ObjectIdentifier(&oid) {
			return pckErr("TCB: bad entry")
		}
		if len(oid) != len(oidTCB)+1 || !asn1.ObjectIdentifier(oid[:len(oidTCB)]).Equal(oidTCB) {
			return pckErr("TCB: unexpected entry %s", oid)
		}
		n := oid[len(oidTCB)]
		if n < 1 || n > 18 || seen[n] {
			return pckErr("TCB: unexpected or repeated entry %s", oid)
		}
		seen[n] = true
		switch {
		case n <= 16:
			var v int
			if !item.ReadASN1Integer(&v) || v < 0 || v > 255 {
				return pckErr("TCB: component %d SVN is not an INTEGER in 0..255", n)
			}
			p.CompSVN[n-1] = byte(v)
		case n == 17:
			var v int
			if !item.ReadASN1Integer(&v) || v < 0 || v > 0xffff {
				return pckErr("TCB: PCESVN is not an INTEGER in 0..65535")
			}
			p.PCESVN = uint16(v)
		case n == 18:
			if err := readOctets(&item, p.CPUSVN[:], "CPUSVN"); err != nil {
				return err
			}
		}
		if !item.Empty() {
			return pckErr("TCB: trailing data in entry %s", oid)
		}
	}
	for i := 1; i <= 18; i++ {
		if !seen[i] {
			return pckErr("TCB: missing entry %s.%d", oidTCB, i)
		}
	}
	return nil
}

// PCKCA returns "processor" or "platform" from the issuer of a PCK
// certificate: the CA whose CRL covers it.
func PCKCA(cert *x509.Certificate) (string, error) {
	cn := cert.Issuer.CommonName
	switch {
	case strings.Contains(cn, "Processor"):
		return "processor", nil
	case strings.Contains(cn, "Platform"):
		return "platform", nil
	}
	return "", verr.New("dcap", "PCK certificate", verr.Malformed, "issuer %q is neither the PCK Processor CA nor the PCK Platform CA", cn)
}

// String shows the extensions for messages.
func (p *PCKExtensions) String() string {
	return fmt.Sprintf("FMSPC %x, PCE-ID %x, comp SVNs %v, PCESVN %d", p.FMSPC, p.PCEID, p.CompSVN, p.PCESVN)
}
