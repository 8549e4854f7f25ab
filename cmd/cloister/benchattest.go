package main

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/cloister-dev/cloister/attest"
	"github.com/cloister-dev/cloister/evidence"
	"github.com/cloister-dev/cloister/evidence/dcap"
	"github.com/cloister-dev/cloister/evidence/pcs"
	"github.com/cloister-dev/cloister/tee"
	"github.com/cloister-dev/cloister/tee/sim"
)

// benchAttestResult is the JSON of `cloister bench attest --json`. The keys
// are a contract (scripts read them): Do NOT rename.
type benchAttestResult struct {
	Alg         string  `json:"alg"`
	Concurrency int     `json:"concurrency"`
	Requests    int     `json:"requests"`
	TokensPerS  float64 `json:"tokens_per_s"`
	P50ms       float64 `json:"p50_ms"`
	P99ms       float64 `json:"p99_ms"`
	Errors      int64   `json:"errors"`
	SignOnly    float64 `json:"sign_only_per_s"`
	VerifyOnly  float64 `json:"verify_only_per_s"`
	Ratio       float64 `json:"ratio_vs_slower_limit"`
}

// runBenchAttest measures the attestation service end to end over loopback
// HTTP, and in the same run the two limits a token is bounded by: signing a
// token alone and verifying a quote alone.
func runBenchAttest(e *env, args []string) error {
	fs := newFlagSet("bench attest", "[--concurrency N] [--requests N] [--alg RS256|ES256] [--json]",
		`Start the attestation service on 127.0.0.1 (sim-sgx platform, a temporary
simulator directory, the simulator root trusted, simulator collateral), make a
bounded set of sim-sgx quotes up front and POST them to /attest/SgxEnclave with
N concurrent clients. Print tokens/s, p50/p99 latency and errors, and in the
same run the signing-only limit (tokens/s of signing a token with the same
claims and algorithm, one worker per core) and the verification-only limit
(quotes/s of a warm evidence verifier over the same quotes, one worker per
core). Only loopback is used. Targets (reported, not asserted): 0 errors,
tokens/s at least 60% of the slower limit, and with ES256 at least 5,000/s.
`)
	jsonOut := fs.Bool("json", false, "print the figures as one JSON object")
	conc := fs.Int("concurrency", 2*runtime.GOMAXPROCS(0), "concurrent HTTP clients")
	requests := fs.Int("requests", 5000, "attestation requests to send (also the operations of each limit)")
	alg := fs.String("alg", "ES256", "token signing algorithm: RS256 or ES256")
	nquotes := fs.Int("quotes", 64, "distinct sim-sgx quotes made up front and sent round-robin")
	pos, err := parseArgs(e, fs, args)
	if err != nil {
		return err
	}
	switch {
	case len(pos) > 0:
		return usagef("unexpected argument %q", pos[0])
	case *conc < 1 || *conc > 1024:
		return usagef("--concurrency %d: want 1..1024", *conc)
	case *requests < 1 || *requests > 1_000_000:
		return usagef("--requests %d: want 1..1000000", *requests)
	case *alg != "RS256" && *alg != "ES256":
		return usagef("--alg %q: want RS256 or ES256", *alg)
	case *nquotes < 1 || *nquotes > 10_000:
		return usagef("--quotes %d: want 1..10000", *nquotes)
	}
	res, err := benchAttest(e, *alg, *conc, *requests, *nquotes)
	if err != nil {
		return fmt.Errorf("bench attest: %w", err)
	}
	if *jsonOut {
		return printJSON(e.stdout, res)
	}
	w := e.stdout
	fmt.Fprintf(w, "attest %s, %d clients, %d requests, %d cores\n", res.Alg, res.Concurrency, res.Requests, runtime.GOMAXPROCS(0))
	fmt.Fprintf(w, "  tokens/s          %10.0f\n", res.TokensPerS)
	fmt.Fprintf(w, "  p50 latency       %10.2f ms\n", res.P50ms)
	fmt.Fprintf(w, "  p99 latency       %10.2f ms\n", res.P99ms)
	fmt.Fprintf(w, "  errors            %10d\n", res.Errors)
	fmt.Fprintf(w, "  sign-only/s       %10.0f\n", res.SignOnly)
	fmt.Fprintf(w, "  verify-only/s     %10.0f\n", res.VerifyOnly)
	fmt.Fprintf(w, "  vs slower limit   %9.0f%%\n", 100*res.Ratio)
	return nil
}

