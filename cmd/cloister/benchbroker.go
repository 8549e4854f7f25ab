package main

import (
	"context"
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/golang-jwt/jwt/v5"

	"github.com/cloister-dev/cloister/attest"
	"github.com/cloister-dev/cloister/broker/kbs"
	"github.com/cloister-dev/cloister/evidence/pcs"
	"github.com/cloister-dev/cloister/tee"
	"github.com/cloister-dev/cloister/tee/sim"
)

// benchBrokerResult is the JSON of `cloister bench broker --json`. The keys
// are a contract (scripts read them): Do NOT rename.
type benchBrokerResult struct {
	Concurrency int `json:"concurrency"`
	Flows       int `json:"flows"`
	Requests    int `json:"requests"`
	// KBS flow: auth + attest + resource (and the guest's quote, made in
	// the client as a guest must, for the fresh nonce).
	FlowPerS  float64 `json:"kbs_flow_per_s"`
	FlowP50ms float64 `json:"kbs_flow_p50_ms"`
	FlowP99ms float64 `json:"kbs_flow_p99_ms"`
	// Resource requests within attested sessions.
	ResourcePerS  float64 `json:"kbs_resource_per_s"`
	ResourceP50ms float64 `json:"kbs_resource_p50_ms"`
	ResourceP99ms float64 `json:"kbs_resource_p99_ms"`
	// The attestation service's tokens/s on sim-sgx quotes of the same
	// app, same collateral and roots, in the same run.
	AttestPerS  float64 `json:"attest_per_s"`
	AttestP50ms float64 `json:"attest_p50_ms"`
	AttestP99ms float64 `json:"attest_p99_ms"`
	// FlowCostVsAttest is attest_per_s / kbs_flow_per_s: what one full
	// KBS flow costs in attestations (target ≤ 1.5), the guest's side
	// included.
	FlowCostVsAttest float64 `json:"kbs_flow_cost_vs_attest"`
	// GuestQuotePerS is how fast this machine makes the guest's sim-sgx
	// quote alone (every core): each flow includes one, which a real
	// guest makes in its TEE, while the attestation service's figure
	// sends quotes made up front.
	GuestQuotePerS float64 `json:"guest_quote_per_s"`
	// FlowCostWithoutQuote is FlowCostVsAttest with the quote's share of
	// the cores taken out: attest_per_s × (1/kbs_flow_per_s −
	// 1/guest_quote_per_s). An estimate (it assumes the cores were busy
	// throughout), reported beside the raw figure, not instead of it.
	FlowCostWithoutQuote float64 `json:"kbs_flow_cost_vs_attest_without_guest_quote"`
	// CPU time per operation of each measurement (the whole process:
	// broker or service, load generator, the guest's quote, GC), in µs;
	// 0 where the system cannot say. On a shared machine their ratio is
	// steadier than the ratio of rates: FlowCPUCostVsAttest is
	// cpu_us_per_flow / cpu_us_per_attest.
	CPUPerFlow          float64 `json:"cpu_us_per_flow"`
	CPUPerResource      float64 `json:"cpu_us_per_resource"`
	CPUPerAttest        float64 `json:"cpu_us_per_attest"`
	CPUPerQuote         float64 `json:"cpu_us_per_guest_quote"`
	FlowCPUCostVsAttest float64 `json:"kbs_flow_cpu_cost_vs_attest"`
	// AKV release (Azure Key Vault releaseKey) is measured by the AKV
	// extension's bench, when one is compiled in (brokerBenchExtras).
	AKVReleasePerS  float64 `json:"akv_release_per_s,omitempty"`
	AKVReleaseP50ms float64 `json:"akv_release_p50_ms,omitempty"`
	AKVReleaseP99ms float64 `json:"akv_release_p99_ms,omitempty"`
	Errors          int64   `json:"errors"`
	// LoadAvg1m is /proc/loadavg's 1-minute figure at the start and end of
	// the run: on a shared machine, what else was running.
	LoadAvgStart float64 `json:"load_avg_1m_start"`
	LoadAvgEnd   float64 `json:"load_avg_1m_end"`
	Cores        int     `json:"cores"`
}

