package main

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/cloister-dev/cloister/attest"
	"github.com/cloister-dev/cloister/tee/sim"
)

// serveExpectUsage runs attest serve with args and requires it to refuse to
// start with exit 2 and a message containing want, without ever listening.
func serveExpectUsage(t *testing.T, want string, args ...string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	log := &syncBuffer{}
	e := &env{ctx: ctx, stdin: strings.NewReader(""), stdout: io.Discard, stderr: log, now: time.Now}
	done := make(chan error, 1)
	go func() { done <- runAttestServe(e, args) }()
	for {
		select {
		case err := <-done:
			code := finish(e, "attest serve", err)
			if code != exitUsage || !strings.Contains(log.String(), want) {
				t.Errorf("%v: exit %d, want 2 with %q:\n%s", args, code, want, log.String())
			}
			return
		case <-time.After(10 * time.Millisecond):
			if strings.Contains(log.String(), "attestation service listening") {
				cancel()
				<-done
				t.Errorf("%v: started serving, want a usage error %q:\n%s", args, want, log.String())
				return
			}
		}
	}
}

// The URL clients use (iss, jku, jwks_uri) is --public-url, or the listen
// address when that names one host; bound to every interface without
// --public-url the service refuses to start, since it cannot know its name.
func TestAttestServePublicURL(t *testing.T) {
	dir := t.TempDir()
	simDir := filepath.Join(dir, "sim")
	now := time.Now().Truncate(time.Second)
	clock := func() time.Time { return now }
	if _, err := sim.Load(simDir, rand.Reader, now); err != nil {
		t.Fatal(err)
	}
	base := []string{"--tee", "sim-sgx", "--sim-dir", simDir, "--key-rotation", "0"}

	for _, addr := range []string{"0.0.0.0:0", "[::]:0", ":0"} {
		serveExpectUsage(t, "--public-url", append([]string{"--addr", addr}, base...)...)
	}
	for _, bad := range []struct{ url, want string }{
		{"ftp://attest.example", "http:// or https://"},
		{"https://attest.example/path", "no path"},
		{"https://attest.example?x=1", "no path"},
		{"https://", "host"},
		{"attest.example:8443", "http:// or https://"},
		{"http://attest.example:8080", "--tls"}, // --tls serves https, so the public URL must say so
	} {
		args := append([]string{"--addr", "127.0.0.1:0", "--public-url", bad.url}, base...)
		if strings.HasPrefix(bad.url, "http://") {
			args = append(args, "--tls")
		}
		serveExpectUsage(t, bad.want, args...)
	}

	get := func(c *http.Client, url string, v any) {
		t.Helper()
		resp, err := c.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if err := json.NewDecoder(resp.Body).Decode(v); err != nil || resp.StatusCode != 200 {
			t.Fatalf("GET %s: %d %v", url, resp.StatusCode, err)
		}
	}
	type oidc struct {
		Issuer  string `json:"issuer"`
		JWKSURI string `json:"jwks_uri"`
	}

	t.Run("derived from a concrete listen address", func(t *testing.T) {
		for _, host := range []string{"127.0.0.1", "localhost"} {
			srv := serveInProcess(t, clock, append([]string{"--addr", host + ":0", "--insecure-admin"}, base...)...)
			_, port, _ := net.SplitHostPort(srv.addr)
			want := "http://" + net.JoinHostPort(host, port)
			var d oidc
			get(http.DefaultClient, "http://"+srv.addr+"/.well-known/openid-configuration", &d)
			if d.Issuer != want || d.JWKSURI != want+"/certs" {
				t.Errorf("--addr %s: discovery %+v, want issuer %s", host, d, want)
			}
			srv.stop()
		}
	})

	t.Run("--public-url with --tls", func(t *testing.T) {
		const public = "https://attest.example:8443"
		srv := serveInProcess(t, clock, append([]string{"--addr", "127.0.0.1:0", "--tls", "--public-url", public + "/", "--insecure-admin"}, base...)...)
		// The RA-TLS certificate names the public host and the listen IP, so
		// a client checking names accepts it under either.
		conn, err := tls.Dial("tcp", srv.addr, &tls.Config{InsecureSkipVerify: true}) // names only; evidence is TestAttestServeTLS's
		if err != nil {
			t.Fatal(err)
		}
		leaf := conn.ConnectionState().PeerCertificates[0]
		conn.Close()
		if !slices.Contains(leaf.DNSNames, "attest.example") {
			t.Errorf("certificate DNS names %v lack the public host", leaf.DNSNames)
		}
		if err := leaf.VerifyHostname("127.0.0.1"); err != nil {
			t.Errorf("certificate does not name the listen IP: %v (IPs %v)", err, leaf.IPAddresses)
		}
		if err := leaf.VerifyHostname("attest.example"); err != nil {
			t.Errorf("certificate does not name the public host: %v", err)
		}
		tr := &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}} // names were checked above
		defer tr.CloseIdleConnections()
		c := &http.Client{Transport: tr}
		var d oidc
		get(c, "https://"+srv.addr+"/.well-known/openid-configuration", &d)
		if d.Issuer != public || d.JWKSURI != public+"/certs" {
			t.Errorf("discovery %+v, want issuer %s", d, public)
		}
		// Tokens (here a policy result) say the same.
		var out struct{ Token string }
		get(c, "https://"+srv.addr+"/policies/SgxEnclave?api-version=2022-08-01", &out)
		tok, _, err := jwt.NewParser().ParseUnverified(out.Token, jwt.MapClaims{})
		if err != nil {
			t.Fatal(err)
		}
		if iss := tok.Claims.(jwt.MapClaims)["iss"]; iss != public || tok.Header["jku"] != public+"/certs" {
			t.Errorf("token iss %v jku %v, want %s", iss, tok.Header["jku"], public)
		}
	})

	t.Run("--public-url with a listener on every interface", func(t *testing.T) {
		srv := serveInProcess(t, clock, append([]string{"--addr", "0.0.0.0:0", "--public-url", "http://attest.example", "--insecure-admin"}, base...)...)
		_, port, _ := net.SplitHostPort(srv.addr)
		var d oidc
		get(http.DefaultClient, "http://127.0.0.1:"+port+"/.well-known/openid-configuration", &d)
		if d.Issuer != "http://attest.example" {
			t.Errorf("discovery %+v", d)
		}
	})
}

