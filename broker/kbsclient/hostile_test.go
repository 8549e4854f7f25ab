package kbsclient_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	jose "github.com/go-jose/go-jose/v4"

	. "github.com/cloister-dev/cloister/broker/kbsclient"
	"github.com/cloister-dev/cloister/tee"
	"github.com/cloister-dev/cloister/tee/sim"
)

// hostileBroker answers /auth and /attest like a broker and /resource
// with whatever answer makes of the tee-pubkey the client sent; it counts
// the attestations.
type hostileBroker struct {
	mu      sync.Mutex
	pub     *ecdsa.PublicKey
	attests int
	srv     *httptest.Server
}

func newHostileBroker(t *testing.T, answer func(w http.ResponseWriter, pub *ecdsa.PublicKey)) (*hostileBroker, *Client) {
	t.Helper()
	h := &hostileBroker{}
	mux := http.NewServeMux()
	mux.HandleFunc("/kbs/v0/auth", func(w http.ResponseWriter, r *http.Request) {
		http.SetCookie(w, &http.Cookie{Name: SessionCookie, Value: "s"})
		w.Write([]byte(`{"nonce":"bm9uY2U","extra-params":""}`))
	})
	mux.HandleFunc("/kbs/v0/attest", func(w http.ResponseWriter, r *http.Request) {
		var body struct {
			RD struct {
				Key JWK `json:"tee-pubkey"`
			} `json:"runtime-data"`
		}
		b, _ := io.ReadAll(r.Body)
		if err := json.Unmarshal(b, &body); err != nil {
			http.Error(w, "bad", 400)
			return
		}
		x, _ := base64.RawURLEncoding.DecodeString(body.RD.Key.X)
		y, _ := base64.RawURLEncoding.DecodeString(body.RD.Key.Y)
		h.mu.Lock()
		h.attests++
		h.pub = &ecdsa.PublicKey{Curve: elliptic.P256(), X: new(big.Int).SetBytes(x), Y: new(big.Int).SetBytes(y)}
		h.mu.Unlock()
		w.Write([]byte(`{"token":"t"}`))
	})
	mux.HandleFunc("/kbs/v0/resource/", func(w http.ResponseWriter, r *http.Request) {
		h.mu.Lock()
		pub := h.pub
		h.mu.Unlock()
		answer(w, pub)
	})
	h.srv = httptest.NewServer(mux)
	t.Cleanup(h.srv.Close)
	plat, err := sim.NewPlatform(testPKI(t), tee.KindSimSGX, appID, nil)
	if err != nil {
		t.Fatal(err)
	}
	c, err := New(Config{URL: h.srv.URL, HTTPClient: h.srv.Client(), Platform: plat})
	if err != nil {
		t.Fatal(err)
	}
	return h, c
}

// jweTo encrypts pt to key with alg and enc, in the JSON form.
func jweTo(t *testing.T, key any, alg jose.KeyAlgorithm, enc jose.ContentEncryption, pt []byte) []byte {
	t.Helper()
	e, err := jose.NewEncrypter(enc, jose.Recipient{Algorithm: alg, Key: key}, nil)
	if err != nil {
		t.Fatal(err)
	}
	obj, err := e.Encrypt(pt)
	if err != nil {
		t.Fatal(err)
	}
	return []byte(obj.FullSerialize())
}

