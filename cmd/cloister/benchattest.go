package main

import (
	"bufio"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	jsonv2 "github.com/go-json-experiment/json"
	"github.com/golang-jwt/jwt/v5"

	"github.com/cloister-dev/cloister/attest"
	"github.com/cloister-dev/cloister/attest/etcdstate"
	"github.com/cloister-dev/cloister/attest/tokens"
	"github.com/cloister-dev/cloister/evidence"
	"github.com/cloister-dev/cloister/evidence/dcap"
	"github.com/cloister-dev/cloister/evidence/pcs"
	"github.com/cloister-dev/cloister/internal/etcdembed"
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
	// Ceiling is the tokens/s a service with no cost but signing and
	// verifying would reach (each token needs both: 1/(1/sign + 1/verify)),
	// and CeilingRatio that ceiling over the slower limit: the best
	// Ratio any service could show with this signer and verifier.
	Ceiling      float64 `json:"ceiling_per_s"`
	CeilingRatio float64 `json:"ceiling_ratio_vs_slower_limit"`
	// CPU time per operation of each phase (the whole process: service,
	// load generator, GC), in µs; 0 where the system cannot say.
	CPUPerToken  float64 `json:"cpu_us_per_token"`
	CPUPerSign   float64 `json:"cpu_us_per_sign"`
	CPUPerVerify float64 `json:"cpu_us_per_verify"`
	// With --replicas N: N replicas sharing state through an embedded
	// etcd, driven in the same run after the single service above
	// (tokens_per_s), the same load spread round robin over them. Each
	// sampled token is validated against the /certs of another replica
	// than the one that signed it.
	Replicas              int     `json:"replicas,omitempty"`
	TokensPerS1Replica    float64 `json:"tokens_per_s_1replica,omitempty"`
	TokensPerSReplicas    float64 `json:"tokens_per_s_replicas,omitempty"`
	ReplicasP50ms         float64 `json:"replicas_p50_ms,omitempty"`
	ReplicasP99ms         float64 `json:"replicas_p99_ms,omitempty"`
	ReplicasErrors        int64   `json:"replicas_errors"`
	ReplicasCPUPerToken   float64 `json:"replicas_cpu_us_per_token,omitempty"`
	LoadAverage1m         float64 `json:"load_average_1m,omitempty"`
	ReplicasVsSingleRatio float64 `json:"replicas_vs_1replica,omitempty"`
}

