package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"flag"
	"io"
	"net/http"
	"net/http/cookiejar"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/cloister-dev/cloister/broker/kbs"
	"github.com/cloister-dev/cloister/ratls"
	"github.com/cloister-dev/cloister/tee"
	"github.com/cloister-dev/cloister/tee/sim"
)

// writePublicKeyPEM writes pub as a PEM PUBLIC KEY file and returns its name.
func writePublicKeyPEM(t *testing.T, dir, name string, pub any) string {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	f := filepath.Join(dir, name)
	if err := os.WriteFile(f, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

// Every bad invocation of broker serve is a usage error (exit 2) naming
// what was wrong, found before the broker opens anything.
func TestBrokerServeUsageErrors(t *testing.T) {
	dir := t.TempDir()
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ecKey := writePublicKeyPEM(t, dir, "ec.pem", &ec.PublicKey)
	edPub, _, _ := ed25519.GenerateKey(rand.Reader)
	edKey := writePublicKeyPEM(t, dir, "ed.pem", edPub)
	tokenFile := filepath.Join(dir, "token")
	os.WriteFile(tokenFile, []byte("secret\n"), 0o600)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"broker", "serve", "--bogus"}, "-bogus"},
		{[]string{"broker", "serve", "extra"}, `unexpected argument "extra"`},
		{[]string{"broker", "serve", "--listen", "nope"}, "--listen"},
		{[]string{"broker", "serve", "--listen", "127.0.0.1:99999"}, "--listen"},
		{[]string{"broker", "serve", "--listen", "0.0.0.0:0"}, "--public-url"},
		{[]string{"broker", "serve", "--public-url", "ftp://x"}, "--public-url"},
		{[]string{"broker", "serve", "--tls", "--public-url", "http://x"}, "https://"},
		{[]string{"broker", "serve", "--tee", "bogus"}, "--tee"},
		{[]string{"broker", "serve", "--pcs", "--pcs-url", "ftp://x"}, "--pcs-url"},
		{[]string{"broker", "serve", "--admin-key", filepath.Join(dir, "missing.pem")}, "--admin-key"},
		{[]string{"broker", "serve", "--admin-key", ecKey}, "want Ed25519"},
		{[]string{"broker", "serve", "--admin-key", tokenFile}, "PUBLIC KEY"},
		{[]string{"broker", "serve", "--admin-key", edKey, "--insecure-admin"}, "exclude each other"},
		{[]string{"broker", "serve", "--admin-token-file", tokenFile, "--insecure-admin"}, "exclude each other"},
		{[]string{"broker"}, "missing subcommand"},
		{[]string{"broker", "admin-token"}, "missing --key"},
		{[]string{"broker", "admin-token", "--key", edKey}, "PRIVATE KEY"},
		{[]string{"broker", "admin-token", "--key", filepath.Join(dir, "none")}, "--key"},
		{[]string{"broker", "admin-token", "--key", edKey, "--ttl", "25h"}, "--ttl"},
		{[]string{"broker", "admin-token", "--key", edKey, "--ttl", "0s"}, "--ttl"},
	} {
		r := runCLI(t, tc.args...)
		if r.code != exitUsage || !strings.Contains(r.stderr, tc.want) || r.stdout != "" {
			t.Errorf("cloister %s: want exit 2 naming %q\n%s", strings.Join(tc.args, " "), tc.want, r)
		}
	}
	if r := runCLI(t, "broker", "serve", "--help"); r.code != exitOK || !strings.Contains(r.stdout, "--admin-key") {
		t.Errorf("broker serve --help:\n%s", r)
	}
}

// An extension appended to brokerExtensions gets its flags parsed and its
// handler mounted beside KBS, and the sealed store brokerCommon opens for
// it keeps what it puts, under the broker's --state.
func TestBrokerServeMountsExtensions(t *testing.T) {
	dir := t.TempDir()
	var greeting string
	saved := brokerExtensions
	t.Cleanup(func() { brokerExtensions = saved })
	brokerExtensions = append(brokerExtensions, brokerExtension{
		name:  "test",
		flags: func(fs *flag.FlagSet) { fs.StringVar(&greeting, "test-greeting", "", "") },
		mount: func(mux *http.ServeMux, c *brokerCommon) error {
			s, err := c.openStore(c.ctx, "test")
			if err != nil {
				return err
			}
			if err := s.Put(c.ctx, "greeting", []byte(greeting)); err != nil {
				return err
			}
			mux.HandleFunc("GET /hello", func(w http.ResponseWriter, r *http.Request) {
				v, err := s.Get(r.Context(), "greeting")
				if err != nil {
					http.Error(w, err.Error(), http.StatusInternalServerError)
					return
				}
				w.Write(v)
			})
			return nil
		},
	})
	srv := serveCommandInProcess(t, "broker serve", runBrokerServe, func() time.Time { return fixedNow },
		"--listen", "127.0.0.1:0", "--tee", "sim-sgx", "--sim-dir", filepath.Join(dir, "sim"),
		"--state", filepath.Join(dir, "state"), "--test-greeting", "hi there")
	resp, err := http.Get("http://" + srv.addr + "/hello")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "hi there" {
		t.Fatalf("GET /hello: %d %q", resp.StatusCode, body)
	}
	srv.stop()
	if _, err := os.Stat(filepath.Join(dir, "state", "broker.db")); err != nil {
		t.Errorf("the sealed store is not under --state: %v", err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "state", "broker.db")); strings.Contains(string(b), "hi there") {
		t.Error("the host database holds the extension's value in clear")
	}
}

