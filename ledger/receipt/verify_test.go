package receipt

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
)

func mustVerify(t *testing.T, receipt []byte, opts Options) *Result {
	t.Helper()
	resp, err := Parse(receipt)
	if err != nil {
		t.Fatal(err)
	}
	res, err := Verify(resp, opts)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// wantStep asserts that parsing and verifying receipt fails at step (or at
// one of the steps given).
func wantStep(t *testing.T, what string, receipt []byte, opts Options, steps ...Step) {
	t.Helper()
	resp, err := Parse(receipt)
	if err == nil {
		_, err = Verify(resp, opts)
	}
	if err == nil {
		t.Errorf("%s: verified, want a %v error", what, steps)
		return
	}
	if got, ok := StepOf(err); !ok || !slices.Contains(steps, got) {
		t.Errorf("%s: %v (step %v), want step %v", what, err, got, steps)
	}
	if !strings.HasPrefix(err.Error(), "receipt: ") {
		t.Errorf("%s: error %q lacks the package prefix", what, err)
	}
}

// Receipts of every leaf of trees of 1..9 leaves verify: proofs with left
// and right siblings, and the empty proof of a one-leaf tree (root = leaf).
func TestBuiltReceiptsVerify(t *testing.T) {
	service := newIdentity(t, "CCF Network", elliptic.P256(), nil, true)
	node := newIdentity(t, "CCF Node", elliptic.P256(), service, false)
	opts := Options{ServiceCert: []byte(service.pem)}
	sides := map[bool]bool{}
	for n := 1; n <= 9; n++ {
		for idx := 0; idx < n; idx++ {
			raw := buildReceipt(t, node, nil, nil, n, idx)
			res := mustVerify(t, raw, opts)
			if res.TransactionID != "3."+itoa(idx+1) {
				t.Errorf("n=%d idx=%d: transaction id %q", n, idx, res.TransactionID)
			}
			resp, _ := Parse(raw)
			for _, p := range resp.Receipt.Proof {
				sides[p.Left] = true
			}
			if n == 1 && (len(resp.Receipt.Proof) != 0 || res.Root != res.Leaf) {
				t.Errorf("one-leaf tree: proof %d steps, root %x leaf %x", len(resp.Receipt.Proof), res.Root, res.Leaf)
			}
		}
	}
	if !sides[true] || !sides[false] {
		t.Fatalf("proofs did not exercise both sides: %v", sides)
	}
}

// The endorsement chain: node ← oldest previous identity ← … ← current
// service certificate, as CCF writes serviceEndorsements after recoveries.
func TestEndorsementChain(t *testing.T) {
	v1 := newIdentity(t, "CCF Network", elliptic.P384(), nil, true)
	v2 := newIdentity(t, "CCF Network", elliptic.P384(), nil, true)
	v3 := newIdentity(t, "CCF Network", elliptic.P256(), nil, true)
	e1 := endorse(t, v1, v2) // v1's key, endorsed by v2
	e2 := endorse(t, v2, v3) // v2's key, endorsed by v3
	node := newIdentity(t, "CCF Node", elliptic.P384(), v1, false)
	stranger := newIdentity(t, "CCF Network", elliptic.P256(), nil, true)
	strangerE1 := endorse(t, v1, stranger)

	for _, tc := range []struct {
		name    string
		chain   []*identity
		service *identity
		ok      bool
	}{
		{"node under the service it was admitted by", nil, v1, true},
		{"one recovery", []*identity{e1}, v2, true},
		{"two recoveries", []*identity{e1, e2}, v3, true},
		{"two recoveries, reversed", []*identity{e2, e1}, v3, false},
		{"missing the newest endorsement", []*identity{e1}, v3, false},
		{"missing every endorsement", nil, v3, false},
		{"endorsed by another service", []*identity{strangerE1}, v2, false},
		{"another service's certificate trusted", []*identity{e1, e2}, stranger, false},
		{"chain past the trusted identity", []*identity{e1, e2}, v2, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			raw := buildReceipt(t, node, tc.chain, nil, 5, 3)
			opts := Options{ServiceCert: []byte(tc.service.pem)}
			if !tc.ok {
				wantStep(t, tc.name, raw, opts, StepEndorsement)
				return
			}
			if res := mustVerify(t, raw, opts); res.Endorsements != len(tc.chain) {
				t.Errorf("Endorsements %d, want %d", res.Endorsements, len(tc.chain))
			}
		})
	}
}

// As the reference's check_endorsement, an endorsement is a signature
// check only: names, CA flags and validity periods are not looked at. The
// service certificate is the trust anchor; what its key signed, it endorsed.
func TestEndorsementIsSignatureOnly(t *testing.T) {
	service := newIdentity(t, "not CCF", elliptic.P256(), nil, false) // not a CA
	node := newIdentity(t, "anything", elliptic.P256(), service, false)
	mustVerify(t, buildReceipt(t, node, nil, nil, 3, 1), Options{ServiceCert: []byte(service.pem)})
}

