package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cloister-dev/cloister/attest"
	"github.com/cloister-dev/cloister/broker/akv"
	"github.com/cloister-dev/cloister/host"
	"github.com/cloister-dev/cloister/tee"
	"github.com/cloister-dev/cloister/tee/sim"
)

// akvReleaseBench is the AKV part of `cloister bench broker --json`; the
// JSON names are issue 18's.
type akvReleaseBench struct {
	PerS     float64 `json:"akv_release_per_s"`
	P50MS    float64 `json:"akv_release_p50_ms"`
	P99MS    float64 `json:"akv_release_p99_ms"`
	Requests int     `json:"akv_release_requests"`
	// CPUPerOp is the process CPU µs per release (client and server share
	// the process).
	CPUPerOp float64 `json:"akv_release_cpu_us"`
}

// benchAKVRelease measures releaseKey through the vault's REST face, over
// TLS with keep-alive connections, GOMAXPROCS clients at once, requests
// in all. The setup is real: a simulator platform seals the vault's kv
// store (host memory), an in-process attestation service on the same
// simulator turns a sim-sgx quote whose runtime data holds a transfer key
// into the token, and every release verifies that token, evaluates a
// policy on its MRENCLAVE, wraps an RSA-2048 key (RSA_AES_KEY_WRAP_256)
// and signs the result. The first result is opened and checked to be the
// key before anything is timed.
func benchAKVRelease(ctx context.Context, now func() time.Time, requests int) (*akvReleaseBench, error) {
	dir, err := os.MkdirTemp("", "cloister-bench-akv-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	pki, err := sim.Load(filepath.Join(dir, "sim"), rand.Reader, now())
	if err != nil {
		return nil, err
	}
	plat, err := sim.NewPlatform(pki, tee.KindSimSGX, sim.App{MRENCLAVE: [32]byte{0xa7}, MRSIGNER: [32]byte{0x51}, ProductID: 1, SVN: 1}, nil)
	if err != nil {
		return nil, err
	}
	const issuer = "https://attest.bench.invalid"
	svc, err := attest.New(attest.Config{Platform: plat, Issuer: issuer, Now: now, TrustRoots: []*x509.Certificate{pki.Root}})
	if err != nil {
		return nil, err
	}
	defer svc.Close()
	rec := httptest.NewRecorder()
	svc.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/certs", nil))
	keys, err := akv.ParseJWKS(rec.Body.Bytes())
	if err != nil {
		return nil, err
	}

	// The enclave: its transfer key in its runtime data, bound by its quote.
	transfer, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	runtimeJSON, _ := json.Marshal(map[string]any{"keys": []any{map[string]any{"kid": "bench", "kty": "RSA", "key_ops": []string{"encrypt"},
		"n": base64.RawURLEncoding.EncodeToString(transfer.N.Bytes()), "e": base64.RawURLEncoding.EncodeToString(big.NewInt(int64(transfer.E)).Bytes())}}})
	var rd [64]byte
	sum := sha256.Sum256(runtimeJSON)
	copy(rd[:], sum[:])
	mre := [32]byte{0x42}
	quote, err := pki.QuoteSGX(rand.Reader, sim.SGXReport{MRENCLAVE: mre, ReportData: rd})
	if err != nil {
		return nil, err
	}
	rec = httptest.NewRecorder()
	svc.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/attest/SgxEnclave?api-version=2022-08-01", strings.NewReader(fmt.Sprintf(
		`{"quote":%q,"runtimeData":{"data":%q,"dataType":"JSON"}}`,
		base64.RawURLEncoding.EncodeToString(quote), base64.RawURLEncoding.EncodeToString(runtimeJSON)))))
	var att struct{ Token string }
	if err := json.Unmarshal(rec.Body.Bytes(), &att); err != nil || rec.Code != 200 {
		return nil, fmt.Errorf("bench akv: attestation: %d %s", rec.Code, rec.Body.Bytes())
	}

	store, err := sealedStoreOpener(host.NewMemStore(), tee.NewSealer(plat))(ctx, "akv")
	if err != nil {
		return nil, err
	}
	signer, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	srv := httptest.NewUnstartedServer(nil)
	srv.StartTLS()
	defer srv.Close()
	vault, err := akv.New(akv.Config{Store: store, VaultURL: srv.URL, AccessToken: "bench-token",
		Authorities: []akv.Authority{{Issuer: issuer, Keys: keys}}, Signer: signer, Now: now})
	if err != nil {
		return nil, err
	}
	srv.Config.Handler = vault
	policy := fmt.Sprintf(`{"version":"1.0.0","anyOf":[{"authority":%q,"allOf":[{"claim":"x-ms-sgx-mrenclave","equals":"%x"}]}]}`, issuer, mre)
	yes := true
	created, err := vault.CreateKey(ctx, "bench", akv.CreateKeyRequest{Kty: "RSA-HSM", Attributes: &akv.KeyAttributes{Exportable: &yes},
		ReleasePolicy: &akv.ReleasePolicy{Data: base64.RawURLEncoding.EncodeToString([]byte(policy))}})
	if err != nil {
		return nil, err
	}
	body, _ := json.Marshal(akv.ReleaseRequest{Target: att.Token, Enc: akv.EncRsaAesKeyWrap256})
	client := srv.Client()
	release := func() (string, error) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, srv.URL+"/keys/bench/release?api-version=2025-07-01", bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer bench-token")
		resp, err := client.Do(req)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil || resp.StatusCode != 200 {
			return "", fmt.Errorf("bench akv: release: %d %s %v", resp.StatusCode, b, err)
		}
		var out struct{ Value string }
		return out.Value, json.Unmarshal(b, &out)
	}
	first, err := release()
	if err != nil {
		return nil, err
	}
	opened, err := akv.OpenRelease(first, &signer.PublicKey, transfer)
	if err != nil {
		return nil, err
	}
	if opened.Kid != created.Key.Kid {
		return nil, errors.New("bench akv: the released key is not the created key")
	}
	lat := make([]time.Duration, requests)
	var failed atomic.Int64
	var firstErr error
	var once sync.Once
	rate, cpu := parallelRate(ctx, requests, func(i int) {
		t0 := time.Now()
		if _, err := release(); err != nil {
			failed.Add(1)
			once.Do(func() { firstErr = err })
		}
		lat[i] = time.Since(t0)
	})
	if n := failed.Load(); n > 0 {
		return nil, fmt.Errorf("bench akv: %d of %d releases failed, first: %w", n, requests, firstErr)
	}
	slices.Sort(lat)
	return &akvReleaseBench{PerS: rate, P50MS: pct(lat, 0.5), P99MS: pct(lat, 0.99), Requests: requests, CPUPerOp: cpu}, nil
}
