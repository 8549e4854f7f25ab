package main

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/cloister-dev/cloister/attest"
	"github.com/cloister-dev/cloister/internal/etcdembed"
	"github.com/cloister-dev/cloister/tee/sim"
)

// The --etcd flags are checked before anything starts.
func TestAttestServeEtcdUsage(t *testing.T) {
	for _, c := range []struct {
		want string
		args []string
	}{
		{"need --etcd", []string{"--etcd-cacert", "ca.pem"}},
		{"go together", []string{"--etcd", "https://127.0.0.1:2379", "--etcd-cert", "c.pem"}},
		{"--etcd", []string{"--etcd", "127.0.0.1:2379"}},
		{"--etcd", []string{"--etcd", "ftp://127.0.0.1:2379"}},
		{"mixes", []string{"--etcd", "http://127.0.0.1:2379,https://127.0.0.1:2380"}},
		{"need https", []string{"--etcd", "http://127.0.0.1:2379", "--etcd-cacert", "ca.pem"}},
		{"--etcd-prefix", []string{"--etcd", "http://127.0.0.1:2379", "--etcd-prefix", "nope"}},
		{"--replica-ttl", []string{"--etcd", "http://127.0.0.1:2379", "--replica-ttl", "100ms"}},
	} {
		serveExpectUsage(t, c.want, append([]string{"--addr", "127.0.0.1:0", "--insecure-admin"}, c.args...)...)
	}
}

// Two `attest serve --etcd` processes (in this process) share one etcd: a
// policy set on one is in force on the other when the PUT returns, and
// each lists both replicas' keys.
func TestAttestServeEtcdReplicas(t *testing.T) {
	if testing.Short() {
		t.Skip("starts etcd and two services")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	cluster, err := etcdembed.Start(ctx, "", 1)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cluster.Close() }) // after the services (cleanups run last in, first out)
	dir := t.TempDir()
	simDir := filepath.Join(dir, "sim")
	pki, err := sim.Load(simDir, rand.Reader, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	rootFile := filepath.Join(dir, "root.pem")
	if err := os.WriteFile(rootFile, pki.RootPEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	args := []string{"--addr", "127.0.0.1:0", "--public-url", "http://attest.test", "--insecure-admin", "--tee", "sim-sgx",
		"--sim-dir", simDir, "--trust-root", rootFile, "--etcd", strings.Join(cluster.Endpoints(), ","), "--replica-ttl", "5s"}
	a := serveInProcess(t, time.Now, args...)
	b := serveInProcess(t, time.Now, args...)
	defer a.stop()
	defer b.stop()

	text := "version= 1.0;\nauthorizationrules{\n\t=> permit();\n};\nissuancerules{\n\t=> issue(type=\"marker\", value=\"via-a\");\n};\n"
	req, _ := http.NewRequestWithContext(ctx, "PUT", "http://"+a.addr+"/policies/SgxEnclave?api-version=2022-08-01", strings.NewReader(attest.UnsignedPolicy(text)))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("PUT on a: %d", resp.StatusCode)
	}
	claims := jwt.MapClaims{}
	if _, _, err := jwt.NewParser().ParseUnverified(attestHello(t, pki, "http://"+b.addr), claims); err != nil {
		t.Fatal(err)
	}
	if claims["marker"] != "via-a" {
		t.Errorf("token from b: marker %v, want the policy set on a", claims["marker"])
	}
	for _, s := range []*inProcessServer{a, b} {
		resp, err := http.Get("http://" + s.addr + "/certs")
		if err != nil {
			t.Fatal(err)
		}
		var set struct{ Keys []json.RawMessage }
		err = json.NewDecoder(resp.Body).Decode(&set)
		resp.Body.Close()
		if err != nil || len(set.Keys) != 2 {
			t.Errorf("%s/certs: %d keys (%v), want both replicas'", s.addr, len(set.Keys), err)
		}
	}
}