// `broker serve --tls` end to end, as a CoCo guest meets it: an RA-TLS
// client (trusting the simulator root by name) manages the broker with an
// Ed25519 admin token, runs the KBS flow with sim-sgx evidence, and
// decrypts the released secret with go-jose. After a restart over the
// same --state the sealed resource, policy and token key are still there.
func TestBrokerServeKBSFlowAndRestart(t *testing.T) {
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
	adminPub, adminKey, _ := ed25519.GenerateKey(rand.Reader)
	keyFile := writePublicKeyPEM(t, dir, "admin.pem", adminPub)
	args := []string{"--tls", "--listen", "127.0.0.1:0", "--tee", "sim-sgx", "--sim-dir", simDir,
		"--trust-root", rootFile, "--admin-key", keyFile, "--state", filepath.Join(dir, "state")}
	srv := serveCommandInProcess(t, "broker serve", runBrokerServe, clock, args...)

	v, err := ratls.NewVerifier(ratls.VerifyOptions{Now: clock, TrustRoots: []*x509.Certificate{pki.Root}, SkipTCBEvaluation: true, SkipAppraisal: true})
	if err != nil {
		t.Fatal(err)
	}
	jar, _ := cookiejar.New(nil)
	tr := &http.Transport{TLSClientConfig: v.ClientConfig(nil)}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Jar: jar, Timeout: 30 * time.Second}
	base := "https://" + srv.addr + "/kbs/v0"
	do := func(method, path string, body []byte, hdr map[string]string) (int, []byte) {
		t.Helper()
		req, _ := http.NewRequest(method, base+path, bytes.NewReader(body))
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}
	der, _ := x509.MarshalPKCS8PrivateKey(adminKey)
	privFile := filepath.Join(dir, "admin.key")
	os.WriteFile(privFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
	admin := func(method, path string, body []byte) {
		t.Helper()
		r := runCLIAt(t, now, "broker", "admin-token", "--key", privFile, "--ttl", "10m")
		if r.code != 0 {
			t.Fatalf("broker admin-token: %s", r)
		}
		tok := strings.TrimSpace(r.stdout)
		if code, b := do(method, path, body, map[string]string{"Authorization": "Bearer " + tok}); code != 200 {
			t.Fatalf("%s %s: %d %s", method, path, code, b)
		}
	}
	policy := base64.StdEncoding.EncodeToString([]byte("package cloister\nallow if input.claims.tee == \"sim-sgx\"\n"))
	admin("PUT", "/resource-policy", []byte(`{"policy":"`+policy+`"}`))
	admin("PUT", "/resource/default/key/app", []byte("kept across restarts"))

	app, err := sim.NewPlatform(pki, tee.KindSimSGX, sim.App{MRENCLAVE: [32]byte{9}, MRSIGNER: [32]byte{8}, ProductID: 1}, nil)
	if err != nil {
		t.Fatal(err)
	}
	flow := func() []byte {
		t.Helper()
		code, b := do("POST", "/auth", []byte(`{"version":"0.4.0","tee":"sgx","extra-params":""}`), nil)
		var ch struct{ Nonce string }
		if code != 200 || json.Unmarshal(b, &ch) != nil {
			t.Fatalf("auth: %d %s", code, b)
		}
		priv, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		rd := kbs.RuntimeData{Nonce: ch.Nonce, TeePubKey: kbs.TeePubKey{Kty: "EC", Alg: kbs.AlgECDHESA256KW, Crv: "P-256",
			X: base64.RawURLEncoding.EncodeToString(priv.X.FillBytes(make([]byte, 32))),
			Y: base64.RawURLEncoding.EncodeToString(priv.Y.FillBytes(make([]byte, 32)))}}
		digests, _ := kbs.BindingDigests(&rd, "", kbs.HashSHA384)
		q, err := app.Evidence(context.Background(), digests[0])
		if err != nil {
			t.Fatal(err)
		}
		att, _ := json.Marshal(map[string]any{"runtime-data": rd, "tee-evidence": map[string]any{
			"primary_evidence": map[string]string{"quote": base64.StdEncoding.EncodeToString(q)}, "additional_evidence": ""}})
		if code, b := do("POST", "/attest", att, nil); code != 200 {
			t.Fatalf("attest: %d %s", code, b)
		}
		code, b = do("GET", "/resource/default/key/app", nil, nil)
		if code != 200 {
			t.Fatalf("resource: %d %s", code, b)
		}
		obj, err := jose.ParseEncryptedJSON(string(b), []jose.KeyAlgorithm{jose.ECDH_ES_A256KW}, []jose.ContentEncryption{jose.A256GCM})
		if err != nil {
			t.Fatal(err)
		}
		out, err := obj.Decrypt(priv)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	if got := flow(); string(got) != "kept across restarts" {
		t.Fatalf("got %q", got)
	}
	srv.stop()
	if b, _ := os.ReadFile(filepath.Join(dir, "state", "broker.db")); bytes.Contains(b, []byte("kept across restarts")) {
		t.Error("the resource is in clear in the host database")
	}
	srv = serveCommandInProcess(t, "broker serve", runBrokerServe, clock, args...)
	tr.CloseIdleConnections()
	base = "https://" + srv.addr + "/kbs/v0"
	if got := flow(); string(got) != "kept across restarts" {
		t.Fatalf("after restart: got %q", got)
	}
}
