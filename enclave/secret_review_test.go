package enclave_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"log"
	"math/big"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/cloister-dev/cloister/enclave"
	"github.com/cloister-dev/cloister/host/wire"
	"github.com/cloister-dev/cloister/seal"
	"github.com/cloister-dev/cloister/tee"
)

// impostorKBS is a plain-HTTP server that speaks the KBS flow well enough
// to hand the enclave a secret of the host's choosing, encrypted to the
// tee-pubkey the enclave sent: what a hostile host runs behind a swapped
// broker URL.
func impostorKBS(t *testing.T, planted []byte) (*httptest.Server, *int) {
	t.Helper()
	var mu sync.Mutex
	var pub *ecdsa.PublicKey
	hits := new(int)
	mux := http.NewServeMux()
	mux.HandleFunc("/kbs/v0/auth", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		*hits++
		mu.Unlock()
		http.SetCookie(w, &http.Cookie{Name: "kbs-session-id", Value: "s1"})
		w.Write([]byte(`{"nonce":"bm9uY2U","extra-params":{}}`))
	})
	mux.HandleFunc("/kbs/v0/attest", func(w http.ResponseWriter, r *http.Request) {
		var body struct {
			RD struct {
				Key struct{ X, Y string } `json:"tee-pubkey"`
			} `json:"runtime-data"`
		}
		b, _ := io.ReadAll(r.Body)
		json.Unmarshal(b, &body)
		x, _ := base64.RawURLEncoding.DecodeString(body.RD.Key.X)
		y, _ := base64.RawURLEncoding.DecodeString(body.RD.Key.Y)
		mu.Lock()
		pub = &ecdsa.PublicKey{Curve: elliptic.P256(), X: new(big.Int).SetBytes(x), Y: new(big.Int).SetBytes(y)}
		mu.Unlock()
		w.Write([]byte(`{"token":"x"}`))
	})
	mux.HandleFunc("/kbs/v0/resource/", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		k := pub
		mu.Unlock()
		enc, err := jose.NewEncrypter(jose.A256GCM, jose.Recipient{Algorithm: jose.ECDH_ES_A256KW, Key: k}, nil)
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		obj, err := enc.Encrypt(planted)
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		w.Write([]byte(obj.FullSerialize()))
	})
	srv := httptest.NewUnstartedServer(mux)
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.Start()
	t.Cleanup(srv.Close)
	return srv, hits
}

// A hostile host hands the enclave an http:// broker URL: without TLS
// there is no RA-TLS handshake, so the pinned broker policy is never
// checked and an impostor could plant a secret of its choosing. SetBroker
// must refuse any URL that is not https, from the host or the app.
func TestSecretRefusesPlainHTTPBroker(t *testing.T) {
	s := newSecretScene(t)
	srv, hits := impostorKBS(t, []byte("the host's choice of key, 32 bytes"))
	t.Setenv(wire.EnvBrokerURL, srv.URL) // http://127.0.0.1:PORT
	cfg := s.brokerConfig(brokerApp.MRENCLAVE)
	cfg.URL = ""
	err := s.env.SetBroker(cfg)
	if !errors.Is(err, enclave.ErrBrokerURL) {
		got, serr := s.env.Secret(context.Background(), "app/key/db")
		t.Fatalf("an http:// broker from the host was accepted; Secret = %q, %v (impostor hits %d)", got, serr, *hits)
	}
	cfg.URL = srv.URL
	if err := s.env.SetBroker(cfg); !errors.Is(err, enclave.ErrBrokerURL) {
		t.Fatalf("an http:// broker URL from the app: %v, want enclave.ErrBrokerURL", err)
	}
	if *hits != 0 {
		t.Errorf("the impostor was asked %d times", *hits)
	}
}

// BrokerSealer follows the EGETKEY rule on every field: a higher SVN,
// another product or another signer is refused; a lower SVN is granted
// (so data sealed by an older version opens) and its key differs from
// the current SVN's; the same request always gives the same key.
func TestBrokerSealerKeyRequestRule(t *testing.T) {
	s := newSecretScene(t)
	root := bytes.Repeat([]byte{0x42}, 32)
	s.manage(t, "PUT", "/resource/app/key/storage", root)
	s.releaseTo(t, testApp.MRENCLAVE)
	if err := s.env.SetBroker(s.brokerConfig(brokerApp.MRENCLAVE)); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	sealer, err := s.env.BrokerSealer(ctx, "app/key/storage")
	if err != nil {
		t.Fatal(err)
	}
	id := s.env.Platform().Identity()
	if id.SVN == 0 {
		t.Fatal("the test app needs an SVN above 0 to ask for a lower one")
	}
	signer := func(sg []byte, prod, svn uint16) seal.KeyRequest {
		return seal.KeyRequest{Policy: seal.PolicySigner, Signer: sg, ProductID: prod, SVN: svn}
	}
	otherSigner := bytes.Clone(id.Signer)
	otherSigner[0] ^= 1
	for name, req := range map[string]seal.KeyRequest{
		"higher SVN":       signer(id.Signer, id.ProductID, id.SVN+1),
		"another product":  signer(id.Signer, id.ProductID+1, id.SVN),
		"another signer":   signer(otherSigner, id.ProductID, id.SVN),
		"no signer":        signer(nil, id.ProductID, id.SVN),
		"empty enclave":    {Policy: seal.PolicyEnclave},
		"unknown policy":   {Policy: seal.Policy(99), Measurement: id.Measurement},
		"measurement+flip": {Policy: seal.PolicyEnclave, Measurement: append(bytes.Clone(id.Measurement[:len(id.Measurement)-1]), id.Measurement[len(id.Measurement)-1]^1)},
	} {
		if k, err := sealer.Keys.SealKey(ctx, req); !errors.Is(err, tee.ErrKeyRequestDenied) || k != nil {
			t.Errorf("%s: %x, %v; want tee.ErrKeyRequestDenied", name, k, err)
		}
	}
	cur, err := sealer.Keys.SealKey(ctx, signer(id.Signer, id.ProductID, id.SVN))
	if err != nil {
		t.Fatal(err)
	}
	lower, err := sealer.Keys.SealKey(ctx, signer(id.Signer, id.ProductID, id.SVN-1))
	if err != nil {
		t.Fatalf("a lower SVN was refused: %v", err)
	}
	again, _ := sealer.Keys.SealKey(ctx, signer(id.Signer, id.ProductID, id.SVN))
	if bytes.Equal(cur, lower) || !bytes.Equal(cur, again) {
		t.Error("keys: the lower SVN's key equals the current one, or the same request gave two keys")
	}
}
