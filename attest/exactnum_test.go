package attest

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"
)

// exactPayload decodes a token's payload with numbers as json.Number, the
// way a relying party that cares about exact integers reads it.
func exactPayload(t *testing.T, out map[string]any) map[string]any {
	t.Helper()
	tok, _ := out["token"].(string)
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("token %q is not a compact JWS", tok)
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var m map[string]any
	if err := d.Decode(&m); err != nil {
		t.Fatal(err)
	}
	return m
}

// The token's x-ms-runtime and x-ms-inittime are the client's JSON, whose
// SHA-256 the evidence binds: their numbers must reach the token exactly.
// A uint64 counter or nonce above 2^53 used to pass through float64 and
// come out rounded (18446744073709551615 as 18446744073709552000), so the
// token asserted a value the TEE never bound.
func TestRuntimeAndInitTimeNumbersExact(t *testing.T) {
	f := getFixture(t)
	s := newService(t, f, "")
	defer s.Close()

	const big = "18446744073709551615" // 2^64-1
	const odd = "9007199254740993"     // 2^53+1: the first integer a float64 loses
	runtime := []byte(`{"counter":` + big + `,"n":` + odd + `,"neg":-9223372036854775807,"frac":0.1}`)
	initJSON := []byte(`{"epoch":` + odd + `}`)
	var id [64]byte
	sum := sha256.Sum256(initJSON)
	copy(id[:], sum[:])
	q := sgxKSSQuote(t, f, id, runtime)

	code, out := do(t, s, "POST", "/attest/SgxEnclave"+av, initTimeBody("quote", q, runtime, initJSON, "JSON"))
	if code != 200 {
		t.Fatalf("%d %v", code, out)
	}
	c := exactPayload(t, out)
	rt, _ := c["x-ms-runtime"].(map[string]any)
	for k, want := range map[string]string{"counter": big, "n": odd, "neg": "-9223372036854775807", "frac": "0.1"} {
		if got, _ := rt[k].(json.Number); string(got) != want {
			t.Errorf("x-ms-runtime.%s = %v, the client sent %s", k, rt[k], want)
		}
	}
	it, _ := c["x-ms-inittime"].(map[string]any)
	if got, _ := it["epoch"].(json.Number); string(got) != odd {
		t.Errorf("x-ms-inittime.epoch = %v, the client sent %s", it["epoch"], odd)
	}
}