// Every certificate in a receipt must have an ECDSA key, as the reference
// requires (_load_and_verify_pem_certificate).
func TestNonECDSAKeysRefused(t *testing.T) {
	_, edKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ecService := newIdentity(t, "CCF Network", elliptic.P256(), nil, true)
	edService := newKeyIdentity(t, "CCF Network", edKey, nil, true)
	node := newIdentity(t, "CCF Node", elliptic.P256(), ecService, false)
	raw := buildReceipt(t, node, nil, nil, 2, 0)
	wantStep(t, "Ed25519 service certificate", raw, Options{ServiceCert: []byte(edService.pem)}, StepServiceCert)

	// An Ed25519 node certificate in place of the node's.
	edNode := newKeyIdentity(t, "CCF Node", edKey, ecService, false)
	wantStep(t, "Ed25519 node certificate", withField(t, raw, "cert", edNode.pem), Options{ServiceCert: []byte(ecService.pem)}, StepNodeCert)

	// An Ed25519 previous identity in the chain.
	edOld := newKeyIdentity(t, "CCF Network", edKey, ecService, true)
	withChain := withField(t, raw, "serviceEndorsements", []string{edOld.pem})
	wantStep(t, "Ed25519 endorsement", withChain, Options{ServiceCert: []byte(ecService.pem)}, StepEndorsement)
}

