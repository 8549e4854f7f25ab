package attest

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/cloister-dev/cloister/evidence/pcs"
)

// publishedKeys reads /certs as a relying party would: kid → x5c chain,
// in the order listed.
func publishedKeys(t *testing.T, h http.Handler) (kids []string, chains map[string][]*x509.Certificate) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/certs", nil))
	var set struct {
		Keys []struct {
			Kid string   `json:"kid"`
			X5C []string `json:"x5c"`
		} `json:"keys"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &set); err != nil {
		t.Fatalf("/certs: %v", err)
	}
	chains = map[string][]*x509.Certificate{}
	for _, k := range set.Keys {
		c, err := ParseX5C(k.X5C)
		if err != nil {
			t.Fatal(err)
		}
		if len(c) != 2 {
			t.Fatalf("kid %s: x5c has %d certificates", k.Kid, len(c))
		}
		if err := c[1].CheckSignature(c[0].SignatureAlgorithm, c[0].RawTBSCertificate, c[0].Signature); err != nil {
			t.Fatalf("kid %s: signing certificate not signed by its RA-TLS key: %v", k.Kid, err)
		}
		kids = append(kids, k.Kid)
		chains[k.Kid] = c
	}
	return kids, chains
}

// validate checks tok with a stock JWT library against the published keys,
// picking the key by kid as a relying party does, at time now.
func validate(tok string, chains map[string][]*x509.Certificate, now time.Time) (string, error) {
	var kid string
	_, err := jwt.Parse(tok, func(tk *jwt.Token) (any, error) {
		kid, _ = tk.Header["kid"].(string)
		c, ok := chains[kid]
		if !ok {
			return nil, fmt.Errorf("kid %q is not published", kid)
		}
		return c[0].PublicKey, nil
	}, jwt.WithValidMethods([]string{"ES256"}), jwt.WithTimeFunc(func() time.Time { return now }))
	return kid, err
}

func attestToken(t *testing.T, h http.Handler, q []byte) string {
	t.Helper()
	code, out := do(t, h, "POST", "/attest/SgxEnclave"+av, attestBody(q, nil, ""))
	tok, _ := out["token"].(string)
	if code != 200 || tok == "" {
		t.Fatalf("attest: %d %v", code, out)
	}
	return tok
}

// TestRotateKey: after a rotation tokens carry the new kid, tokens signed
// before it still validate against /certs, and a key is dropped from /certs
// only once every token it signed has expired.
func TestRotateKey(t *testing.T) {
	f := getFixture(t)
	var clock atomic.Int64
	clock.Store(testNow.Unix())
	now := func() time.Time { return time.Unix(clock.Load(), 0) }
	s, err := New(Config{
		Platform: f.plat, Now: now, TrustRoots: []*x509.Certificate{f.pki.Root},
		Collateral: func(context.Context, []byte) (*pcs.Bundle, error) { return f.col, nil },
		Alg:        "ES256", Issuer: "https://attest.test",
	})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	q := quote(t, f, nil, false)

	tok1 := attestToken(t, s, q)
	kids, _ := publishedKeys(t, s)
	if len(kids) != 1 {
		t.Fatalf("before rotation /certs lists %d keys", len(kids))
	}
	kid1 := kids[0]

	if err := s.RotateKey(context.Background()); err != nil {
		t.Fatal(err)
	}
	tok2 := attestToken(t, s, q)
	kids, chains := publishedKeys(t, s)
	if len(kids) != 2 || kids[1] != kid1 || kids[0] == kid1 {
		t.Fatalf("after rotation /certs lists %v; want [new, %s]", kids, kid1)
	}
	kid2 := kids[0]
	for name, tok := range map[string]string{"before": tok1, "after": tok2} {
		if _, err := validate(tok, chains, now()); err != nil {
			t.Errorf("token from %s the rotation does not validate: %v", name, err)
		}
	}
	if got, _ := validate(tok2, chains, now()); got != kid2 {
		t.Errorf("new token signed by %s, want the new key %s", got, kid2)
	}
	if c, _ := s.Certificates(); !c[0].Equal(chains[kid2][0]) {
		t.Error("Certificates() is not the current key's chain")
	}
	if chains[kid1][1].Equal(chains[kid2][1]) {
		t.Error("the new key reuses the old RA-TLS certificate; it must carry fresh evidence binding the new key")
	}

	// Once tok1's lifetime has passed kid1 stays for keyGrace more (clock
	// skew at relying parties), and the first rotation after that drops it.
	clock.Add(int64((TokenLifetime + time.Minute) / time.Second))
	if _, err := validate(tok1, chains, now()); err == nil {
		t.Fatal("tok1 still valid after its lifetime")
	}
	if err := s.RotateKey(context.Background()); err != nil {
		t.Fatal(err)
	}
	if kids, _ = publishedKeys(t, s); len(kids) != 3 || kids[2] != kid1 {
		t.Fatalf("within the grace period /certs lists %v; want kid1 %s last", kids, kid1)
	}
	clock.Add(int64(keyGrace / time.Second))
	if err := s.RotateKey(context.Background()); err != nil {
		t.Fatal(err)
	}
	kids, _ = publishedKeys(t, s)
	if len(kids) != 3 || kids[2] != kid2 || slices.Contains(kids, kid1) {
		t.Fatalf("after the grace period /certs lists %v; want [new, newer, %s] without %s", kids, kid2, kid1)
	}
	rec := httptest.NewRecorder()
	s.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if !strings.Contains(rec.Body.String(), `cloister_attest_key_rotations_total{result="ok"} 3`) {
		t.Errorf("metrics do not count 3 rotations:\n%s", rec.Body)
	}
}

// TestRotateKeyBounded: rotating faster than keys expire stops at
// maxPublishedKeys with ErrTooManyKeys, and the service keeps signing with
// its current key.
func TestRotateKeyBounded(t *testing.T) {
	f := getFixture(t)
	s := newService(t, f, "")
	defer s.Close()
	for i := 1; i < maxPublishedKeys; i++ {
		if err := s.RotateKey(context.Background()); err != nil {
			t.Fatalf("rotation %d: %v", i, err)
		}
	}
	before, _ := publishedKeys(t, s)
	err := s.RotateKey(context.Background())
	if !errors.Is(err, ErrTooManyKeys) {
		t.Fatalf("rotation %d: %v, want ErrTooManyKeys", maxPublishedKeys, err)
	}
	after, chains := publishedKeys(t, s)
	if !slices.Equal(before, after) || len(after) != maxPublishedKeys {
		t.Fatalf("a refused rotation changed /certs: %d keys before, %d after", len(before), len(after))
	}
	if kid, err := validate(attestToken(t, s, quote(t, f, nil, false)), chains, testNow); err != nil || kid != after[0] {
		t.Fatalf("after a refused rotation: kid %s, %v; want the current key %s", kid, err, after[0])
	}
}

// TestRotateKeyUnderLoad rotates while requests are in flight (run with
// -race): every token issued validates against the final /certs.
func TestRotateKeyUnderLoad(t *testing.T) {
	f := getFixture(t)
	s := newService(t, f, "")
	defer s.Close()
	q := quote(t, f, nil, false)
	var mu sync.Mutex
	var toks []string
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				// Not attestToken: t.Fatal belongs to the test goroutine.
				code, out := do(t, s, "POST", "/attest/SgxEnclave"+av, attestBody(q, nil, ""))
				tok, _ := out["token"].(string)
				if code != 200 || tok == "" {
					t.Errorf("attest during rotation: %d %v", code, out)
					return
				}
				mu.Lock()
				toks = append(toks, tok)
				mu.Unlock()
			}
		})
	}
	for range 5 {
		if err := s.RotateKey(context.Background()); err != nil {
			t.Error(err)
		}
	}
	close(stop)
	wg.Wait()
	kids, chains := publishedKeys(t, s)
	if len(kids) != 6 {
		t.Errorf("/certs lists %d keys after 5 rotations within a token lifetime; want 6", len(kids))
	}
	for i, tok := range toks {
		if _, err := validate(tok, chains, testNow); err != nil {
			t.Fatalf("token %d of %d: %v", i, len(toks), err)
		}
	}
}

// TestKeyRotationInterval: Config.KeyRotation rotates on its own, and Close
// stops it (twice is fine).
func TestKeyRotationInterval(t *testing.T) {
	f := getFixture(t)
	s, err := New(Config{
		Platform: f.plat, Now: func() time.Time { return testNow }, TrustRoots: []*x509.Certificate{f.pki.Root},
		Alg: "ES256", Issuer: "https://attest.test", KeyRotation: 10 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		if kids, _ := publishedKeys(t, s); len(kids) >= 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no rotation within 20 s at a 10 ms interval")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}
