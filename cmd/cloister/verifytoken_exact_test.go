package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/cloister-dev/cloister/tee/sim"
)

// `verify token` prints the claims the token carries, numbers exactly: a
// token's x-ms-runtime (the client's JSON, bound by hash to the evidence)
// may hold a uint64 above 2^53, and an issued claim may be the real Milan
// report's reported_tcb 0x4405000000000002. Printed through float64 they
// came out as other numbers (18446744073709552000, 4901323769462652928).
func TestVerifyTokenExactNumbers(t *testing.T) {
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := key.PublicKey.Bytes() // 04 || X || Y
	if err != nil {
		t.Fatal(err)
	}
	b64 := base64.RawURLEncoding.EncodeToString
	jwks := writeTemp(t, "certs.json", string(mustJSONBytes(t, map[string]any{"keys": []any{map[string]any{
		"kty": "EC", "crv": "P-256", "kid": "k1", "use": "sig", "x": b64(pub[1:33]), "y": b64(pub[33:]),
	}}})))
	tok := jwt.NewWithClaims(jwt.SigningMethodES256, jwt.MapClaims{
		"iss": "https://attest.test", "iat": now.Unix(), "exp": now.Add(time.Hour).Unix(),
		"x-ms-runtime": map[string]any{"counter": json.Number("18446744073709551615")},
		"tcb":          json.Number("4901323769462652930"),
	})
	tok.Header["kid"] = "k1"
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	r := runCLIAt(t, now, "verify", "token", s, "--jwks", jwks)
	if r.code != 0 {
		t.Fatal(r)
	}
	for _, want := range []string{`"counter": 18446744073709551615`, `"tcb": 4901323769462652930`} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("stdout lacks %s:\n%s", want, r.stdout)
		}
	}
	// The same token, changed by one bit, still fails: the exact reading
	// happens only after the signature check.
	parts := strings.Split(s, ".")
	sig, _ := base64.RawURLEncoding.DecodeString(parts[2])
	sig[0] ^= 1
	if r := runCLIAt(t, now, "verify", "token", parts[0]+"."+parts[1]+"."+b64(sig), "--jwks", jwks); r.code != 1 || r.stdout != "" {
		t.Errorf("flipped signature: %s", r)
	}
}

// attestRuntimeJSON attests a sim SGX quote bound to runtime, sent as
// dataType JSON, and returns the token.
func attestRuntimeJSON(t *testing.T, pki *sim.PKI, url string, runtime []byte) string {
	t.Helper()
	var rd [64]byte
	sum := sha256.Sum256(runtime)
	copy(rd[:], sum[:])
	q, err := pki.QuoteSGX(rand.Reader, sim.SGXReport{MRENCLAVE: [32]byte{9}, ReportData: rd})
	if err != nil {
		t.Fatal(err)
	}
	body := fmt.Sprintf(`{"quote":%q,"runtimeData":{"data":%q,"dataType":"JSON"}}`,
		base64.StdEncoding.EncodeToString(q), base64.RawURLEncoding.EncodeToString(runtime))
	resp, err := http.Post(url+"/attest/SgxEnclave?api-version=2022-08-01", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct{ Token string }
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != 200 {
		t.Fatalf("attest: %d %v", resp.StatusCode, err)
	}
	return out.Token
}