func benchAttest(e *env, alg string, conc, requests, nquotes int) (*benchAttestResult, error) {
	ctx := e.ctx
	dir, err := os.MkdirTemp("", "cloister-bench-attest-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	now := time.Now()
	pki, err := sim.Load(dir, rand.Reader, now.Add(-time.Hour))
	if err != nil {
		return nil, err
	}
	col, err := pki.Collateral(rand.Reader, now, false)
	if err != nil {
		return nil, fmt.Errorf("simulator collateral: %w", err)
	}
	plat, err := sim.NewPlatform(pki, tee.KindSimSGX, sim.App{MRENCLAVE: [32]byte{0xaa}, MRSIGNER: [32]byte{0xbb}, ProductID: 1, SVN: 1}, rand.Reader)
	if err != nil {
		return nil, err
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	base := "http://" + ln.Addr().String()
	svc, err := attest.New(attest.Config{
		Platform: plat, TrustRoots: []*x509.Certificate{pki.Root}, Alg: alg, Issuer: base,
		Collateral: func(context.Context, []byte) (*pcs.Bundle, error) { return col, nil },
	})
	if err != nil {
		ln.Close()
		return nil, err
	}
	defer svc.Close()
	srv := &http.Server{Handler: svc, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	defer srv.Close()

	// The quotes, made up front: distinct report data, the service's
	// default SGX policy permits them.
	quotes := make([][]byte, nquotes)
	bodies := make([]string, nquotes)
	for i := range quotes {
		var rd [64]byte
		if _, err := rand.Read(rd[:]); err != nil {
			return nil, err
		}
		q, err := pki.QuoteSGX(rand.Reader, sim.SGXReport{MRENCLAVE: [32]byte{1, 2}, MRSIGNER: [32]byte{3, 4}, ISVProdID: 7, ISVSVN: 3, ReportData: rd})
		if err != nil {
			return nil, err
		}
		quotes[i] = q
		bodies[i] = fmt.Sprintf(`{"quote":%q}`, base64.RawURLEncoding.EncodeToString(q))
	}

	client := &http.Client{
		Timeout:   30 * time.Second,
		Transport: &http.Transport{MaxIdleConns: conc, MaxIdleConnsPerHost: conc, DisableCompression: true},
	}
	defer client.CloseIdleConnections()
	url := base + "/attest/SgxEnclave?api-version=2022-08-01"
	post := func(body string) (string, error) {
		resp, err := client.Post(url, "application/json", strings.NewReader(body))
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			return "", err
		}
		if resp.StatusCode != http.StatusOK {
			return "", fmt.Errorf("status %d: %s", resp.StatusCode, b)
		}
		var out struct{ Token string }
		if err := json.Unmarshal(b, &out); err != nil || out.Token == "" {
			return "", fmt.Errorf("no token in %s", b)
		}
		return out.Token, nil
	}
	// Warm up (one request per client, so connections exist) and keep one
	// token: its claims are what the signing-only limit signs.
	sample, err := post(bodies[0])
	if err != nil {
		return nil, fmt.Errorf("first request: %w", err)
	}
	var wg sync.WaitGroup
	for i := 0; i < conc; i++ {
		wg.Go(func() { _, _ = post(bodies[i%nquotes]) })
	}
	wg.Wait()

	// The load.
	var next, errs atomic.Int64
	var firstErr atomic.Value
	lat := make([][]time.Duration, conc)
	start := time.Now()
	for w := 0; w < conc; w++ {
		wg.Go(func() {
			for {
				i := next.Add(1) - 1
				if i >= int64(requests) || ctx.Err() != nil {
					return
				}
				t0 := time.Now()
				if _, err := post(bodies[i%int64(nquotes)]); err != nil {
					errs.Add(1)
					firstErr.CompareAndSwap(nil, err)
					continue
				}
				lat[w] = append(lat[w], time.Since(t0))
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err, _ := firstErr.Load().(error); err != nil {
		fmt.Fprintf(e.stderr, "bench attest: %d errors, first: %v\n", errs.Load(), err)
	}
	all := slices.Concat(lat...)
	slices.Sort(all)
	res := &benchAttestResult{
		Alg: alg, Concurrency: conc, Requests: requests, Errors: errs.Load(),
		TokensPerS: float64(len(all)) / elapsed.Seconds(),
		P50ms:      pct(all, 0.50), P99ms: pct(all, 0.99),
	}

	// Signing-only limit: the same claims, the same algorithm and header,
	// one worker per core.
	claims := jwt.MapClaims{}
	if _, _, err := jwt.NewParser().ParseUnverified(sample, claims); err != nil {
		return nil, fmt.Errorf("sample token: %w", err)
	}
	var key crypto.Signer
	method := jwt.SigningMethod(jwt.SigningMethodES256)
	if alg == "RS256" {
		method = jwt.SigningMethodRS256
		key, err = rsa.GenerateKey(rand.Reader, 2048)
	} else {
		key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	}
	if err != nil {
		return nil, err
	}
	var signErr atomic.Value
	res.SignOnly = parallelRate(ctx, requests, func(int) {
		t := jwt.NewWithClaims(method, claims)
		t.Header["jku"] = base + "/certs"
		t.Header["kid"] = "bench"
		if _, err := t.SignedString(key); err != nil {
			signErr.CompareAndSwap(nil, err)
		}
	})
	if err, _ := signErr.Load().(error); err != nil {
		return nil, fmt.Errorf("signing-only: %w", err)
	}

	// Verification-only limit: a warm verifier over the same quotes with
	// the same trust roots and collateral as the service.
	v := evidence.NewVerifier()
	opts := evidence.Options{Time: time.Now(), Collateral: col, TrustRoots: []*x509.Certificate{dcap.IntelRoot(), pki.Root}}
	for _, q := range quotes {
		if _, err := v.Verify(ctx, q, opts); err != nil {
			return nil, fmt.Errorf("verification-only warm-up: %w", err)
		}
	}
	var verErr atomic.Value
	res.VerifyOnly = parallelRate(ctx, requests, func(i int) {
		if _, err := v.Verify(ctx, quotes[i%nquotes], opts); err != nil {
			verErr.CompareAndSwap(nil, err)
		}
	})
	if err, _ := verErr.Load().(error); err != nil {
		return nil, fmt.Errorf("verification-only: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if slower := math.Min(res.SignOnly, res.VerifyOnly); slower > 0 {
		res.Ratio = res.TokensPerS / slower
	}
	if res.TokensPerS == 0 {
		return res, errors.New("no request succeeded")
	}
	return res, nil
}

// parallelRate runs op n times over GOMAXPROCS workers and returns ops/s.
func parallelRate(ctx context.Context, n int, op func(i int)) float64 {
	var next atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for range runtime.GOMAXPROCS(0) {
		wg.Go(func() {
			for {
				i := next.Add(1) - 1
				if i >= int64(n) || ctx.Err() != nil {
					return
				}
				op(int(i))
			}
		})
	}
	wg.Wait()
	return float64(min(next.Load(), int64(n))) / time.Since(start).Seconds()
}

// pct is the q-quantile of sorted durations, in milliseconds.
func pct(sorted []time.Duration, q float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := min(int(math.Ceil(q*float64(len(sorted))))-1, len(sorted)-1)
	return float64(sorted[max(i, 0)]) / float64(time.Millisecond)
}
