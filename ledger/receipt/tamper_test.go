package receipt

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
	"testing"
)

// key returns the name a receipt object uses for a field (camelCase or the
// snake_case of older ACL versions).
func key(m map[string]any, camel, snake string) string {
	if _, ok := m[snake]; ok {
		return snake
	}
	return camel
}

// flipHex changes one hex digit of s at i to another valid hex digit.
func flipHex(s string, i int) string {
	b := []byte(s)
	if b[i] == '0' {
		b[i] = '1'
	} else {
		b[i] = '0'
	}
	return string(b)
}

// Every field of every published receipt, changed, is refused at the step
// that covers it: leaf components and proof hashes change the root, so the
// signature fails; nodeId fails its own check; a changed certificate fails
// the endorsement (or does not parse); claims fail the claims digest.
func TestPublishedReceiptsTamperedFieldsRefused(t *testing.T) {
	for _, v := range vectors {
		raw := readVector(t, v.receipt)
		opts := v.opts(t)
		_, wrapped := decode(t, raw)["receipt"]
		mutate := func(what string, step Step, f func(r map[string]any)) {
			t.Helper()
			m := decode(t, raw)
			f(innerOf(m))
			// Checks that run earlier may catch a change first: the claims
			// digest (when claims are given) and the response's transaction id.
			allowed := []Step{step}
			if v.claims != "" {
				allowed = append(allowed, StepClaims)
			}
			if wrapped {
				allowed = append(allowed, StepTransactionID)
			}
			wantStep(t, v.name+": "+what, encode(t, m), opts, allowed...)
		}
		lcKey := key(decode(t, raw), "leafComponents", "leaf_components")
		if _, ok := decode(t, raw)["receipt"]; ok {
			lcKey = key(innerOf(decode(t, raw)), "leafComponents", "leaf_components")
		}
		for _, f := range [][2]string{{"writeSetDigest", "write_set_digest"}, {"claimsDigest", "claims_digest"}} {
			for _, i := range []int{0, 31, 63} {
				step := StepSignature
				if f[0] == "claimsDigest" && v.claims != "" {
					step = StepClaims // checked against the claims first
				}
				mutate(fmt.Sprintf("%s digit %d", f[0], i), step, func(r map[string]any) {
					lc := r[lcKey].(map[string]any)
					k := key(lc, f[0], f[1])
					lc[k] = flipHex(lc[k].(string), i)
				})
			}
		}
		ce := key(innerOf(decode(t, raw))[lcKey].(map[string]any), "commitEvidence", "commit_evidence")
		for _, change := range []func(string) string{
			func(s string) string { return flipHex(s, len(s)-1) },
			func(s string) string { return s + " " },
			func(s string) string { return strings.Replace(s, "ce:", "CE:", 1) },
			func(s string) string { return s[:len(s)-1] },
		} {
			mutate("commitEvidence changed", StepSignature, func(r map[string]any) {
				lc := r[lcKey].(map[string]any)
				lc[ce] = change(lc[ce].(string))
			})
		}
		proof := innerOf(decode(t, raw))["proof"].([]any)
		for i := range proof {
			mutate(fmt.Sprintf("proof[%d] digit", i), StepSignature, func(r map[string]any) {
				el := r["proof"].([]any)[i].(map[string]any)
				for side, h := range el {
					el[side] = flipHex(h.(string), 10)
				}
			})
			mutate(fmt.Sprintf("proof[%d] side swapped", i), StepSignature, func(r map[string]any) {
				el := r["proof"].([]any)[i].(map[string]any)
				for side, h := range el {
					delete(el, side)
					other := map[string]string{"left": "right", "right": "left"}[side]
					el[other] = h
				}
			})
			mutate(fmt.Sprintf("proof[%d] dropped", i), StepSignature, func(r map[string]any) {
				p := r["proof"].([]any)
				r["proof"] = append(append([]any{}, p[:i]...), p[i+1:]...)
			})
		}
		mutate("proof step added", StepSignature, func(r map[string]any) {
			r["proof"] = append(r["proof"].([]any), map[string]any{"left": strings.Repeat("ab", 32)})
		})
		mutate("proof reversed", StepSignature, func(r map[string]any) {
			p := r["proof"].([]any)
			q := make([]any, len(p))
			for i := range p {
				q[len(p)-1-i] = p[i]
			}
			r["proof"] = q
			if len(p) < 2 {
				r["proof"] = []any{}
			}
		})
		for _, i := range []int{0, 63} {
			mutate(fmt.Sprintf("nodeId digit %d", i), StepNodeID, func(r map[string]any) {
				k := key(r, "nodeId", "node_id")
				r[k] = flipHex(r[k].(string), i)
			})
		}
		for _, w := range vectors {
			if w.serviceCert == v.serviceCert {
				continue
			}
			other := innerOf(decode(t, readVector(t, w.receipt)))
			mutate("cert of "+w.name, StepEndorsement, func(r map[string]any) { r["cert"] = other["cert"] })
			mutate("signature of "+w.name, StepSignature, func(r map[string]any) { r["signature"] = other["signature"] })
			mutate("leaf components of "+w.name, StepSignature, func(r map[string]any) {
				r[lcKey] = other[key(other, "leafComponents", "leaf_components")]
			})
			mutate("proof of "+w.name, StepSignature, func(r map[string]any) { r["proof"] = other["proof"] })
			mutate("nodeId of "+w.name, StepNodeID, func(r map[string]any) {
				r[key(r, "nodeId", "node_id")] = other[key(other, "nodeId", "node_id")]
			})
			mutate("endorsement: the service certificate of "+w.name, StepEndorsement, func(r map[string]any) {
				r[key(r, "serviceEndorsements", "service_endorsements")] = []any{string(readVector(t, w.serviceCert))}
			})
		}
		// An endorsement that is the receipt's own service certificate: it
		// does endorse the node, but it is not endorsed by itself in the
		// sense of a chain? It is (self-signed): the reference accepts it,
		// and so do we; it proves nothing new, since that key is trusted.
		m := decode(t, raw)
		innerOf(m)[key(innerOf(m), "serviceEndorsements", "service_endorsements")] = []any{string(readVector(t, v.serviceCert))}
		mustVerify(t, encode(t, m), opts)
	}
}