// A broker (or whoever stands in for it) that answers with a JWE of
// another algorithm, another content encryption, an epk on another curve,
// a body over MaxResponse or an empty secret gets a named refusal, never
// bytes.
func TestHostileBrokerAnswers(t *testing.T) {
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	cases := []struct {
		name   string
		answer func(w http.ResponseWriter, pub *ecdsa.PublicKey)
		want   string
	}{
		{"RSA-OAEP-256", func(w http.ResponseWriter, _ *ecdsa.PublicKey) {
			w.Write(jweTo(t, &rsaKey.PublicKey, jose.RSA_OAEP_256, jose.A256GCM, []byte("planted")))
		}, "not a JWE this client accepts"},
		{"ECDH-ES direct", func(w http.ResponseWriter, pub *ecdsa.PublicKey) {
			w.Write(jweTo(t, pub, jose.ECDH_ES, jose.A256GCM, []byte("planted")))
		}, "not a JWE this client accepts"},
		{"A128GCM", func(w http.ResponseWriter, pub *ecdsa.PublicKey) {
			w.Write(jweTo(t, pub, jose.ECDH_ES_A256KW, jose.A128GCM, []byte("planted")))
		}, "not a JWE this client accepts"},
		{"A256CBC-HS512", func(w http.ResponseWriter, pub *ecdsa.PublicKey) {
			w.Write(jweTo(t, pub, jose.ECDH_ES_A256KW, jose.A256CBC_HS512, []byte("planted")))
		}, "not a JWE this client accepts"},
		{"epk on P-384", func(w http.ResponseWriter, _ *ecdsa.PublicKey) {
			w.Write(jweTo(t, &p384.PublicKey, jose.ECDH_ES_A256KW, jose.A256GCM, []byte("planted")))
		}, "does not decrypt with this session's key"},
		{"huge body", func(w http.ResponseWriter, _ *ecdsa.PublicKey) {
			w.Write([]byte(strings.Repeat("A", MaxResponse+1)))
		}, "larger than"},
		{"huge error body", func(w http.ResponseWriter, _ *ecdsa.PublicKey) {
			w.WriteHeader(500)
			w.Write([]byte(strings.Repeat("A", MaxResponse+1)))
		}, "larger than"},
		{"empty secret", func(w http.ResponseWriter, pub *ecdsa.PublicKey) {
			w.Write(jweTo(t, pub, jose.ECDH_ES_A256KW, jose.A256GCM, nil))
		}, "empty"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, c := newHostileBroker(t, tc.answer)
			got, err := c.Resource(context.Background(), "app/key/db")
			if err == nil || got != nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Resource = %q, %v; want a refusal containing %q", got, err, tc.want)
			}
		})
	}
	// The control: the same server with a well-formed answer releases.
	_, c := newHostileBroker(t, func(w http.ResponseWriter, pub *ecdsa.PublicKey) {
		w.Write(jweTo(t, pub, jose.ECDH_ES_A256KW, jose.A256GCM, []byte("fine")))
	})
	if got, err := c.Resource(context.Background(), "app/key/db"); err != nil || string(got) != "fine" {
		t.Fatalf("control: %q, %v", got, err)
	}
}

// A zero-length secret is refused with ErrEmptySecret by DecryptResponse
// itself: an app must never take "no bytes" for a key.
func TestDecryptResponseRefusesEmpty(t *testing.T) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	body := jweTo(t, &key.PublicKey, jose.ECDH_ES_A256KW, jose.A256GCM, []byte{})
	if got, err := DecryptResponse(body, key); !errors.Is(err, ErrEmptySecret) || got != nil {
		t.Fatalf("DecryptResponse(empty) = %q, %v; want ErrEmptySecret", got, err)
	}
}

// A broker that answers 401 to every resource request does not make the
// client attest in a loop: a stale session is attested again once, and a
// fresh session's 401 is the answer. The loop ends (liveness) with an
// *Error of status 401.
func TestUnauthorizedLoopEnds(t *testing.T) {
	h, c := newHostileBroker(t, func(w http.ResponseWriter, _ *ecdsa.PublicKey) {
		w.WriteHeader(http.StatusUnauthorized)
		w.Write([]byte(`{"type":"https://github.com/confidential-containers/kbs/errors/TokenNotFound","detail":"no"}`))
	})
	for i := 0; i < 3; i++ {
		_, err := c.Resource(context.Background(), "app/key/db")
		var e *Error
		if !errors.As(err, &e) || e.Status != http.StatusUnauthorized {
			t.Fatalf("call %d: %v, want a 401 *Error", i, err)
		}
	}
	h.mu.Lock()
	n := h.attests
	h.mu.Unlock()
	// First call: fresh session, one attestation. Each later call: the
	// kept session is stale, one more attestation, then the fresh 401 ends it.
	if n != 3 {
		t.Fatalf("%d attestations for 3 calls, want 3 (one each, never a loop)", n)
	}
}