// withField returns receipt JSON with one member of the (bare) receipt replaced.
func withField(t *testing.T, raw []byte, name string, v any) []byte {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	m[name] = v
	out, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// Each published receipt verifies under its own service certificate only:
// the Python SDK's "unknown service certificate" and "unknown node
// certificate" cases, on every pair.
func TestPublishedReceiptsOtherServiceRefused(t *testing.T) {
	for _, v := range vectors {
		for _, w := range vectors {
			if v.serviceCert == w.serviceCert {
				continue
			}
			wantStep(t, v.name+" under "+w.serviceCert, readVector(t, v.receipt), Options{ServiceCert: readVector(t, w.serviceCert)}, StepEndorsement)
		}
	}
}

// The Python SDK's negative claims cases: receipt 1 with the ClaimDigest
// claims, receipt 2 with the LedgerEntry claims.
func TestPublishedReceiptsWrongClaimsRefused(t *testing.T) {
	for _, tc := range []struct{ receipt, cert, claims string }{
		{"acl_receipt_1.json", "acl_receipt_1_service_cert.pem", "acl_receipt_3_claims_digest.json"},
		{"acl_receipt_2.json", "acl_receipt_2_service_cert.pem", "acl_receipt_3_claims_ledger_entry.json"},
	} {
		claims, err := ParseClaims(readVector(t, tc.claims))
		if err != nil {
			t.Fatal(err)
		}
		wantStep(t, tc.receipt+" with "+tc.claims, readVector(t, tc.receipt), Options{ServiceCert: readVector(t, tc.cert), Claims: claims}, StepClaims)
	}
}

func TestOptionsValidated(t *testing.T) {
	resp, err := Parse(readVector(t, "acl_receipt_2.json"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		opts Options
		step Step
	}{
		{"no service certificate", Options{}, StepServiceCert},
		{"empty claims list", Options{ServiceCert: readVector(t, "acl_receipt_2_service_cert.pem"), Claims: []Claim{}}, StepClaims},
		{"service certificate not PEM", Options{ServiceCert: []byte("invalid_cert_string")}, StepServiceCert},
		{"two certificates", Options{ServiceCert: append(readVector(t, "acl_receipt_2_service_cert.pem"), readVector(t, "acl_receipt_1_service_cert.pem")...)}, StepServiceCert},
	} {
		if _, err := Verify(resp, tc.opts); err == nil {
			t.Errorf("%s: verified", tc.name)
		} else if s, _ := StepOf(err); s != tc.step {
			t.Errorf("%s: %v, want step %s", tc.name, err, tc.step)
		}
	}
	if _, err := Verify(nil, Options{ServiceCert: []byte("x")}); err == nil {
		t.Error("nil receipt verified")
	}
}

// The DER signature, every byte flipped in turn (and truncated at every
// length), never verifies.
func TestSignatureByteFlips(t *testing.T) {
	for _, v := range vectors[1:] { // receipt 3 is there twice; P-256 and P-384 both
		if v.claims == "acl_receipt_3_claims_digest.json" {
			continue
		}
		raw := readVector(t, v.receipt)
		m := decode(t, raw)
		r := innerOf(m)
		sig, err := base64.StdEncoding.DecodeString(r["signature"].(string))
		if err != nil {
			t.Fatal(err)
		}
		for i := range sig {
			for _, bit := range []byte{0x01, 0x80} {
				s := append([]byte(nil), sig...)
				s[i] ^= bit
				r["signature"] = base64.StdEncoding.EncodeToString(s)
				expectRejected(t, fmt.Sprintf("%s: signature byte %d ^ %#x", v.name, i, bit), encode(t, m), v.opts(t))
			}
		}
		for n := 0; n < len(sig); n++ {
			r["signature"] = base64.StdEncoding.EncodeToString(sig[:n])
			expectRejected(t, fmt.Sprintf("%s: signature cut to %d bytes", v.name, n), encode(t, m), v.opts(t))
		}
	}
}

func expectRejected(t *testing.T, what string, raw []byte, opts Options) {
	t.Helper()
	resp, err := Parse(raw)
	if err == nil {
		_, err = Verify(resp, opts)
	}
	if err == nil {
		t.Errorf("%s: verified", what)
	} else if _, ok := StepOf(err); !ok {
		t.Errorf("%s: error without a step: %v", what, err)
	}
}

func decode(t testing.TB, raw []byte) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func encode(t testing.TB, m map[string]any) []byte {
	t.Helper()
	out, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// innerOf returns the receipt object of a response, or the bare receipt.
func innerOf(m map[string]any) map[string]any {
	if r, ok := m["receipt"].(map[string]any); ok {
		return r
	}
	return m
}

// An endorsement signed with SHA-1 is refused, though the signature itself
// verifies (Go's CheckSignature and the reference would accept it).
func TestSHA1EndorsementRefused(t *testing.T) {
	service := newIdentity(t, "CCF Network", elliptic.P256(), nil, true)
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		alg x509.SignatureAlgorithm
		ok  bool
	}{{x509.ECDSAWithSHA256, true}, {x509.ECDSAWithSHA384, true}, {x509.ECDSAWithSHA512, true}, {x509.ECDSAWithSHA1, false}} {
		node := newKeyIdentityAlg(t, "CCF Node", k, service, false, tc.alg)
		if err := service.cert.CheckSignature(node.cert.SignatureAlgorithm, node.cert.RawTBSCertificate, node.cert.Signature); err != nil {
			t.Fatalf("%v: the signature itself does not verify: %v", tc.alg, err)
		}
		raw := buildReceipt(t, node, nil, nil, 3, 2)
		opts := Options{ServiceCert: []byte(service.pem)}
		if tc.ok {
			mustVerify(t, raw, opts)
		} else {
			wantStep(t, tc.alg.String(), raw, opts, StepEndorsement)
		}
	}
}

// The caps of limits.go hold: a chain longer than MaxEndorsements and more
// than MaxClaims claims are refused before any work on them.
func TestLimits(t *testing.T) {
	m := decode(t, readVector(t, "acl_receipt_2.json"))
	chain := make([]any, MaxEndorsements+1)
	for i := range chain {
		chain[i] = string(readVector(t, "acl_receipt_2_service_cert.pem"))
	}
	m["serviceEndorsements"] = chain
	if _, err := Parse(encode(t, m)); err == nil || !strings.Contains(err.Error(), "serviceEndorsements") {
		t.Errorf("%d endorsements: %v", len(chain), err)
	}
	claim := `{"kind":"ClaimDigest","digest":{"protocol":"p","value":"` + zeroDigest + `"}}`
	many := "[" + strings.Repeat(claim+",", MaxClaims) + claim + "]"
	if _, err := ParseClaims([]byte(many)); err == nil {
		t.Errorf("%d claims parsed", MaxClaims+1)
	}
	if _, err := ParseClaims(make([]byte, MaxClaimsSize+1)); err == nil {
		t.Error("oversized claims document parsed")
	}
	big := make([]Claim, MaxClaims+1)
	if _, err := ClaimsDigest(big); err == nil {
		t.Error("too many claims digested")
	}
}

// Unknown members are ignored, as by the reference; only ACL's own
// snake_case spellings are read, not any other case of a name.
func TestMemberNames(t *testing.T) {
	opts := Options{ServiceCert: readVector(t, "acl_receipt_2_service_cert.pem")}
	m := decode(t, readVector(t, "acl_receipt_2.json"))
	m["root"] = "anything"
	m["leaf"] = 7
	mustVerify(t, encode(t, m), opts)
	lc := m["leafComponents"]
	delete(m, "leafComponents")
	m["LeafComponents"] = lc
	if _, err := Parse(encode(t, m)); err == nil || !strings.Contains(err.Error(), "leafComponents: missing") {
		t.Errorf("LeafComponents read as leafComponents: %v", err)
	}
}