// Every byte of the node certificate and of the service certificate,
// flipped, is refused: either the certificate no longer parses or the
// endorsement, node id or signature no longer verifies.
func TestCertificateByteFlips(t *testing.T) {
	for _, v := range vectors[:3] { // receipts 1, 2 (P-256) and 3 (P-384)
		raw := readVector(t, v.receipt)
		opts := v.opts(t)
		m := decode(t, raw)
		r := innerOf(m)
		nodeDER := pemDER(t, r["cert"].(string))
		for i := range nodeDER {
			d := append([]byte(nil), nodeDER...)
			d[i] ^= 0x01
			r["cert"] = string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: d}))
			expectRejected(t, fmt.Sprintf("%s: node certificate byte %d", v.name, i), encode(t, m), opts)
		}
		// The service certificate is the trust anchor: only its key is
		// used (as by the reference; its self-signature proves nothing), so
		// a flip elsewhere in it may verify, a flip in its key never.
		svcDER := pemDER(t, string(opts.ServiceCert))
		svc, err := x509.ParseCertificate(svcDER)
		if err != nil {
			t.Fatal(err)
		}
		for i := range svcDER {
			d := append([]byte(nil), svcDER...)
			d[i] ^= 0x01
			o := opts
			o.ServiceCert = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: d})
			resp, err := Parse(raw)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := Verify(resp, o); err != nil {
				continue
			}
			// What counts is that the key, the only thing trusted, is the
			// same key (malformed encodings are refused by der.go).
			c, err := x509.ParseCertificate(d)
			if err != nil || !svc.PublicKey.(*ecdsa.PublicKey).Equal(c.PublicKey) {
				t.Errorf("%s: service certificate byte %d flipped (in its key) verified", v.name, i)
			}
		}

	}
}