// runBenchAttest measures the attestation service end to end over loopback
// HTTP, and in the same run the two limits a token is bounded by: signing a
// token alone and verifying a quote alone.
func runBenchAttest(e *env, args []string) error {
	fs := newFlagSet("bench attest", "[--concurrency N] [--requests N] [--alg RS256|ES256] [--json]",
		`Start the attestation service on 127.0.0.1 (sim-sgx platform, a temporary
simulator directory, the simulator root trusted, simulator collateral), make a
bounded set of sim-sgx quotes up front and POST them to /attest/SgxEnclave over
N keep-alive connections (a lean HTTP/1.1 load generator, so the cores go to
the service). Every answer must be 200 with a token; up to 5,000 tokens spread
over the run are then validated against /certs and checked to carry their
quote's report data (failures count as errors). Print tokens/s, p50/p99
latency, errors and CPU time per token, and in the
same run the signing-only limit (tokens/s of signing a token with the same
claims and algorithm, one worker per core) and the verification-only limit
(quotes/s of a warm evidence verifier over the same quotes, one worker per
core). Every token needs both, so no service can beat 1/(1/sign + 1/verify)
tokens/s; that ceiling is printed too. With --replicas N the same load is then
spread round robin over N replicas sharing state through an embedded etcd
(one member, loopback, temporary directory), each sampled token validated
against another replica's /certs: both figures come from the same run, with
the load average, as the machine may be shared. Only loopback is used. Targets (reported, not asserted): 0 errors,
tokens/s at least 60% of the slower limit, and with ES256 at least 5,000/s.
`)
	jsonOut := fs.Bool("json", false, "print the figures as one JSON object")
	conc := fs.Int("concurrency", 2*runtime.GOMAXPROCS(0), "concurrent HTTP clients")
	requests := fs.Int("requests", 5000, "attestation requests to send (also the operations of each limit)")
	alg := fs.String("alg", "ES256", "token signing algorithm: RS256 or ES256")
	nquotes := fs.Int("quotes", 64, "distinct sim-sgx quotes made up front and sent round-robin")
	replicas := fs.Int("replicas", 0, "also run `N` replicas sharing state through an embedded etcd (loopback, temporary directory) and spread the same load over them")
	if err := parseNoArgs(e, fs, args); err != nil {
		return err
	}
	switch {
	case *conc < 1 || *conc > 1024:
		return usagef("--concurrency %d: want 1..1024", *conc)
	case *requests < 1 || *requests > 1_000_000:
		return usagef("--requests %d: want 1..1000000", *requests)
	case *alg != "RS256" && *alg != "ES256":
		return usagef("--alg %q: want RS256 or ES256", *alg)
	case *nquotes < 1 || *nquotes > 10_000:
		return usagef("--quotes %d: want 1..10000", *nquotes)
	case *replicas < 0 || *replicas > 16:
		return usagef("--replicas %d: want 0..16", *replicas)
	}
	res, err := benchAttest(e, *alg, *conc, *requests, *nquotes, *replicas)
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
	fmt.Fprintf(w, "  ceiling/s         %10.0f  (sign + verify, no other cost: %.0f%% of the slower limit)\n", res.Ceiling, 100*res.CeilingRatio)
	fmt.Fprintf(w, "  vs ceiling        %9.0f%%\n", 100*res.TokensPerS/max(res.Ceiling, 1))
	if res.CPUPerToken > 0 {
		fmt.Fprintf(w, "  CPU µs per token %7.0f  (per sign %.0f, per verification %.0f)\n", res.CPUPerToken, res.CPUPerSign, res.CPUPerVerify)
	}
	if res.Replicas > 0 {
		fmt.Fprintf(w, "%d replicas on an embedded etcd, the same load round robin:\n", res.Replicas)
		fmt.Fprintf(w, "  tokens/s          %10.0f  (1 replica: %.0f, ratio %.2f)\n", res.TokensPerSReplicas, res.TokensPerS1Replica, res.ReplicasVsSingleRatio)
		fmt.Fprintf(w, "  p50 latency       %10.2f ms\n", res.ReplicasP50ms)
		fmt.Fprintf(w, "  p99 latency       %10.2f ms\n", res.ReplicasP99ms)
		fmt.Fprintf(w, "  errors            %10d\n", res.ReplicasErrors)
		fmt.Fprintf(w, "  all replicas share %d cores in this one process: the figure shows the cost of replication, not the gain of more machines\n", runtime.GOMAXPROCS(0))
	}
	if res.LoadAverage1m > 0 {
		fmt.Fprintf(w, "  load average (1 min) at the end: %.2f\n", res.LoadAverage1m)
	}
	return nil
}