// brokerBench is the running broker of `bench broker`, for the
// measurements extensions add (brokerBenchExtras).
type brokerBench struct {
	ctx         context.Context
	addr        string // host:port of the broker, plain HTTP
	conc        int
	requests    int
	pki         *sim.PKI
	guest       *sim.Platform
	roots       []*x509.Certificate
	collateral  func(context.Context, []byte) (*pcs.Bundle, error)
	adminKey    ed25519.PrivateKey
	brokerState *brokerCommon
}

// brokerBenchExtras measure extension surfaces in the same run (the AKV
// extension sets akv_release_per_s and its percentiles); each appends
// itself from its own file's init.
var brokerBenchExtras []func(b *brokerBench, res *benchBrokerResult) error

const benchBrokerHelp = `Start the key broker on 127.0.0.1 as 'broker serve' runs it (sim-sgx
platform, the simulator root trusted, simulator collateral, a sealed bbolt
store in a temporary directory), set a policy releasing a 32-byte resource to
the bench's sim-sgx app, and measure over N keep-alive connections:
  kbs_flow_per_s      whole KBS flows: POST /kbs/v0/auth, make the quote
                      binding the runtime data (a fresh P-256 key), POST
                      /kbs/v0/attest, GET the resource;
  kbs_resource_per_s  resource GETs within attested sessions (cookie);
  attest_per_s        the attestation service's /attest/SgxEnclave on quotes
                      of the same app, collateral and roots (as 'bench attest');
  guest_quote_per_s   making the guest's sim quote alone, on every core: a
                      flow includes one (the guest's cost, on the same cores
                      here), the attestation service's quotes are made up
                      front; kbs_flow_cost_vs_attest_without_guest_quote
                      estimates the flow's cost with that share taken out.
Each with p50/p99 latency. A sample of responses (up to 1,000 of each kind)
is decrypted with go-jose afterwards; failures count as errors. The load
average is printed with the figures: the machine may be shared. Targets
(reported, not asserted): kbs_flow_cost_vs_attest at most 1.5,
kbs_resource_per_s at least 10,000.
`

// runBenchBroker implements "cloister bench broker".
func runBenchBroker(e *env, args []string) error {
	fs := newFlagSet("bench broker", "[--concurrency N] [--flows N] [--requests N] [--json]", benchBrokerHelp)
	jsonOut := fs.Bool("json", false, "print the figures as one JSON object")
	conc := fs.Int("concurrency", 2*runtime.GOMAXPROCS(0), "concurrent connections")
	flows := fs.Int("flows", 2000, "whole KBS flows (and attestations of the attestation service)")
	requests := fs.Int("requests", 20000, "resource requests within attested sessions")
	if err := parseNoArgs(e, fs, args); err != nil {
		return err
	}
	switch {
	case *conc < 1 || *conc > 1024:
		return usagef("--concurrency %d: want 1..1024", *conc)
	case *flows < 1 || *flows > 1_000_000:
		return usagef("--flows %d: want 1..1000000", *flows)
	case *requests < 1 || *requests > 10_000_000:
		return usagef("--requests %d: want 1..10000000", *requests)
	}
	res, err := benchBroker(e, *conc, *flows, *requests)
	if err != nil {
		return fmt.Errorf("bench broker: %w", err)
	}
	if *jsonOut {
		return printJSON(e.stdout, res)
	}
	w := e.stdout
	fmt.Fprintf(w, "broker, %d connections, %d cores, load average %.2f → %.2f\n", res.Concurrency, res.Cores, res.LoadAvgStart, res.LoadAvgEnd)
	fmt.Fprintf(w, "  %-22s %10s %10s %10s\n", "", "per s", "p50 ms", "p99 ms")
	for _, r := range []struct {
		name           string
		rate, p50, p99 float64
	}{
		{"kbs flow", res.FlowPerS, res.FlowP50ms, res.FlowP99ms},
		{"kbs resource", res.ResourcePerS, res.ResourceP50ms, res.ResourceP99ms},
		{"attest (service)", res.AttestPerS, res.AttestP50ms, res.AttestP99ms},
		{"akv release", res.AKVReleasePerS, res.AKVReleaseP50ms, res.AKVReleaseP99ms},
	} {
		if r.rate > 0 {
			fmt.Fprintf(w, "  %-22s %10.0f %10.2f %10.2f\n", r.name, r.rate, r.p50, r.p99)
		}
	}
	fmt.Fprintf(w, "  one flow costs %.2f attestations (target ≤ 1.5), %.2f without the guest's quote (%.0f quotes/s); errors %d\n",
		res.FlowCostVsAttest, res.FlowCostWithoutQuote, res.GuestQuotePerS, res.Errors)
	if res.CPUPerAttest > 0 {
		fmt.Fprintf(w, "  CPU µs per flow %.0f, per resource %.0f, per attestation %.0f, per guest quote %.0f: a flow costs %.2f attestations in CPU\n",
			res.CPUPerFlow, res.CPUPerResource, res.CPUPerAttest, res.CPUPerQuote, res.FlowCPUCostVsAttest)
	}
	return nil
}