// Every byte of an endorsement certificate, flipped, is refused.
func TestEndorsementByteFlips(t *testing.T) {
	v1 := newIdentity(t, "CCF Network", elliptic.P256(), nil, true)
	v2 := newIdentity(t, "CCF Network", elliptic.P256(), nil, true)
	node := newIdentity(t, "CCF Node", elliptic.P256(), v1, false)
	raw := buildReceipt(t, node, []*identity{endorse(t, v1, v2)}, nil, 4, 2)
	opts := Options{ServiceCert: []byte(v2.pem)}
	mustVerify(t, raw, opts)
	m := decode(t, raw)
	der := pemDER(t, m["serviceEndorsements"].([]any)[0].(string))
	for i := range der {
		d := append([]byte(nil), der...)
		d[i] ^= 0x01
		m["serviceEndorsements"] = []any{string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: d}))}
		expectRejected(t, fmt.Sprintf("endorsement byte %d", i), encode(t, m), opts)
	}
}

func pemDER(t *testing.T, s string) []byte {
	t.Helper()
	b, _ := pem.Decode([]byte(s))
	if b == nil {
		t.Fatal("no PEM")
	}
	return b.Bytes
}

// A flip of any bit of 0x01, 0x20 or 0x80 anywhere in a receipt document is
// either refused or changes nothing the receipt proves (a flip inside a
// member the verifier ignores, such as "state", or one that drops the
// optional nodeId): never a different verified transaction, leaf or root.
func TestReceiptDocumentByteFlips(t *testing.T) {
	// One receipt of each shape (snake_case, bare camelCase P-384 with
	// claims, ACL response): every flip costs a full verification.
	for _, v := range []vector{vectors[0], vectors[2], vectors[4]} {
		raw := readVector(t, v.receipt)
		opts := v.opts(t)
		want := mustVerify(t, raw, opts)
		accepted := 0
		for i := range raw {
			for _, bit := range []byte{0x01, 0x20, 0x80} {
				d := append([]byte(nil), raw...)
				d[i] ^= bit
				resp, err := Parse(d)
				if err != nil {
					if _, ok := StepOf(err); !ok {
						t.Fatalf("%s: byte %d ^ %#x: error without a step: %v", v.name, i, bit, err)
					}
					continue
				}
				res, err := Verify(resp, opts)
				if err != nil {
					continue
				}
				accepted++
				if res.Root != want.Root || res.Leaf != want.Leaf || res.TransactionID != want.TransactionID || res.ClaimsDigest != want.ClaimsDigest {
					t.Errorf("%s: byte %d (%q) ^ %#x verified as another transaction: %+v", v.name, i, raw[i], bit, res)
				}
			}
		}
		t.Logf("%s: %d of %d flips verified with an unchanged result", v.name, accepted, 3*len(raw))
	}
}

// No strict prefix of a receipt document parses.
func TestTruncatedReceiptsRefused(t *testing.T) {
	for _, v := range vectors {
		raw := bytes.TrimSpace(readVector(t, v.receipt))
		for n := 0; n < len(raw); n++ {
			if _, err := Parse(raw[:n]); err == nil {
				t.Fatalf("%s: prefix of %d bytes parsed", v.name, n)
			}
		}
	}
}

