package qvldiff

import (
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"github.com/cloister-dev/cloister/evidence/pcs"
	"github.com/cloister-dev/cloister/evidence/tdx"
	"github.com/cloister-dev/cloister/tee/sim"
)

const testdata = "../../testdata/"

// base is one verifiable starting point: a quote, its collateral, the root
// both verifiers trust and a time inside every validity window. Bases under
// the test PKI (pki != nil) can be re-signed after a mutation.
type base struct {
	name    string
	quote   []byte
	bundle  pcs.Bundle
	roots   []*x509.Certificate // nil: Cloister's built-in Intel root
	rootPEM []byte
	at      time.Time

	pki             *testPKI
	leaf            *x509.Certificate // the PCK certificate re-signed quotes carry
	ca              *x509.Certificate
	caKey           *ecdsa.PrivateKey
	nul             bool // the PEM chain ends with a NUL
	rootCRL, pckCRL crlSpec
}

func read(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(testdata, name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func parseCert(t testing.TB, der []byte) *x509.Certificate {
	t.Helper()
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func bundleFile(t testing.TB, name string) pcs.Bundle {
	b, err := pcs.ParseBundle(read(t, name))
	if err != nil {
		t.Fatal(err)
	}
	return *b
}

func sprBundle(t testing.TB) pcs.Bundle {
	chain := read(t, "tdx/sample_tcbInfo_issuer_chain.pem")
	b, err := pcs.AssembleBundle(pcs.BundleFiles{
		TCBInfoResponse: read(t, "tdx/sample_tcbInfo_response"), TCBInfoIssuerChain: chain,
		QEIdentityResponse: read(t, "tdx/sample_qeIdentity_response"), QEIdentityIssuerChain: chain,
		PCKCRL: read(t, "tdx/pckcrl"), PCKCRLIssuerChain: read(t, "tdx/pckcrl_issuer_chain.pem"),
		RootCACRL: read(t, "tdx/rootcrl.der"),
	})
	if err != nil {
		t.Fatal(err)
	}
	return *b
}

func crlDER(t testing.TB, s string) []byte { return decodeCRL(s) }

// The time the real vectors are checked at (testdata/README.md).
var (
	atDCAPQVL = time.Unix(1751328000, 0).UTC()
	atSPR     = time.Unix(1688173200, 0).UTC()
	atSim     = time.Date(2025, 7, 1, 0, 0, 0, 0, time.UTC)
)

// makeBases builds every base: the three real vectors under Intel's root,
// the same re-signed under the test PKI, and sim quotes (SGX v3, TDX v4,
// TDX v5) re-signed under it with sim collateral.
func makeBases(t testing.TB) []*base {
	intelRoot := parseCert(t, read(t, "sgx/intel_sgx_root_ca.der"))
	intelRootPEM := pemCert(intelRoot.Raw)
	sgxQ, tdxQ, sprQ := read(t, "sgx/dcap-qvl_sgx_quote_v3.bin"), read(t, "tdx/dcap-qvl_tdx_quote_v4.bin"), read(t, "tdx/tdx_prod_quote_SPR_E4.dat")
	sgxB, tdxB, sprB := bundleFile(t, "sgx/dcap-qvl_sgx_quote_v3_collateral.json"), bundleFile(t, "tdx/dcap-qvl_tdx_quote_v4_collateral.json"), sprBundle(t)
	var bases []*base
	for _, r := range []struct {
		name string
		q    []byte
		b    pcs.Bundle
		at   time.Time
	}{{"sgx-real", sgxQ, sgxB, atDCAPQVL}, {"tdx-real", tdxQ, tdxB, atDCAPQVL}, {"tdx-spr", sprQ, sprB, atSPR}} {
		bases = append(bases, &base{name: r.name, quote: r.q, bundle: r.b, rootPEM: intelRootPEM, at: r.at})
	}

	sgxChain, _ := chainOf(t, sgxQ)
	tdxChain, _ := chainOf(t, tdxQ)
	tcbChain := parsePEM(t, []byte(sgxB.TCBInfoIssuerChain))
	rc := &realCerts{root: intelRoot, processorCA: sgxChain[1], platformCA: tdxChain[1], tcbSigning: tcbChain[0], sgxPCK: sgxChain[0], tdxPCK: tdxChain[0]}
	pki := newTestPKI(t, rc)

	for _, orig := range bases[:3] {
		pki := pki
		if tcb := parsePEM(t, []byte(orig.bundle.TCBInfoIssuerChain))[0]; !tcb.Equal(rc.tcbSigning) {
			// The go-tdx-guest collateral is signed by an older copy of the
			// TCB signing certificate (valid 2018..2025): clone that one.
			p := *pki
			p.tcbSigning = clone(t, tcb, &pki.tcbKey.PublicKey, pki.root, pki.rootKey)
			pki = &p
		}
		certs, nul := chainOf(t, orig.quote)
		ca, caKey := pki.caFor(certs[0])
		leaf := clone(t, certs[0], &pki.pckKey.PublicKey, ca, caKey)
		b := &base{name: orig.name + "-resigned", roots: []*x509.Certificate{pki.root}, rootPEM: pki.rootPEM(), at: orig.at,
			pki: pki, leaf: leaf, ca: ca, caKey: caKey, nul: nul,
			rootCRL: specOf(t, crlDER(t, orig.bundle.RootCACRL)), pckCRL: specOf(t, crlDER(t, orig.bundle.PCKCRL))}
		b.quote = pki.resign(t, orig.quote, chainPEM(nul, leaf, ca, pki.root), false)
		b.bundle = pki.resignBundle(t, orig.bundle, b.rootCRL, b.pckCRL, ca, caKey)
		bases = append(bases, b)
	}
	bases = append(bases, simBases(t, pki, rc)...)
	return bases
}

// simBases makes quotes with tee/sim and moves them under the test PKI:
// the PCK certificate carries the sim platform's SGX extension (with CPUSVN
// equal to the component SVNs, as in a real PCK certificate), the
// collateral is the sim's, re-signed.
func simBases(t testing.TB, pki *testPKI, rc *realCerts) []*base {
	sp, err := sim.Load(t.TempDir(), rand.Reader, atSim)
	if err != nil {
		t.Fatal(err)
	}
	ext, err := sim.PCKExtension(sim.PCKFacts{FMSPC: sim.FMSPC, PCEID: sim.PCEID, CompSVN: sim.CompSVN, PCESVN: sim.PCESVN, CPUSVN: sim.CompSVN})
	if err != nil {
		t.Fatal(err)
	}
	leaf := clone(t, rc.sgxPCK, &pki.pckKey.PublicKey, pki.processorCA, pki.processorKey, func(c *x509.Certificate) {
		c.ExtraExtensions = []pkix.Extension{ext}
		c.NotBefore, c.NotAfter = atSim.AddDate(-1, 0, 0), atSim.AddDate(6, 0, 0)
	})
	var report [64]byte
	copy(report[:], "qvldiff")
	sgxQ, err := sp.QuoteSGX(rand.Reader, sim.SGXReport{MRENCLAVE: [32]byte{1}, MRSIGNER: [32]byte{2}, ISVProdID: 3, ISVSVN: 4, ReportData: report})
	if err != nil {
		t.Fatal(err)
	}
	body := tdx.Body{MRTD: [48]byte{5}, ReportData: report}
	body.TDAttributes[3] = 0x10 // SEPT_VE_DISABLE, as real TDs set
	body.XFAM[0] = 0xE7
	tdxQ, err := sp.QuoteTDX(rand.Reader, body)
	if err != nil {
		t.Fatal(err)
	}
	v5 := toV5(t, tdxQ)
	var out []*base
	for _, s := range []struct {
		name string
		q    []byte
		tdx  bool
	}{{"sim-sgx", sgxQ, false}, {"sim-tdx", tdxQ, true}, {"sim-tdx-v5", v5, true}} {
		sb, err := sp.Collateral(rand.Reader, atSim, s.tdx)
		if err != nil {
			t.Fatal(err)
		}
		issue := atSim.Add(-time.Hour).Truncate(time.Second)
		spec := crlSpec{thisUpdate: issue, nextUpdate: issue.Add(sim.CollateralValidity), number: big.NewInt(1)}
		b := &base{name: s.name, roots: []*x509.Certificate{pki.root}, rootPEM: pki.rootPEM(), at: atSim,
			pki: pki, leaf: leaf, ca: pki.processorCA, caKey: pki.processorKey, rootCRL: spec, pckCRL: spec}
		b.quote = pki.resign(t, s.q, chainPEM(false, leaf, pki.processorCA, pki.root), false)
		b.bundle = pki.resignBundle(t, *sb, spec, spec, pki.processorCA, pki.processorKey)
		out = append(out, b)
	}
	return out
}

// toV5 turns a sim TDX v4 quote into a v5 quote (body type 3, TDX 1.5):
// TEE_TCB_SVN2 equal to TEE_TCB_SVN and a zero MRSERVICETD, as a TD that
// was not relaunched reports. The signature data is re-made by resign.
func toV5(t testing.TB, v4 []byte) []byte {
	l, err := layoutOf(v4)
	if err != nil {
		t.Fatal(err)
	}
	body := v4[48:l.signedEnd]
	v5body := append(append(append([]byte{}, body...), body[:16]...), make([]byte, 48)...)
	q := append([]byte{}, v4[:48]...)
	binary.LittleEndian.PutUint16(q, 5)
	q = binary.LittleEndian.AppendUint16(q, 3)
	q = binary.LittleEndian.AppendUint32(q, uint32(len(v5body)))
	q = append(q, v5body...)
	return append(q, v4[l.signedEnd:]...)
}

func parsePEM(t testing.TB, b []byte) []*x509.Certificate {
	var out []*x509.Certificate
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			return out
		}
		out = append(out, parseCert(t, blk.Bytes))
	}
}

// boundaries lists every instant at which some input of b starts or stops
// being valid: certificate notBefore/notAfter (PCK chain and TCB signing
// chain), CRL thisUpdate/nextUpdate, TCB info and QE identity
// issueDate/nextUpdate.
func boundaries(t testing.TB, q []byte, b pcs.Bundle) []time.Time {
	var ts []time.Time
	if l, err := layoutOf(q); err == nil {
		for _, c := range parsePEMLax(q[l.cert:l.certEnd]) {
			ts = append(ts, c.NotBefore, c.NotAfter)
		}
	}
	for _, c := range parsePEMLax([]byte(b.TCBInfoIssuerChain)) {
		ts = append(ts, c.NotBefore, c.NotAfter)
	}
	for _, s := range []string{b.RootCACRL, b.PCKCRL} {
		if c, err := x509.ParseRevocationList(decodeCRL(s)); err == nil {
			ts = append(ts, c.ThisUpdate, c.NextUpdate)
		}
	}
	for _, s := range []string{b.TCBInfo, b.QEIdentity} {
		var j struct{ IssueDate, NextUpdate string }
		if json.Unmarshal([]byte(s), &j) == nil {
			for _, d := range []string{j.IssueDate, j.NextUpdate} {
				if tt, err := time.Parse(time.RFC3339, d); err == nil {
					ts = append(ts, tt)
				}
			}
		}
	}
	sort.Slice(ts, func(i, j int) bool { return ts[i].Before(ts[j]) })
	out := ts[:0]
	for i, tt := range ts {
		if i == 0 || !tt.Equal(ts[i-1]) {
			out = append(out, tt)
		}
	}
	return out
}

func parsePEMLax(b []byte) []*x509.Certificate {
	var out []*x509.Certificate
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			return out
		}
		if c, err := x509.ParseCertificate(blk.Bytes); err == nil {
			out = append(out, c)
		}
	}
}