func benchAttest(e *env, alg string, conc, requests, nquotes, replicas int) (*benchAttestResult, error) {
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
	// The service runs as `attest serve` runs it: the same HTTP server
	// settings and GC target.
	srv := attestHTTPServer(svc, slog.New(slog.DiscardHandler))
	defer tuneServiceGC()()
	go srv.Serve(ln)
	defer srv.Close()

	// The quotes, made up front: distinct report data, the service's
	// default SGX policy permits them.
	addr := ln.Addr().String()
	quotes := make([][]byte, nquotes)
	rdata := make([][]byte, nquotes)
	reqs := make([][]byte, nquotes) // each a whole HTTP/1.1 request
	for i := range quotes {
		var rd [64]byte
		if _, err := rand.Read(rd[:]); err != nil {
			return nil, err
		}
		q, err := pki.QuoteSGX(rand.Reader, sim.SGXReport{MRENCLAVE: [32]byte{1, 2}, MRSIGNER: [32]byte{3, 4}, ISVProdID: 7, ISVSVN: 3, ReportData: rd})
		if err != nil {
			return nil, err
		}
		quotes[i], rdata[i] = q, rd[:]
		body := fmt.Sprintf(`{"quote":%q}`, base64.RawURLEncoding.EncodeToString(q))
		reqs[i] = fmt.Appendf(nil, "POST /attest/SgxEnclave?api-version=2022-08-01 HTTP/1.1\r\nHost: %s\r\n"+
			"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", addr, len(body), body)
	}
	res := &benchAttestResult{Alg: alg, Concurrency: conc, Requests: requests}
	lr, sample, err := runLoad(ctx, e, []string{addr}, reqs, conc, requests)
	if err != nil {
		return nil, err
	}
	if n, err := checkTokens(ctx, []string{base}, lr.kept, lr.stride, rdata); err != nil {
		lr.errs += int64(n)
		fmt.Fprintf(e.stderr, "bench attest: %d tokens failed validation, first: %v\n", n, err)
	}
	res.Errors, res.TokensPerS, res.P50ms, res.P99ms, res.CPUPerToken = lr.errs, lr.tokensPerS, lr.p50, lr.p99, lr.cpu

	if replicas > 0 {
		if err := benchReplicas(ctx, e, res, dir, pki, plat, col, alg, reqs, rdata, conc, requests, replicas); err != nil {
			return nil, fmt.Errorf("replicas: %w", err)
		}
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
	res.SignOnly, res.CPUPerSign = parallelRate(ctx, requests, func(int) {
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
	res.VerifyOnly, res.CPUPerVerify = parallelRate(ctx, requests, func(i int) {
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
		res.Ceiling = 1 / (1/res.SignOnly + 1/res.VerifyOnly)
		res.CeilingRatio = res.Ceiling / slower
	}
	if res.TokensPerS == 0 {
		return res, errors.New("no request succeeded")
	}
	res.LoadAverage1m = loadAverage()
	return res, nil
}

// loadResult is one run of the load generator.
type loadResult struct {
	tokensPerS, p50, p99, cpu float64
	errs                      int64
	kept                      []keptToken // kept[j] answered request j*stride
	stride                    int64
}

// keptToken is a sampled token and the index of the address that signed it.
type keptToken struct {
	token  string
	target int
}

// runLoad sends requests prebuilt HTTP/1.1 requests (reqs round robin)
// over conc keep-alive connections, connection i to addrs[i%len(addrs)],
// and returns the rate, latencies and a sample of the tokens; sample is
// the warm-up token, whose claims the signing-only limit signs.
func runLoad(ctx context.Context, e *env, addrs []string, reqs [][]byte, conc, requests int) (*loadResult, string, error) {
	nquotes := len(reqs)
	conns := make([]*loadConn, conc)
	for i := range conns {
		var err error
		if conns[i], err = dialLoad(ctx, addrs[i%len(addrs)]); err != nil {
			return nil, "", err
		}
		defer conns[i].Close()
	}
	// Warm up (one request per connection) and keep one token.
	sample, err := conns[0].post(reqs[0])
	if err != nil {
		return nil, "", fmt.Errorf("first request: %w", err)
	}
	var wg sync.WaitGroup
	for i := 1; i < conc; i++ {
		wg.Go(func() { _, _ = conns[i].post(reqs[i%nquotes]) })
	}
	wg.Wait()

	// The load. Every response must be 200 with a token; a sample of at
	// most maxChecked tokens, spread over the run, is validated afterwards
	// (validating every token during the run would take CPU from the
	// service under test).
	stride := int64(max(1, (requests+maxChecked-1)/maxChecked))
	kept := make([]keptToken, (int64(requests)+stride-1)/stride)
	var next, sent, errs atomic.Int64
	var firstErr atomic.Value
	lat := make([][]time.Duration, conc)
	cpu0, _ := processCPU()
	start := time.Now()
	for w := 0; w < conc; w++ {
		wg.Go(func() {
			for !conns[w].broken {
				i := next.Add(1) - 1
				if i >= int64(requests) || ctx.Err() != nil {
					return
				}
				t0 := time.Now()
				sent.Add(1)
				tok, err := conns[w].post(reqs[i%int64(nquotes)])
				if err != nil {
					errs.Add(1)
					firstErr.CompareAndSwap(nil, err)
					continue
				}
				lat[w] = append(lat[w], time.Since(t0))
				if i%stride == 0 {
					kept[i/stride] = keptToken{token: tok, target: w % len(addrs)}
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	all := slices.Concat(lat...)
	cpuLoad := cpuSince(cpu0, len(all))
	if err := ctx.Err(); err != nil {
		return nil, "", err
	}
	if unsent := int64(requests) - sent.Load(); unsent > 0 {
		// Workers stop when their connection breaks; what they did not
		// send did not get a token either.
		errs.Add(unsent)
		firstErr.CompareAndSwap(nil, fmt.Errorf("%d requests not sent: every connection broke", unsent))
	}
	if err, _ := firstErr.Load().(error); err != nil {
		fmt.Fprintf(e.stderr, "bench attest: %d errors, first: %v\n", errs.Load(), err)
	}
	slices.Sort(all)
	return &loadResult{tokensPerS: float64(len(all)) / elapsed.Seconds(), p50: pct(all, 0.50), p99: pct(all, 0.99), cpu: cpuLoad,
		errs: errs.Load(), kept: kept, stride: stride}, sample, nil
}

// parallelRate runs op n times over GOMAXPROCS workers and returns ops/s
// and the process's CPU µs per op.
func parallelRate(ctx context.Context, n int, op func(i int)) (rate, cpuPerOp float64) {
	var next atomic.Int64
	var wg sync.WaitGroup
	cpu0, _ := processCPU()
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
	done := int(min(next.Load(), int64(n)))
	return float64(done) / time.Since(start).Seconds(), cpuSince(cpu0, done)
}

// cpuSince is the process CPU µs per op since cpu0 (0 if unknown).
func cpuSince(cpu0 time.Duration, ops int) float64 {
	cpu1, ok := processCPU()
	if !ok || ops <= 0 {
		return 0
	}
	return float64(cpu1-cpu0) / float64(time.Microsecond) / float64(ops)
}

// pct is the q-quantile of sorted durations, in milliseconds.
func pct(sorted []time.Duration, q float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := min(int(math.Ceil(q*float64(len(sorted))))-1, len(sorted)-1)
	return float64(sorted[max(i, 0)]) / float64(time.Millisecond)
}

// maxChecked bounds how many tokens of a run are validated after it.
const maxChecked = 5000

// checkTokens validates the kept tokens (kept[j] answered request j*stride;
// empty where that request failed or was not sent, already counted), each
// against the /certs of the service after the one that signed it
// (bases[(target+1) % len(bases)]: itself when there is one), and checks
// that each carries the report data of the quote its request sent
// (rdata[i] is quote i's). It returns how many failed and the first
// failure.
func checkTokens(ctx context.Context, bases []string, kept []keptToken, stride int64, rdata [][]byte) (int, error) {
	sets := make([]*tokens.KeySet, len(bases))
	for i, b := range bases {
		data, err := readJWKS(ctx, b+"/certs")
		if err == nil {
			sets[i], err = tokens.ParseJWKS(data)
		}
		if err != nil {
			return len(kept), err
		}
	}
	now := time.Now()
	var failed atomic.Int64
	var first atomic.Value
	var next atomic.Int64
	var wg sync.WaitGroup
	for range runtime.GOMAXPROCS(0) {
		wg.Go(func() {
			for {
				j := next.Add(1) - 1
				if j >= int64(len(kept)) {
					return
				}
				k := kept[j]
				if k.token == "" {
					continue
				}
				ks := sets[(k.target+1)%len(sets)]
				if err := checkToken(k.token, ks, now, rdata[(j*stride)%int64(len(rdata))]); err != nil {
					failed.Add(1)
					first.CompareAndSwap(nil, fmt.Errorf("request %d: %w", j*stride, err))
				}
			}
		})
	}
	wg.Wait()
	if err, _ := first.Load().(error); err != nil {
		return int(failed.Load()), err
	}
	return 0, nil
}

// checkToken validates one token and its binding to the report data sent.
func checkToken(tok string, ks *tokens.KeySet, now time.Time, want []byte) error {
	claims, err := tokens.Verify(tok, ks, tokens.Options{Time: now})
	if err != nil {
		return err
	}
	if got, _ := claims["x-ms-sgx-report-data"].(string); got != hex.EncodeToString(want) {
		return fmt.Errorf("x-ms-sgx-report-data %q is not the quote's %x", got, want)
	}
	return nil
}

// loadAverage is the 1-minute load average (0 where unknown): figures
// from a shared machine mean little without it.
func loadAverage() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0
	}
	f, _, _ := strings.Cut(string(b), " ")
	v, _ := strconv.ParseFloat(f, 64)
	return v
}

// benchReplicas starts an embedded one-member etcd and n replicas of the
// service on it (the same platform, so one identity), spreads the same
// load over them round robin and fills res's replica figures.
func benchReplicas(ctx context.Context, e *env, res *benchAttestResult, dir string, pki *sim.PKI, plat tee.Platform, col *pcs.Bundle,
	alg string, reqs [][]byte, rdata [][]byte, conc, requests, n int) error {
	sctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	cluster, err := etcdembed.Start(sctx, dir, 1)
	if err != nil {
		return err
	}
	defer cluster.Close()
	var addrs, bases []string
	for range n {
		st, err := etcdstate.Open(etcdstate.Options{Endpoints: cluster.Endpoints()})
		if err != nil {
			return err
		}
		defer st.Close()
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return err
		}
		svc, err := attest.New(attest.Config{
			Platform: plat, TrustRoots: []*x509.Certificate{pki.Root}, Alg: alg, Issuer: "http://attest.bench",
			Collateral: func(context.Context, []byte) (*pcs.Bundle, error) { return col, nil },
			Shared:     st, Logger: slog.New(slog.NewTextHandler(e.stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
		})
		if err != nil {
			ln.Close()
			return err
		}
		defer svc.Close()
		srv := attestHTTPServer(svc, slog.New(slog.DiscardHandler))
		go srv.Serve(ln)
		defer srv.Close()
		addrs = append(addrs, ln.Addr().String())
		bases = append(bases, "http://"+ln.Addr().String())
	}
	lr, _, err := runLoad(ctx, e, addrs, reqs, max(conc, n), requests)
	if err != nil {
		return err
	}
	if bad, err := checkTokens(ctx, bases, lr.kept, lr.stride, rdata); err != nil {
		lr.errs += int64(bad)
		fmt.Fprintf(e.stderr, "bench attest: replicas: %d tokens failed validation, first: %v\n", bad, err)
	}
	res.Replicas, res.TokensPerSReplicas, res.TokensPerS1Replica = n, lr.tokensPerS, res.TokensPerS
	res.ReplicasP50ms, res.ReplicasP99ms, res.ReplicasErrors, res.ReplicasCPUPerToken = lr.p50, lr.p99, lr.errs, lr.cpu
	if res.TokensPerS > 0 {
		res.ReplicasVsSingleRatio = lr.tokensPerS / res.TokensPerS
	}
	return nil
}

// loadConn is one keep-alive HTTP/1.1 connection of the load generator: it
// writes prebuilt requests and reads responses with http.ReadResponse. The
// net/http client's Transport costs ~75 µs of CPU a request here (goroutine
// handoffs per request), CPU the service under test, on the same cores,
// would not get; a lean generator, like wrk, measures the service instead.
type loadConn struct {
	c      net.Conn
	br     *bufio.Reader
	broken bool // a transport error: the connection cannot be reused
}

func dialLoad(ctx context.Context, addr string) (*loadConn, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	return &loadConn{c: c, br: bufio.NewReaderSize(c, 16<<10)}, nil
}

func (l *loadConn) Close() error { return l.c.Close() }

// post sends one prebuilt request and returns the token of a 200 answer.
func (l *loadConn) post(req []byte) (string, error) {
	resp, b, err := l.exchange(req)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("status %d: %s", resp.StatusCode, b)
	}
	var out struct{ Token string }
	if err := jsonv2.Unmarshal(b, &out, jsonv2.MatchCaseInsensitiveNames(true)); err != nil || out.Token == "" {
		return "", fmt.Errorf("no token in %s", b)
	}
	return out.Token, nil
}

// exchange sends one prebuilt request and returns the response (its body
// already read and closed) and the body, at most 1 MiB.
func (l *loadConn) exchange(req []byte) (*http.Response, []byte, error) {
	if l.broken {
		return nil, nil, errors.New("connection broken by an earlier error")
	}
	_ = l.c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := l.c.Write(req); err != nil {
		l.broken = true
		return nil, nil, err
	}
	resp, err := http.ReadResponse(l.br, nil)
	if err != nil {
		l.broken = true
		return nil, nil, err
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if cerr := resp.Body.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		l.broken = true
		return nil, nil, err
	}
	if resp.Close {
		// The server closes after this answer; the next write would fail.
		l.broken = true
	}
	return resp, b, nil
}