// loadAvg1 reads the 1-minute load average (0 where there is none).
func loadAvg1() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0
	}
	f, _ := strconv.ParseFloat(strings.Fields(string(b) + " 0")[0], 64)
	return f
}

const benchResource = "bench/key/secret"

func benchBroker(e *env, conc, flows, requests int) (*benchBrokerResult, error) {
	ctx := e.ctx
	res := &benchBrokerResult{Concurrency: conc, Flows: flows, Requests: requests, Cores: runtime.GOMAXPROCS(0), LoadAvgStart: loadAvg1()}
	dir, err := os.MkdirTemp("", "cloister-bench-broker-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	now := time.Now()
	pki, err := sim.Load(filepath.Join(dir, "sim"), rand.Reader, now.Add(-time.Hour))
	if err != nil {
		return nil, err
	}
	var bundles []*pcs.Bundle
	for _, tdx := range []bool{false, true} {
		b, err := pki.Collateral(rand.Reader, now, tdx)
		if err != nil {
			return nil, fmt.Errorf("simulator collateral: %w", err)
		}
		bundles = append(bundles, b)
	}
	collateral := collateralSource(bundles, nil)
	brokerPlat, err := sim.NewPlatform(pki, tee.KindSimSGX, sim.App{MRENCLAVE: [32]byte{0xb0}, MRSIGNER: [32]byte{0xb1}, ProductID: 1, SVN: 1}, rand.Reader)
	if err != nil {
		return nil, err
	}
	guest, err := sim.NewPlatform(pki, tee.KindSimSGX, sim.App{MRENCLAVE: [32]byte{0xaa}, MRSIGNER: [32]byte{0xbb}, ProductID: 1, SVN: 1}, rand.Reader)
	if err != nil {
		return nil, err
	}
	hs, err := openBrokerHostStore(filepath.Join(dir, "state"), slog.New(slog.DiscardHandler))
	if err != nil {
		return nil, err
	}
	defer hs.Close()
	adminPub, adminKey, _ := ed25519.GenerateKey(rand.Reader)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	addr := ln.Addr().String()
	bctx, cancel := context.WithCancel(ctx)
	defer cancel()
	c := &brokerCommon{ctx: bctx, now: time.Now, rand: rand.Reader, log: slog.New(slog.DiscardHandler),
		publicURL: mustURL("http://" + addr), platform: brokerPlat, kind: tee.KindSimSGX,
		trustRoots: []*x509.Certificate{pki.Root}, collateral: collateral, adminKeys: []ed25519.PublicKey{adminPub},
		openStore: sealedStoreOpener(hs, tee.NewSealer(brokerPlat))}
	mux, err := brokerMux(c)
	if err != nil {
		ln.Close()
		return nil, err
	}
	srv := attestHTTPServer(mux, c.log) // broker serve's server settings
	defer tuneServiceGC()()
	go srv.Serve(ln)
	defer srv.Close()

	b := &brokerBench{ctx: ctx, addr: addr, conc: conc, requests: requests, pki: pki, guest: guest,
		roots: c.trustRoots, collateral: collateral, adminKey: adminKey, brokerState: c}
	secret := make([]byte, 32)
	rand.Read(secret)
	policy := `package cloister
allow if {
	input.claims.tee == "sim-sgx"
	input.claims.mrenclave == "aa00000000000000000000000000000000000000000000000000000000000000"
}`
	if err := b.admin("PUT", "/kbs/v0/resource/"+benchResource, secret); err != nil {
		return nil, err
	}
	pb, _ := json.Marshal(map[string]string{"policy": base64.StdEncoding.EncodeToString([]byte(policy))})
	if err := b.admin("PUT", "/kbs/v0/resource-policy", pb); err != nil {
		return nil, err
	}

	var errs atomic.Int64
	check := newJWESample(secret)
	// The KBS flow.
	flowLat, err := b.run(conc, flows, func(lc *loadConn, fs *flowState) error {
		return fs.flow(b, lc, check)
	})
	if err != nil {
		return nil, err
	}
	res.FlowPerS, res.FlowP50ms, res.FlowP99ms, res.CPUPerFlow = flowLat.rate, flowLat.p50, flowLat.p99, flowLat.cpu
	errs.Add(flowLat.errors)

	// Resource requests within sessions: each connection attests once.
	resLat, err := b.runSessions(conc, requests, check)
	if err != nil {
		return nil, err
	}
	res.ResourcePerS, res.ResourceP50ms, res.ResourceP99ms, res.CPUPerResource = resLat.rate, resLat.p50, resLat.p99, resLat.cpu
	errs.Add(resLat.errors)

	// The attestation service on quotes of the same app.
	att, err := b.attestService(conc, flows, brokerPlat)
	if err != nil {
		return nil, err
	}
	res.AttestPerS, res.AttestP50ms, res.AttestP99ms, res.CPUPerAttest = att.rate, att.p50, att.p99, att.cpu
	errs.Add(att.errors)

	// The guest's quote alone, on every core.
	var qerr atomic.Value
	res.GuestQuotePerS, res.CPUPerQuote = parallelRate(ctx, flows, func(int) {
		if _, err := guest.Evidence(ctx, [64]byte{1}); err != nil {
			qerr.CompareAndSwap(nil, err)
		}
	})
	if err, _ := qerr.Load().(error); err != nil {
		return nil, fmt.Errorf("guest quotes: %w", err)
	}

	for _, x := range brokerBenchExtras {
		if err := x(b, res); err != nil {
			return nil, err
		}
	}
	if n, err := check.verify(); err != nil {
		errs.Add(int64(n))
		fmt.Fprintf(e.stderr, "bench broker: %d resource responses failed to decrypt, first: %v\n", n, err)
	}
	if res.FlowPerS > 0 {
		res.FlowCostVsAttest = res.AttestPerS / res.FlowPerS
		if res.GuestQuotePerS > 0 {
			res.FlowCostWithoutQuote = res.AttestPerS * (1/res.FlowPerS - 1/res.GuestQuotePerS)
		}
	}
	if res.CPUPerAttest > 0 {
		res.FlowCPUCostVsAttest = res.CPUPerFlow / res.CPUPerAttest
	}
	res.Errors = errs.Load()
	res.LoadAvgEnd = loadAvg1()
	if res.FlowPerS == 0 || res.ResourcePerS == 0 {
		return res, errors.New("no request succeeded")
	}
	return res, nil
}

func mustURL(s string) *url.URL {
	u, err := url.Parse(s)
	if err != nil {
		panic(err) // only called with URLs made from a listener address
	}
	return u
}

// admin sends one management request with a fresh admin token.
func (b *brokerBench) admin(method, path string, body []byte) error {
	now := time.Now()
	tok, err := jwt.NewWithClaims(jwt.SigningMethodEdDSA, jwt.MapClaims{"iat": now.Unix(), "exp": now.Add(time.Hour).Unix()}).SignedString(b.adminKey)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(b.ctx, method, "http://"+b.addr+path, strings.NewReader(string(body)))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s %s: %s", method, path, resp.Status)
	}
	return nil
}

