package main

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"flag"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
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
