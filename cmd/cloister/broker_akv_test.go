package main

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cloister-dev/cloister/broker/akv"
	"github.com/cloister-dev/cloister/ratls"
	"github.com/cloister-dev/cloister/tee/sim"
)

// akvScene is an attestation service and a broker with it as the one
// --akv-authority, both `--tls` on the simulator, in process, and an RA-TLS
// client that trusts the simulator root.
type akvScene struct {
	pki        *sim.PKI
	attestURL  string
	brokerURL  string
	token      string
	client     *http.Client
	brokerLogs *syncBuffer
}

func newAKVScene(t *testing.T) *akvScene {
	t.Helper()
	now := time.Now().Truncate(time.Second)
	clock := func() time.Time { return now }
	dir := t.TempDir()
	simDir := filepath.Join(dir, "sim")
	pki, err := sim.Load(simDir, rand.Reader, now)
	if err != nil {
		t.Fatal(err)
	}
	rootFile := filepath.Join(dir, "root.pem")
	if err := os.WriteFile(rootFile, pki.RootPEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	col, err := pki.Collateral(rand.Reader, now, false)
	if err != nil {
		t.Fatal(err)
	}
	v, err := ratls.NewVerifier(ratls.VerifyOptions{Now: clock, TrustRoots: []*x509.Certificate{pki.Root},
		Collateral: ratls.BundleSource(col), SkipAppraisal: true})
	if err != nil {
		t.Fatal(err)
	}
	tr := &http.Transport{TLSClientConfig: v.ClientConfig(nil)}
	t.Cleanup(tr.CloseIdleConnections)
	client := &http.Client{Transport: tr, Timeout: 30 * time.Second}

	att := serveInProcess(t, clock, "--tls", "--tee", "sim-sgx", "--sim-dir", simDir, "--addr", "127.0.0.1:0", "--trust-root", rootFile)
	attestURL := "https://" + att.addr
	// The authority's TLS certificate, attested by the RA-TLS client above,
	// is what the broker is told to trust for it.
	resp, err := client.Get(attestURL + "/certs")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	caFile := filepath.Join(dir, "attest-ratls.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: resp.TLS.PeerCertificates[0].Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	tokenFile := filepath.Join(dir, "token")
	token := "akv-test-token"
	if err := os.WriteFile(tokenFile, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	br := serveCommandInProcess(t, "broker serve", runBrokerServe, clock, "--listen", "127.0.0.1:0", "--tls",
		"--tee", "sim-sgx", "--sim-dir", simDir, "--trust-root", rootFile, "--admin-token-file", tokenFile,
		"--akv-authority", attestURL, "--akv-authority-ca", caFile)
	return &akvScene{pki: pki, attestURL: attestURL, brokerURL: "https://" + br.addr, token: token, client: client, brokerLogs: br.log}
}

// do sends an AKV REST request with the bearer token and decodes the answer.
func (s *akvScene) do(t *testing.T, method, path string, body any) (int, map[string]any) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, s.brokerURL+path, rd)
	req.Header.Set("Authorization", "Bearer "+s.token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := s.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

// enclaveToken is what a sim enclave does: its transfer key's public half
// goes into its runtime data, the quote's report data binds that runtime
// data, and the attestation service returns a token carrying the key in
// x-ms-runtime.keys.
func (s *akvScene) enclaveToken(t *testing.T, key *rsa.PrivateKey, mrenclave byte) string {
	t.Helper()
	runtime, _ := json.Marshal(map[string]any{"keys": []any{map[string]any{"kid": "enclave-transfer", "kty": "RSA",
		"key_ops": []string{"encrypt"}, "n": base64.RawURLEncoding.EncodeToString(key.N.Bytes()),
		"e": base64.RawURLEncoding.EncodeToString(big.NewInt(int64(key.E)).Bytes())}}})
	var rd [64]byte
	sum := sha256.Sum256(runtime)
	copy(rd[:], sum[:])
	q, err := s.pki.QuoteSGX(rand.Reader, sim.SGXReport{MRENCLAVE: [32]byte{mrenclave}, ReportData: rd})
	if err != nil {
		t.Fatal(err)
	}
	body := fmt.Sprintf(`{"quote":%q,"runtimeData":{"data":%q,"dataType":"JSON"}}`,
		base64.RawURLEncoding.EncodeToString(q), base64.RawURLEncoding.EncodeToString(runtime))
	resp, err := s.client.Post(s.attestURL+"/attest/SgxEnclave?api-version=2022-08-01", "application/json", strings.NewReader(body))
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

// TestBrokerAKVEndToEnd: a sim enclave's quote becomes an attestation
// token, the broker releases a key to it under a policy on the enclave's
// MRENCLAVE, and only the enclave's transfer key unwraps it; another
// enclave's token gets 403 and no key.
func TestBrokerAKVEndToEnd(t *testing.T) {
	s := newAKVScene(t)
	mre := "09" + strings.Repeat("00", 31) // MRENCLAVE [32]byte{9}
	policy := fmt.Sprintf(`{"version":"1.0.0","anyOf":[{"authority":%q,"allOf":[{"claim":"x-ms-sgx-mrenclave","equals":%q},{"claim":"x-ms-attestation-type","equals":"sim-sgx"}]}]}`,
		s.attestURL, mre)
	code, created := s.do(t, "POST", "/keys/e2e/create?api-version=2025-07-01", map[string]any{"kty": "RSA-HSM",
		"attributes":     map[string]any{"exportable": true},
		"release_policy": map[string]any{"data": base64.RawURLEncoding.EncodeToString([]byte(policy))}})
	if code != 200 {
		t.Fatalf("create: %d %v", code, created)
	}
	kid := created["key"].(map[string]any)["kid"].(string)
	if !strings.HasPrefix(kid, s.brokerURL+"/keys/e2e/") {
		t.Fatalf("kid %s is not under the broker's URL %s", kid, s.brokerURL)
	}
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	code, out := s.do(t, "POST", "/keys/e2e/release?api-version=2025-07-01",
		map[string]any{"target": s.enclaveToken(t, key, 9), "enc": akv.EncRsaAesKeyWrap256})
	if code != 200 {
		t.Fatalf("release: %d %v", code, out)
	}
	value := out["value"].(string)
	var hdr struct{ X5c []string }
	hb, _ := base64.RawURLEncoding.DecodeString(strings.Split(value, ".")[0])
	if err := json.Unmarshal(hb, &hdr); err != nil || len(hdr.X5c) == 0 {
		t.Fatalf("release header: %s", hb)
	}
	der, _ := base64.StdEncoding.DecodeString(hdr.X5c[0])
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	r, err := akv.OpenRelease(value, cert.PublicKey.(*rsa.PublicKey), key)
	if err != nil {
		t.Fatal(err)
	}
	priv, err := x509.ParsePKCS8PrivateKey(r.Material)
	if err != nil {
		t.Fatal(err)
	}
	if base64.RawURLEncoding.EncodeToString(priv.(*rsa.PrivateKey).N.Bytes()) != created["key"].(map[string]any)["n"] || r.Kid != kid {
		t.Fatal("the released key is not the created key")
	}
	// Another enclave (MRENCLAVE 0a...) is refused: 403 and no value.
	code, out = s.do(t, "POST", "/keys/e2e/release?api-version=2025-07-01", map[string]any{"target": s.enclaveToken(t, key, 10)})
	if e, _ := out["error"].(map[string]any); code != 403 || out["value"] != nil || !strings.Contains(fmt.Sprint(e["message"]), "x-ms-sgx-mrenclave") {
		t.Fatalf("another enclave: %d %v", code, out)
	}
	if strings.Contains(s.brokerLogs.String(), s.token) {
		t.Fatal("the broker logged its access token")
	}
}

// The AKV flags: an authority that is not an https URL, or a CA file that
// is not one, is a usage error (exit 2) naming the flag.
func TestBrokerAKVFlags(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.pem")
	os.WriteFile(bad, []byte("not a certificate"), 0o600)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--akv-authority", "http://attest.example"}, "--akv-authority"},
		{[]string{"--akv-authority", "https://attest.example?x=1"}, "--akv-authority"},
		{[]string{"--akv-authority-ca", bad}, "--akv-authority-ca"},
		{[]string{"--akv-authority-ca", filepath.Join(dir, "missing.pem")}, "--akv-authority-ca"},
	} {
		args := append([]string{"broker", "serve", "--listen", "127.0.0.1:0", "--tee", "sim-sgx", "--sim-dir", filepath.Join(dir, "sim")}, tc.args...)
		r := runCLI(t, args...)
		if r.code != exitUsage || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("%v: want exit 2 naming %q\n%s", tc.args, tc.want, r)
		}
	}
}