// latencies is one measurement's outcome.
type latencies struct {
	rate, p50, p99 float64
	cpu            float64 // process CPU µs per success
	errors         int64
}

// flowState is a connection's client state: its session and key.
type flowState struct {
	cookie string
	priv   *ecdh.PrivateKey
}

// run runs op n times over conc new keep-alive connections, each with
// its own client state.
func (b *brokerBench) run(conc, n int, op func(*loadConn, *flowState) error) (*latencies, error) {
	conns := make([]*loadConn, conc)
	states := make([]*flowState, conc)
	for i := range conns {
		var err error
		if conns[i], err = dialLoad(b.ctx, b.addr); err != nil {
			return nil, err
		}
		defer conns[i].Close()
		states[i] = &flowState{}
	}
	return b.runOn(conns, states, n, op)
}

// runSessions attests once per connection, then measures resource GETs.
func (b *brokerBench) runSessions(conc, n int, check *jweSample) (*latencies, error) {
	conns := make([]*loadConn, conc)
	states := make([]*flowState, conc)
	for i := range conns {
		var err error
		if conns[i], err = dialLoad(b.ctx, b.addr); err != nil {
			return nil, err
		}
		defer conns[i].Close()
		states[i] = &flowState{}
		if err := states[i].handshake(b, conns[i]); err != nil {
			return nil, fmt.Errorf("session for resource requests: %w", err)
		}
	}
	return b.runOn(conns, states, n, func(lc *loadConn, fs *flowState) error {
		return fs.resource(b, lc, check)
	})
}