// The malformed receipts of the Python SDK's tests, and more, are refused
// while parsing, each with the path of the bad field.
func TestMalformedReceiptsRefused(t *testing.T) {
	base := readVector(t, "acl_receipt_2.json")
	opts := Options{ServiceCert: readVector(t, "acl_receipt_2_service_cert.pem")}
	for _, tc := range []struct {
		name, field string
		value       any
		where       string
		step        Step
	}{
		{"leafComponents null", "leafComponents", nil, "leafComponents", StepParse},
		{"leafComponents invalid", "leafComponents", map[string]any{"claimsDigest": "invalid_claims_digest", "commitEvidence": "x", "writeSetDigest": "invalid_write_set_digest"}, "leafComponents.writeSetDigest", StepParse},
		{"leafComponents missing claimsDigest", "leafComponents", map[string]any{"commitEvidence": "x", "writeSetDigest": strings.Repeat("00", 32)}, "leafComponents.claimsDigest", StepParse},
		{"leafComponents both spellings", "leafComponents", map[string]any{"claimsDigest": zeroDigest, "claims_digest": zeroDigest, "commitEvidence": "x", "writeSetDigest": zeroDigest}, "leafComponents", StepParse},
		{"short digest", "leafComponents", map[string]any{"claimsDigest": "00", "commitEvidence": "x", "writeSetDigest": zeroDigest}, "leafComponents.claimsDigest", StepParse},
		{"commitEvidence not a string", "leafComponents", map[string]any{"claimsDigest": zeroDigest, "commitEvidence": 5, "writeSetDigest": zeroDigest}, "leafComponents.commitEvidence", StepParse},
		{"commitEvidence too long", "leafComponents", map[string]any{"claimsDigest": zeroDigest, "commitEvidence": strings.Repeat("c", MaxCommitEvidence+1), "writeSetDigest": zeroDigest}, "leafComponents.commitEvidence", StepParse},
		{"cert null", "cert", nil, "cert", StepParse},
		{"cert invalid", "cert", "invalid_cert_string", "cert", StepNodeCert},
		{"cert with trailing data", "cert", string(readVector(t, "acl_receipt_2_service_cert.pem")) + "junk", "cert", StepNodeCert},
		{"nodeId null", "nodeId", nil, "nodeId", StepParse},
		{"nodeId invalid", "nodeId", "invalid_node_id", "nodeId", StepParse},
		{"proof null", "proof", nil, "proof", StepParse},
		{"proof element empty", "proof", []any{map[string]any{}}, "proof[0]", StepParse},
		{"proof element invalid hash", "proof", []any{map[string]any{"right": "invalid_node_hash"}}, "proof[0].right", StepParse},
		{"proof element both sides", "proof", []any{map[string]any{"left": zeroDigest, "right": zeroDigest}}, "proof[0]", StepParse},
		{"proof element other member", "proof", []any{map[string]any{"up": zeroDigest}}, "proof[0]", StepParse},
		{"proof element not an object", "proof", []any{zeroDigest}, "proof[0]", StepParse},
		{"proof too long", "proof", longProof(MaxProofSteps + 1), "proof", StepParse},
		{"serviceEndorsements a number", "serviceEndorsements", 1, "serviceEndorsements", StepParse},
		{"serviceEndorsements null", "serviceEndorsements", nil, "serviceEndorsements", StepParse},
		{"serviceEndorsements element a number", "serviceEndorsements", []any{2}, "serviceEndorsements[0]", StepParse},
		{"serviceEndorsements element not PEM", "serviceEndorsements", []any{"x"}, "serviceEndorsements[0]", StepEndorsement},
		{"signature null", "signature", nil, "signature", StepParse},
		{"signature not base64", "signature", "MEUC!!", "signature", StepParse},
		{"signature with a line break", "signature", "MEUCIBehRsSl0CyNwMHiObY3Kxw9cV5e/rSQKmCrEJooxWvmAiEAnYwaT5yVGFkSFuJ8JdbW0ZolbDHzRrfl\n+fm6jIrDzxw=", "signature", StepParse},
		{"signature unpadded", "signature", "MEUCIBehRsSl0CyNwMHiObY3Kxw9cV5e/rSQKmCrEJooxWvmAiEAnYwaT5yVGFkSFuJ8JdbW0ZolbDHzRrfl+fm6jIrDzxw", "signature", StepParse},
		{"signature of receipt 1", "signature", "MEYCIQC05OyTn/a5ZKphfY4AsnnBF2Rfj0j0pNrfPtHHO5JvnwIhAPItujuzkC8enmxIsG2X82hBgHCaNoFHL9GC3XfejOUI", "signature", StepSignature},
		{"signature transaction", "isSignatureTransaction", true, "isSignatureTransaction", StepParse},
		{"isSignatureTransaction not a boolean", "isSignatureTransaction", "false", "isSignatureTransaction", StepParse},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := decode(t, base)
			if tc.value == nil && tc.field != "" {
				m[tc.field] = nil
			} else {
				m[tc.field] = tc.value
			}
			raw := encode(t, m)
			resp, err := Parse(raw)
			if err == nil {
				_, err = Verify(resp, opts)
			}
			var ve *VerifyError
			if err == nil {
				t.Fatal("verified")
			}
			if s, _ := StepOf(err); s != tc.step {
				t.Fatalf("%v: step %v, want %v", err, s, tc.step)
			}
			if ve, _ = err.(*VerifyError); ve == nil || ve.Where != tc.where {
				t.Errorf("%v: where %q, want %q", err, ve.Where, tc.where)
			}
		})
	}
	// Members missing altogether.
	for _, f := range []string{"cert", "leafComponents", "proof", "signature"} {
		m := decode(t, base)
		delete(m, f)
		if _, err := Parse(encode(t, m)); err == nil || !strings.Contains(err.Error(), f+": missing") {
			t.Errorf("without %s: %v", f, err)
		}
	}
	// Optional members missing: the reference accepts both.
	for _, f := range []string{"nodeId", "serviceEndorsements"} {
		m := decode(t, base)
		delete(m, f)
		res := mustVerify(t, encode(t, m), opts)
		if f == "nodeId" && res.NodeIDInReceipt {
			t.Error("NodeIDInReceipt without a nodeId")
		}
	}
	// A member given twice, and in both spellings.
	for _, raw := range []string{
		strings.Replace(string(base), `"nodeId":`, `"nodeId": "`+strings.Repeat("0", 64)+`", "nodeId":`, 1),
		strings.Replace(string(base), `"nodeId":`, `"node_id": "`+strings.Repeat("0", 64)+`", "nodeId":`, 1),
	} {
		if _, err := Parse([]byte(raw)); err == nil {
			t.Errorf("duplicate member parsed: %.80s", raw)
		}
	}
	for _, raw := range []string{"", "null", "[]", `"x"`, "{}", `{"receipt": null, "state": "Loading", "transactionId": ""}`, `{"receipt": 5}`, string(base) + "{}", "\xff"} {
		if _, err := Parse([]byte(raw)); err == nil {
			t.Errorf("%q parsed", raw)
		}
	}
	if _, err := Parse(bytes.Repeat([]byte(" "), MaxReceiptSize+1)); err == nil {
		t.Error("oversized document parsed")
	}
}