// Management needs the admin token from --admin-token-file; without it (or
// the loud --insecure-admin opt-in) management is closed.
func TestAttestServeAdminToken(t *testing.T) {
	dir := t.TempDir()
	simDir := filepath.Join(dir, "sim")
	now := time.Now().Truncate(time.Second)
	clock := func() time.Time { return now }
	if _, err := sim.Load(simDir, rand.Reader, now); err != nil {
		t.Fatal(err)
	}
	base := []string{"--addr", "127.0.0.1:0", "--tee", "sim-sgx", "--sim-dir", simDir, "--key-rotation", "0"}
	const token = "a-long-random-admin-token-1234567890"
	tokenFile := filepath.Join(dir, "admin-token")
	if err := os.WriteFile(tokenFile, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, []byte(" \n"), 0o600); err != nil {
		t.Fatal(err)
	}
	serveExpectUsage(t, "exclude each other", append([]string{"--admin-token-file", tokenFile, "--insecure-admin"}, base...)...)
	serveExpectUsage(t, "empty", append([]string{"--admin-token-file", empty}, base...)...)
	serveExpectUsage(t, "--admin-token-file", append([]string{"--admin-token-file", filepath.Join(dir, "missing")}, base...)...)

	put := func(addr, auth string) int {
		t.Helper()
		req, err := http.NewRequest("PUT", "http://"+addr+"/policies/SgxEnclave?api-version=2022-08-01",
			strings.NewReader(attest.UnsignedPolicy("version=1.0; authorizationrules { => permit(); };")))
		if err != nil {
			t.Fatal(err)
		}
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	srv := serveInProcess(t, clock, append([]string{"--admin-token-file", tokenFile}, base...)...)
	if c := put(srv.addr, ""); c != 401 {
		t.Errorf("no token: %d", c)
	}
	if c := put(srv.addr, "Bearer "+token); c != 200 {
		t.Errorf("the token: %d", c)
	}
	if strings.Contains(srv.log.String(), token) {
		t.Error("the admin token is in the log")
	}
	srv.stop()

	closed := serveInProcess(t, clock, base...)
	if c := put(closed.addr, "Bearer "+token); c != 401 {
		t.Errorf("no admin configured: %d", c)
	}
	closed.stop()

	open := serveInProcess(t, clock, append([]string{"--insecure-admin"}, base...)...)
	if c := put(open.addr, ""); c != 200 {
		t.Errorf("--insecure-admin: %d", c)
	}
	open.stop()
	if !strings.Contains(open.log.String(), `"level":"WARN"`) || !strings.Contains(open.log.String(), "insecure-admin") {
		t.Errorf("--insecure-admin was not logged as a warning:\n%s", open.log.String())
	}
}

// --public-url becomes every token's iss and a subjectAltName of the TLS
// certificate, so it must be a URL a client can reach and compare: a
// concrete IP or a DNS name, a port in 1..65535 when one is written, and
// the host in lower case (URL parsers such as WHATWG's, which Node's SDK
// uses, lower-case it, and iss is compared byte for byte).
func TestServicePublicURLHosts(t *testing.T) {
	for _, bad := range []string{
		"https://0.0.0.0:8443", "https://[::]:8443", // every interface: no client reaches that
		"https://attest.example:", "https://attest.example:0", "https://attest.example:99999",
		"https://*.example.com", "https://-bad-.example", "https://a..b", "https://1.2.3.4.5",
		"https://[fe80::1%25eth0]:8443", "https://under_score.example",
		"https://" + strings.Repeat("a", 64) + ".example",
	} {
		if u, err := servicePublicURL(bad, "127.0.0.1:0", true); err == nil {
			t.Errorf("%s accepted as %v", bad, u)
		} else if ue := (*usageError)(nil); !errors.As(err, &ue) {
			t.Errorf("%s: %v is not a usage error", bad, err)
		}
	}
	for in, want := range map[string]string{
		"https://Attest.Example.COM:8443/": "https://attest.example.com:8443",
		"https://[::1]:8443":               "https://[::1]:8443",
		"https://[2001:DB8::1]":            "https://[2001:db8::1]",
		"https://10.0.0.1:65535":           "https://10.0.0.1:65535",
		"https://attest-1.example":         "https://attest-1.example",
		"https://localhost:1":              "https://localhost:1",
	} {
		u, err := servicePublicURL(in, "127.0.0.1:0", true)
		if err != nil || u.String() != want {
			t.Errorf("%s: %v %v, want %s", in, u, err, want)
		}
	}
}

// Without --public-url, the listen host becomes the URL, so it must pass
// the same checks: an IPv6 zone or a name no URL parser accepts is a usage
// error that asks for --public-url.
func TestServicePublicURLFromAddr(t *testing.T) {
	for _, addr := range []string{"[fe80::1%lo]:0", "under_score:0", "*:0"} {
		if _, err := servicePublicURL("", addr, false); err == nil || !strings.Contains(err.Error(), "--public-url") {
			t.Errorf("--addr %s: %v", addr, err)
		}
	}
	for _, addr := range []string{"127.0.0.1:0", "localhost:8443", "[::1]:0", "attest.example:0"} {
		if u, err := servicePublicURL("", addr, false); err != nil || u != nil {
			t.Errorf("--addr %s: %v %v", addr, u, err)
		}
	}
}