// runOn runs op n times over the given connections (one worker each)
// and returns the rate of successes and their latency percentiles;
// failures, and requests a broken connection could not send, count as
// errors.
func (b *brokerBench) runOn(conns []*loadConn, states []*flowState, n int, op func(*loadConn, *flowState) error) (*latencies, error) {
	var next, errs atomic.Int64
	var first atomic.Value
	lat := make([][]time.Duration, len(conns))
	var wg sync.WaitGroup
	cpu0, _ := processCPU()
	start := time.Now()
	for w := range conns {
		wg.Go(func() {
			for !conns[w].broken {
				if next.Add(1) > int64(n) || b.ctx.Err() != nil {
					return
				}
				t0 := time.Now()
				if err := op(conns[w], states[w]); err != nil {
					errs.Add(1)
					first.CompareAndSwap(nil, err)
					continue
				}
				lat[w] = append(lat[w], time.Since(t0))
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	if err := b.ctx.Err(); err != nil {
		return nil, err
	}
	all := slices.Concat(lat...)
	cpu := cpuSince(cpu0, len(all))
	if missing := int64(n) - int64(len(all)) - errs.Load(); missing > 0 {
		errs.Add(missing)
	}
	if err, _ := first.Load().(error); err != nil && len(all) == 0 {
		return nil, err
	}
	slices.Sort(all)
	return &latencies{rate: float64(len(all)) / elapsed.Seconds(), p50: pct(all, 0.5), p99: pct(all, 0.99), cpu: cpu, errors: errs.Load()}, nil
}

func (fs *flowState) flow(b *brokerBench, lc *loadConn, check *jweSample) error {
	if err := fs.handshake(b, lc); err != nil {
		return err
	}
	return fs.resource(b, lc, check)
}

// handshake runs auth and attest as a guest does.
func (fs *flowState) handshake(b *brokerBench, lc *loadConn) error {
	body := fmt.Sprintf(`{"version":%q,"tee":"sgx","extra-params":""}`, kbs.ProtocolVersion)
	resp, rb, err := lc.exchange(fmt.Appendf(nil, "POST /kbs/v0/auth HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", b.addr, len(body), body))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("auth: %d %s", resp.StatusCode, rb)
	}
	var ch struct {
		Nonce string `json:"nonce"`
	}
	if err := json.Unmarshal(rb, &ch); err != nil {
		return fmt.Errorf("challenge: %w", err)
	}
	fs.cookie = ""
	for _, c := range resp.Cookies() {
		if c.Name == kbs.SessionCookie {
			fs.cookie = c.Value
		}
	}
	if fs.priv, err = ecdh.P256().GenerateKey(rand.Reader); err != nil {
		return err
	}
	pt := fs.priv.PublicKey().Bytes()
	rd := kbs.RuntimeData{Nonce: ch.Nonce, TeePubKey: kbs.TeePubKey{Kty: "EC", Alg: kbs.AlgECDHESA256KW, Crv: "P-256",
		X: base64.RawURLEncoding.EncodeToString(pt[1:33]), Y: base64.RawURLEncoding.EncodeToString(pt[33:])}}
	digests, err := kbs.BindingDigests(&rd, "", kbs.HashSHA384)
	if err != nil {
		return err
	}
	q, err := b.guest.Evidence(b.ctx, digests[0])
	if err != nil {
		return err
	}
	ab, _ := json.Marshal(map[string]any{"runtime-data": rd, "tee-evidence": map[string]any{
		"primary_evidence": map[string]string{"quote": base64.StdEncoding.EncodeToString(q)}, "additional_evidence": ""}})
	resp, rb, err = lc.exchange(fmt.Appendf(nil, "POST /kbs/v0/attest HTTP/1.1\r\nHost: %s\r\nCookie: %s=%s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s",
		b.addr, kbs.SessionCookie, fs.cookie, len(ab), ab))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("attest: %d %s", resp.StatusCode, rb)
	}
	return nil
}

// resource GETs the bench resource with the session cookie.
func (fs *flowState) resource(b *brokerBench, lc *loadConn, check *jweSample) error {
	resp, rb, err := lc.exchange(fmt.Appendf(nil, "GET /kbs/v0/resource/%s HTTP/1.1\r\nHost: %s\r\nCookie: %s=%s\r\n\r\n", benchResource, b.addr, kbs.SessionCookie, fs.cookie))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("resource: %d %s", resp.StatusCode, rb)
	}
	check.keep(fs.priv, rb)
	return nil
}

// attestService measures the attestation service on sim-sgx quotes of the
// bench's app with the same roots and collateral, as `bench attest` does.
func (b *brokerBench) attestService(conc, n int, plat tee.Platform) (*latencies, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	base := "http://" + ln.Addr().String()
	svc, err := attest.New(attest.Config{Platform: plat, TrustRoots: b.roots, Alg: "ES256", Issuer: base, Collateral: b.collateral})
	if err != nil {
		ln.Close()
		return nil, err
	}
	defer svc.Close()
	srv := attestHTTPServer(svc, slog.New(slog.DiscardHandler))
	go srv.Serve(ln)
	defer srv.Close()
	addr := ln.Addr().String()
	const nquotes = 64
	reqs := make([][]byte, nquotes)
	for i := range reqs {
		var rd [64]byte
		rand.Read(rd[:])
		q, err := b.guest.Evidence(b.ctx, rd)
		if err != nil {
			return nil, err
		}
		body := fmt.Sprintf(`{"quote":%q}`, base64.RawURLEncoding.EncodeToString(q))
		reqs[i] = fmt.Appendf(nil, "POST /attest/SgxEnclave?api-version=2022-08-01 HTTP/1.1\r\nHost: %s\r\n"+
			"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", addr, len(body), body)
	}
	conns := make([]*loadConn, conc)
	states := make([]*flowState, conc)
	for i := range conns {
		if conns[i], err = dialLoad(b.ctx, addr); err != nil {
			return nil, err
		}
		defer conns[i].Close()
		if _, err := conns[i].post(reqs[i%nquotes]); err != nil { // warm up
			return nil, fmt.Errorf("attestation service: %w", err)
		}
	}
	var i atomic.Int64
	return b.runOn(conns, states, n, func(lc *loadConn, _ *flowState) error {
		_, err := lc.post(reqs[i.Add(1)%nquotes])
		return err
	})
}

// jweSample keeps up to maxJWESample resource responses with the key they
// were encrypted to, and decrypts them with go-jose after the run (not
// during it: the load generator shares the cores with the broker).
type jweSample struct {
	mu     sync.Mutex
	secret []byte
	seen   int
	kept   []sampledJWE
}

type sampledJWE struct {
	priv *ecdh.PrivateKey
	body []byte
}

const maxJWESample = 1000

func newJWESample(secret []byte) *jweSample { return &jweSample{secret: secret} }

func (s *jweSample) keep(priv *ecdh.PrivateKey, body []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.seen++
	if len(s.kept) < maxJWESample && s.seen%7 == 1 {
		s.kept = append(s.kept, sampledJWE{priv, body})
	}
}

// verify decrypts every kept response and returns how many failed.
func (s *jweSample) verify() (int, error) {
	var failed int
	var first error
	for _, k := range s.kept {
		priv, err := x509.ParsePKCS8PrivateKey(mustPKCS8(k.priv))
		if err == nil {
			var obj *jose.JSONWebEncryption
			if obj, err = jose.ParseEncryptedJSON(string(k.body), []jose.KeyAlgorithm{jose.ECDH_ES_A256KW}, []jose.ContentEncryption{jose.A256GCM}); err == nil {
				var pt []byte
				if pt, err = obj.Decrypt(priv); err == nil && string(pt) != string(s.secret) {
					err = errors.New("decrypted to another value")
				}
			}
		}
		if err != nil {
			failed++
			if first == nil {
				first = err
			}
		}
	}
	return failed, first
}

func mustPKCS8(k *ecdh.PrivateKey) []byte {
	b, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return nil // ParsePKCS8PrivateKey then reports the failure
	}
	return b
}