func longProof(n int) []any {
	p := make([]any, n)
	for i := range p {
		p[i] = map[string]any{"left": zeroDigest}
	}
	return p
}

// The response's transactionId must be the receipt's; the state is not
// trusted and not checked.
func TestResponseTransactionID(t *testing.T) {
	v := vectors[4]
	opts := v.opts(t)
	m := decode(t, readVector(t, v.receipt))
	m["transactionId"] = "8.29570"
	wantStep(t, "another transaction id", encode(t, m), opts, StepTransactionID)
	m["transactionId"] = ""
	mustVerify(t, encode(t, m), opts)
	delete(m, "transactionId")
	mustVerify(t, encode(t, m), opts)
	m["transactionId"] = 8
	wantStep(t, "transactionId a number", encode(t, m), opts, StepParse)
	delete(m, "transactionId")
	m["state"] = "Loading"
	mustVerify(t, encode(t, m), opts)
	// A commit evidence that is not in CCF's form has no transaction id, so
	// a response naming one is refused rather than believed.
	resp, err := Parse(readVector(t, v.receipt))
	if err != nil {
		t.Fatal(err)
	}
	resp.Receipt.Leaf.CommitEvidence = "not:ccf"
	if _, err := Verify(resp, opts); err == nil {
		t.Fatal("verified")
	} else if s, _ := StepOf(err); s != StepTransactionID {
		t.Fatalf("%v: want the transaction id step", err)
	}
}

