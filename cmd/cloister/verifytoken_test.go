package main

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/cloister-dev/cloister/attest"
	"github.com/cloister-dev/cloister/tee"
	"github.com/cloister-dev/cloister/tee/sim"
)

// `cloister verify token` validates a service's token offline against its
// saved JWKS: exit 0 with the claims, 1 with what failed, 2 for usage.
func TestVerifyToken(t *testing.T) {
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	dir := t.TempDir()
	pki, err := sim.Load(filepath.Join(dir, "sim"), rand.Reader, now.Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	plat, err := sim.NewPlatform(pki, tee.KindSimSGX, sim.App{MRENCLAVE: [32]byte{1}}, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	svc, err := attest.New(attest.Config{Platform: plat, Now: func() time.Time { return now }, Issuer: "https://attest.test", InsecureAdmin: true})
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Close()
	srv := httptest.NewServer(svc)
	defer srv.Close()
	get := func(path string) []byte {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return b
	}
	var out struct{ Token string }
	if err := json.Unmarshal(get("/policies/SgxEnclave?api-version=2022-08-01"), &out); err != nil || out.Token == "" {
		t.Fatalf("no token: %v", err)
	}
	token := out.Token
	jwksFile := filepath.Join(dir, "certs.json")
	if err := os.WriteFile(jwksFile, get("/certs"), 0o600); err != nil {
		t.Fatal(err)
	}
	tokenFile := filepath.Join(dir, "token.v1.jwt") // shaped like a JWT: still read as a file
	if err := os.WriteFile(tokenFile, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	parsed, _, _ := jwt.NewParser().ParseUnverified(token, jwt.MapClaims{})
	claims := parsed.Claims.(jwt.MapClaims)
	exp := time.Unix(int64(claims["exp"].(float64)), 0)

	parts := strings.Split(token, ".")
	sig, _ := base64.RawURLEncoding.DecodeString(parts[2])
	sig[len(sig)/2] ^= 1
	flipped := parts[0] + "." + parts[1] + "." + base64.RawURLEncoding.EncodeToString(sig)
	none := jwt.NewWithClaims(jwt.SigningMethodNone, claims)
	none.Header["kid"] = parsed.Header["kid"]
	noneTok, _ := none.SignedString(jwt.UnsafeAllowNoneSignatureType)
	certs, _ := svc.Certificates()
	hs := jwt.NewWithClaims(jwt.SigningMethodHS256, claims)
	hs.Header["kid"] = parsed.Header["kid"]
	hsTok, _ := hs.SignedString(certs[0].RawSubjectPublicKeyInfo)
	other := jwt.NewWithClaims(jwt.SigningMethodHS256, claims)
	other.Header["kid"] = "someone-elses-key"
	otherTok, _ := other.SignedString([]byte("k"))

	for _, tc := range []struct {
		name   string
		args   []string
		stdin  string
		code   int
		stdout string // must contain, on exit 0
		stderr string // must contain, on exit != 0
	}{
		{"valid, saved JWKS", []string{token, "--jwks", jwksFile}, "", 0, `"x-ms-policy"`, ""},
		{"valid, expected issuer", []string{token, "--jwks", jwksFile, "--issuer", "https://attest.test"}, "", 0, `"iss": "https://attest.test"`, ""},
		{"valid, JWKS by URL", []string{token, "--jwks", srv.URL + "/certs"}, "", 0, `"x-ms-policy"`, ""},
		{"valid, token from a file", []string{tokenFile, "--jwks", jwksFile}, "", 0, `"x-ms-policy"`, ""},
		{"valid, token on stdin", []string{"-", "--jwks", jwksFile}, token + "\n", 0, `"x-ms-policy"`, ""},
		{"valid at a given time", []string{token, "--jwks", jwksFile, "--at", exp.Add(-time.Minute).Format(time.RFC3339)}, "", 0, `"x-ms-policy"`, ""},
		{"wrong issuer", []string{token, "--jwks", jwksFile, "--issuer", "https://other.test"}, "", 1, "", "issuer"},
		{"expired", []string{token, "--jwks", jwksFile, "--at", exp.Add(time.Second).Format(time.RFC3339)}, "", 1, "", "expired"},
		{"byte flipped", []string{flipped, "--jwks", jwksFile}, "", 1, "", "signature is invalid"},
		{"alg none", []string{noneTok, "--jwks", jwksFile}, "", 1, "", "signing method none is invalid"},
		{"HS256 keyed with the public key", []string{hsTok, "--jwks", jwksFile}, "", 1, "", "signing method HS256 is invalid"},
		{"unknown kid", []string{otherTok, "--jwks", jwksFile}, "", 1, "", "signing method HS256 is invalid"},
		{"no TOKEN", []string{"--jwks", jwksFile}, "", 2, "", "missing TOKEN"},
		{"neither JWKS nor issuer", []string{token}, "", 2, "", "--jwks"},
		{"bad --at", []string{token, "--jwks", jwksFile, "--at", "tomorrow"}, "", 2, "", "--at"},
		{"TOKEN neither a JWT nor a file", []string{"not-a-token", "--jwks", jwksFile}, "", 2, "", "neither a JWT"},
		{"JWKS file missing", []string{token, "--jwks", filepath.Join(dir, "missing.json")}, "", 1, "", "reading the JWKS"},
		{"JWKS not a JWKS", []string{token, "--jwks", tokenFile}, "", 1, "", "malformed JWKS"},
	} {
		r := runCLIStdin(t, now, strings.NewReader(tc.stdin), append([]string{"verify", "token"}, tc.args...)...)
		if r.code != tc.code {
			t.Errorf("%s: exit %d, want %d\n%s", tc.name, r.code, tc.code, r)
			continue
		}
		if tc.code == 0 && !strings.Contains(r.stdout, tc.stdout) {
			t.Errorf("%s: stdout lacks %q:\n%s", tc.name, tc.stdout, r.stdout)
		}
		if tc.code != 0 && (!strings.Contains(r.stderr, tc.stderr) || r.stdout != "") {
			t.Errorf("%s: want %q on stderr and nothing on stdout:\n%s", tc.name, tc.stderr, r)
		}
	}

	// An unknown kid with an algorithm that is accepted says so.
	rsKeyTok := strings.Replace(token, parts[0], base64.RawURLEncoding.EncodeToString(mustJSONBytes(t, map[string]any{
		"alg": parsed.Header["alg"], "kid": "no-such-kid", "typ": "JWT"})), 1)
	if r := runCLIAt(t, now, "verify", "token", rsKeyTok, "--jwks", jwksFile); r.code != 1 || !strings.Contains(r.stderr, `kid "no-such-kid"`) {
		t.Errorf("unknown kid: %s", r)
	}
}

func mustJSONBytes(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Microsoft Azure Attestation's own token (attest/tokens/testdata) validates
// against MAA's /certs key: the command is not specific to Cloister tokens.
func TestVerifyTokenMAA(t *testing.T) {
	const dir = "../../attest/tokens/testdata/"
	tok, jwks := dir+"maa-sharedwus-2021-05-26.jwt", dir+"maa-sharedwus-2021-05-26.jwks.json"
	const iss = "https://sharedwus.wus.attest.azure.net"
	at := time.Date(2021, 5, 26, 23, 30, 0, 0, time.UTC)
	r := runCLIAt(t, at, "verify", "token", tok, "--jwks", jwks, "--issuer", iss)
	if r.code != 0 || !strings.Contains(r.stdout, `"x-ms-sgx-mrenclave": "b779202618becb636768e5d902f28d524222735fafb539ea9ba07c3fc171a1c2"`) {
		t.Errorf("MAA token: %s", r)
	}
	if r := runCLIAt(t, at, "verify", "token", tok, "--jwks", jwks, "--issuer", "https://sharedeus.eus.attest.azure.net"); r.code != 1 {
		t.Errorf("MAA token, another instance's issuer: %s", r)
	}
	if r := runCLIAt(t, time.Date(2021, 5, 28, 0, 0, 0, 0, time.UTC), "verify", "token", tok, "--jwks", jwks); r.code != 1 || !strings.Contains(r.stderr, "expired") {
		t.Errorf("MAA token after exp: %s", r)
	}
}

// A relative file name with two dots ("token.v1.jwt") is a file, not a JWT.
func TestVerifyTokenFileNamedLikeJWT(t *testing.T) {
	const dir = "../../attest/tokens/testdata/"
	jwks, err := filepath.Abs(dir + "maa-sharedwus-2021-05-26.jwks.json")
	if err != nil {
		t.Fatal(err)
	}
	tok, err := os.ReadFile(dir + "maa-sharedwus-2021-05-26.jwt")
	if err != nil {
		t.Fatal(err)
	}
	t.Chdir(t.TempDir())
	if err := os.WriteFile("token.v1.jwt", tok, 0o600); err != nil {
		t.Fatal(err)
	}
	if r := runCLIAt(t, time.Date(2021, 5, 26, 23, 30, 0, 0, time.UTC), "verify", "token", "token.v1.jwt", "--jwks", jwks); r.code != 0 {
		t.Errorf("token.v1.jwt: %s", r)
	}
}

// A token or JWKS file that never ends (a pipe, a device, a file growing
// under the reader) is refused once it passes the size limit, instead of
// being read into memory to the end. The pipe's writer keeps it open, so a
// reader that waits for end of file never returns.
func TestVerifyTokenEndlessFiles(t *testing.T) {
	dir := t.TempDir()
	endless := func(name string) string {
		p := filepath.Join(dir, name)
		if err := syscall.Mkfifo(p, 0o600); err != nil {
			t.Fatal(err)
		}
		stop := make(chan struct{})
		t.Cleanup(func() { close(stop) })
		go func() {
			f, err := os.OpenFile(p, os.O_WRONLY, 0)
			if err != nil {
				return
			}
			defer f.Close()
			chunk := []byte(strings.Repeat("A", 64<<10))
			for {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := f.Write(chunk); err != nil {
					return
				}
			}
		}()
		return p
	}
	const mdir = "../../attest/tokens/testdata/"
	at := time.Date(2021, 5, 26, 23, 30, 0, 0, time.UTC)
	if r := runCLIAt(t, at, "verify", "token", mdir+"maa-sharedwus-2021-05-26.jwt", "--jwks", endless("jwks")); r.code != 1 || !strings.Contains(r.stderr, "more than") {
		t.Errorf("endless JWKS: %s", r)
	}
	if r := runCLIAt(t, at, "verify", "token", endless("token"), "--jwks", mdir+"maa-sharedwus-2021-05-26.jwks.json"); r.code != 1 || !strings.Contains(r.stderr, "more than") {
		t.Errorf("endless token: %s", r)
	}
}
