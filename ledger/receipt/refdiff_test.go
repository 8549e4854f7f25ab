package receipt

import (
	"bufio"
	"bytes"
	"crypto/elliptic"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"testing"
)

// The differential: every case below is verified by this package and by
// testdata/pyverify.py, the documented algorithm on pyca/cryptography
// (OpenSSL), the library of Microsoft's reference verifier (the
// azure-confidentialledger SDK), so that certificate parsing and ECDSA are
// judged by the reference's own stack. The verdicts must agree, except for
// certificate encodings and a response's mismatched transactionId, which
// this package deliberately refuses (doc.go); nothing the reference refuses
// may verify here. Needs python3 with the cryptography package (Debian's
// python3-cryptography; .ci/run installs it): skipped without it, except
// under CI=true, where it fails.
func TestReferenceDifferential(t *testing.T) {
	py := pythonWithCryptography(t)
	type dcase struct {
		name    string
		receipt json.RawMessage
		text    bool // receipt is any bytes, sent to the oracle as JSON text to parse
		cert    string
		claims  []any
	}
	var cases []dcase
	add := func(name string, receipt []byte, cert []byte, claims []any) {
		cases = append(cases, dcase{name, receipt, false, string(cert), claims})
	}
	claimsOf := func(v vector) []any {
		if v.claims == "" {
			return nil
		}
		var c []any
		if err := json.Unmarshal(readVector(t, v.claims), &c); err != nil {
			t.Fatal(err)
		}
		return c
	}
	for _, v := range vectors {
		raw, cert := readVector(t, v.receipt), readVector(t, v.serviceCert)
		add(v.name, raw, cert, claimsOf(v))
		for _, w := range vectors {
			if w.serviceCert != v.serviceCert {
				add(v.name+" under "+w.serviceCert, raw, readVector(t, w.serviceCert), nil)
			}
		}
	}
	// Byte flips of the node certificate, the service certificate and the
	// signature of one receipt of each shape.
	for _, v := range []vector{vectors[0], vectors[2], vectors[4]} {
		raw, cert := readVector(t, v.receipt), readVector(t, v.serviceCert)
		m := decode(t, raw)
		r := innerOf(m)
		node := r["cert"].(string)
		nodeDER := pemDER(t, node)
		for i := range nodeDER {
			d := append([]byte(nil), nodeDER...)
			d[i] ^= 0x01
			r["cert"] = string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: d}))
			add(fmt.Sprintf("%s: node certificate byte %d", v.name, i), encode(t, m), cert, claimsOf(v))
		}
		r["cert"] = node
		svcDER := pemDER(t, string(cert))
		for i := range svcDER {
			d := append([]byte(nil), svcDER...)
			d[i] ^= 0x01
			add(fmt.Sprintf("%s: service certificate byte %d", v.name, i), raw, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: d}), claimsOf(v))
		}
		sig, err := base64.StdEncoding.DecodeString(r["signature"].(string))
		if err != nil {
			t.Fatal(err)
		}
		for i := range sig {
			s := append([]byte(nil), sig...)
			s[i] ^= 0x01
			r["signature"] = base64.StdEncoding.EncodeToString(s)
			add(fmt.Sprintf("%s: signature byte %d", v.name, i), encode(t, m), cert, claimsOf(v))
		}
	}
	// Endorsement chains, and every byte of an endorsement flipped.
	v1 := newIdentity(t, "CCF Network", elliptic.P384(), nil, true)
	v2 := newIdentity(t, "CCF Network", elliptic.P256(), nil, true)
	e1 := endorse(t, v1, v2)
	node := newIdentity(t, "CCF Node", elliptic.P384(), v1, false)
	chained := buildReceipt(t, node, []*identity{e1}, nil, 6, 5)
	add("one endorsement", chained, []byte(v2.pem), nil)
	add("one endorsement, old service", chained, []byte(v1.pem), nil)
	add("no endorsement, new service", buildReceipt(t, node, nil, nil, 6, 5), []byte(v2.pem), nil)
	m := decode(t, chained)
	der := pemDER(t, e1.pem)
	for i := range der {
		d := append([]byte(nil), der...)
		d[i] ^= 0x01
		m["serviceEndorsements"] = []any{string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: d}))}
		add(fmt.Sprintf("endorsement byte %d", i), encode(t, m), []byte(v2.pem), nil)
	}

	// Whole documents with one bit flipped anywhere (JSON syntax, member
	// names, hex, base64, PEM text), parsed by each side's own JSON reader.
	for _, v := range []vector{vectors[2], vectors[4]} {
		raw, cert := readVector(t, v.receipt), readVector(t, v.serviceCert)
		for i := range raw {
			d := append([]byte(nil), raw...)
			d[i] ^= 0x01
			cases = append(cases, dcase{fmt.Sprintf("%s: document byte %d (%q)", v.name, i, raw[i]), d, true, string(cert), claimsOf(v)})
		}
	}

	var in bytes.Buffer
	for _, c := range cases {
		m := map[string]any{"receipt": c.receipt, "service_cert": c.cert, "claims": c.claims}
		if c.text {
			m = map[string]any{"receipt_text": string(c.receipt), "service_cert": c.cert, "claims": c.claims}
		}
		line, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		in.Write(line)
		in.WriteByte('\n')
	}
	cmd := exec.Command(py, "testdata/pyverify.py")
	cmd.Stdin = &in
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("pyverify.py: %v\n%s", err, stderr.String())
	}
	var verdicts []string
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		verdicts = append(verdicts, sc.Text())
	}
	if len(verdicts) != len(cases) {
		t.Fatalf("pyverify.py answered %d of %d cases", len(verdicts), len(cases))
	}
	agreeOK, agreeErr, stricter := 0, 0, 0
	for i, c := range cases {
		opts := Options{ServiceCert: []byte(c.cert)}
		if c.claims != nil {
			raw, _ := json.Marshal(c.claims)
			cl, err := ParseClaims(raw)
			if err != nil {
				t.Fatalf("%s: claims: %v", c.name, err)
			}
			opts.Claims = cl
		}
		resp, err := Parse(c.receipt)
		if err == nil {
			_, err = Verify(resp, opts)
		}
		ours, theirs := err == nil, verdicts[i] == "ok"
		switch {
		case !ours && theirs && errors.Is(err, errCertFormat):
			// Deliberately stricter: a certificate encoding (DER or PEM
			// text) the reference's parser reads and Go's, with der.go,
			// refuses (doc.go).
			stricter++
		case !ours && theirs && isStep(err, StepTransactionID):
			// Deliberately stricter: the reference does not read the
			// response's transactionId (doc.go).
			stricter++
		case ours != theirs:
			t.Errorf("%s: Cloister %v, reference %q", c.name, errOrOK(err), verdicts[i])
		case ours:
			agreeOK++
		default:
			agreeErr++
		}
	}
	if agreeOK < len(vectors)+2 {
		t.Errorf("only %d cases verified on both sides", agreeOK)
	}
	t.Logf("%d cases: %d verified by both, %d refused by both, %d refused here only (certificate encodings, transactionId)", len(cases), agreeOK, agreeErr, stricter)
}

func isStep(err error, s Step) bool {
	got, ok := StepOf(err)
	return ok && got == s
}

func errOrOK(err error) string {
	if err == nil {
		return "ok"
	}
	return err.Error()
}

// pythonWithCryptography returns python3 when it can import cryptography.
func pythonWithCryptography(t *testing.T) string {
	t.Helper()
	py, err := exec.LookPath("python3")
	if err == nil {
		err = exec.Command(py, "-c", "import cryptography.x509, cryptography.hazmat.primitives.asymmetric.ec").Run()
	}
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("python3 with the cryptography package is needed (Debian: python3-cryptography): %v", err)
		}
		t.Skipf("python3 with the cryptography package not found (Debian: python3-cryptography): %v", err)
	}
	return py
}