func TestTransactionID(t *testing.T) {
	for in, want := range map[string]string{
		"ce:2.35:fa08b4eae4a034971b97f0b21810951ec64b06fb2f4b5a1e80f6f4b83a23c719": "2.35",
		"ce:16.7415:e7": "16.7415",
		"ce:2.35:":      "",
		"ce:2.35:xyz":   "",
		"ce:2:ab":       "",
		"ce:02.35:ab":   "",
		"ce:2.-35:ab":   "",
		"ce:.35:ab":     "",
		"2.35:ab":       "",
		"ce:2.35":       "",
	} {
		got, ok := TransactionID(in)
		if got != want || ok != (want != "") {
			t.Errorf("TransactionID(%q) = %q, %v; want %q", in, got, ok, want)
		}
	}
}

var _ = base64.StdEncoding

// Certificate encodings Go's crypto/x509 reads but the reference's parser
// refuses (found by TestReferenceDifferential): a flip of the public key
// info's length swallows the next byte (the extensions vanish), of an
// attribute's or the TBS certificate's length leaves data inside them, of a
// BIT STRING's unused-bits byte makes Go shift the bits. der.go refuses
// each, so no verdict here is laxer than the reference's.
func TestMalformedCertificateEncodingsRefused(t *testing.T) {
	for _, tc := range []struct {
		cert      string
		byteIndex int
		x509OK    bool // crypto/x509 alone accepts it
		what      string
	}{
		{"acl_receipt_3_service_cert.pem", 124, true, "public key info length + 1"},
		{"acl_get_receipt_8.29569_service_cert.pem", 55, true, "data inside the issuer's attribute"},
		{"acl_get_receipt_8.29569_service_cert.pem", 111, true, "data inside the subject's attribute"},
		{"acl_get_receipt_8.29569_service_cert.pem", 214, true, "data after the TBS certificate's fields"},
		{"acl_get_receipt_8.29569_service_cert.pem", 309, true, "data after the signature algorithm"},
		{"acl_receipt_1_service_cert.pem", 148, false, "key BIT STRING with an unused bit"},
	} {
		der := pemDER(t, string(readVector(t, tc.cert)))
		d := append([]byte(nil), der...)
		d[tc.byteIndex] ^= 0x01
		if _, err := x509.ParseCertificate(d); (err == nil) != tc.x509OK {
			t.Errorf("%s (%s): crypto/x509 says %v", tc.cert, tc.what, err)
		}
		_, err := parseCert(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: d}))
		if err == nil || !errors.Is(err, errCertFormat) {
			t.Errorf("%s (%s): %v, want a malformed certificate", tc.cert, tc.what, err)
		}
	}
	// The signature BIT STRING of a node certificate, one unused bit
	// declared: the reference reads the same bytes and verifies; refused here.
	raw := readVector(t, "acl_get_receipt_8.29569.json")
	m := decode(t, raw)
	r := innerOf(m)
	der := pemDER(t, r["cert"].(string))
	der[389] ^= 0x01 // the unused-bits byte of the signature BIT STRING
	r["cert"] = string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
	wantStep(t, "node certificate signature with an unused bit", encode(t, m), vectors[4].opts(t), StepNodeCert)
}
