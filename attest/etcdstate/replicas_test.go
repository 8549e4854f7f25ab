package etcdstate_test

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/cloister-dev/cloister/attest"
	"github.com/cloister-dev/cloister/attest/etcdstate"
	"github.com/cloister-dev/cloister/attest/tokens"
	"github.com/cloister-dev/cloister/evidence/pcs"
	"github.com/cloister-dev/cloister/internal/etcdembed"
	"github.com/cloister-dev/cloister/tee"
	"github.com/cloister-dev/cloister/tee/sim"
)

const (
	issuer = "https://attest.test"
	av     = "?api-version=2022-08-01"
	// ttl is the replicas' lease in these tests (the default): shorter
	// leases run out on the shared, loaded 2-core VM under -race, where
	// the in-process etcd members are starved too, and the replicas then
	// spend the tests fenced.
	ttl = 5 * time.Second
)

// world is what every test shares: one sim PKI and one platform (all
// replicas run the same code, so they have one identity), and one
// embedded 3-member cluster; each test gets its own key prefix.
type world struct {
	pki     *sim.PKI
	col     *pcs.Bundle
	plat    tee.Platform
	cluster *etcdembed.Cluster
}

var (
	worldOnce sync.Once
	theWorld  world
	worldErr  error
	prefixes  atomic.Int64
)

func TestMain(m *testing.M) {
	code := m.Run()
	if theWorld.cluster != nil {
		theWorld.cluster.Close()
	}
	os.Exit(code)
}

func getWorld(t *testing.T) *world {
	t.Helper()
	worldOnce.Do(func() {
		w := &theWorld
		dir, err := os.MkdirTemp("", "etcdstate-sim-")
		if err != nil {
			worldErr = err
			return
		}
		// The PKI lives as long as the test binary; TestMain's cluster
		// removal does not cover it, so remove it once loaded (sim.Load
		// reads it into memory).
		defer os.RemoveAll(dir)
		now := time.Now()
		if w.pki, worldErr = sim.Load(dir, rand.Reader, now.Add(-time.Hour)); worldErr != nil {
			return
		}
		if w.col, worldErr = w.pki.Collateral(rand.Reader, now, false); worldErr != nil {
			return
		}
		if w.plat, worldErr = sim.NewPlatform(w.pki, tee.KindSimSGX, sim.App{MRENCLAVE: [32]byte{0xaa}, MRSIGNER: [32]byte{0xbb}, ProductID: 1, SVN: 1}, rand.Reader); worldErr != nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		w.cluster, worldErr = etcdembed.Start(ctx, "", 3)
	})
	if worldErr != nil {
		t.Fatal(worldErr)
	}
	return &theWorld
}

// replicaNode is one replica: its own etcd client, service and HTTP server.
type replicaNode struct {
	store *etcdstate.Store
	svc   *attest.Service
	srv   *httptest.Server
	once  sync.Once
}

// crash stops the replica as a crash would look to etcd: its client goes
// first, so its lease is not revoked and ends only at its TTL.
func (n *replicaNode) crash() {
	n.once.Do(func() {
		n.store.Close()
		n.srv.CloseClientConnections()
		n.srv.Close()
		n.svc.Close()
	})
}

// stop stops the replica cleanly (it leaves at once).
func (n *replicaNode) stop() {
	n.once.Do(func() {
		n.srv.Close()
		n.svc.Close()
		n.store.Close()
	})
}

type replicaOpts struct {
	endpoints []string
	prefix    string
	signers   []*x509.Certificate
	plat      tee.Platform
}

func startReplica(t *testing.T, w *world, o replicaOpts) *replicaNode {
	t.Helper()
	st, err := etcdstate.Open(etcdstate.Options{Endpoints: o.endpoints, Prefix: o.prefix})
	if err != nil {
		t.Fatal(err)
	}
	plat := o.plat
	if plat == nil {
		plat = w.plat
	}
	svc, err := attest.New(attest.Config{
		Platform: plat, TrustRoots: []*x509.Certificate{w.pki.Root},
		Collateral: func(context.Context, []byte) (*pcs.Bundle, error) { return w.col, nil },
		Alg:        "ES256", Issuer: issuer, InsecureAdmin: true, PolicySigners: o.signers,
		Shared: st, ReplicaTTL: ttl, Timeout: 20 * time.Second, Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	if err != nil {
		st.Close()
		t.Fatal(err)
	}
	n := &replicaNode{store: st, svc: svc, srv: httptest.NewServer(svc)}
	t.Cleanup(n.stop)
	return n
}

func newPrefix() string { return fmt.Sprintf("/test-%d-%d/", os.Getpid(), prefixes.Add(1)) }

func startReplicas(t *testing.T, w *world, n int, o replicaOpts) []*replicaNode {
	t.Helper()
	if o.endpoints == nil {
		o.endpoints = w.cluster.Endpoints()
	}
	if o.prefix == "" {
		o.prefix = newPrefix()
	}
	var out []*replicaNode
	for range n {
		out = append(out, startReplica(t, w, o))
	}
	return out
}

// sgxQuote is a sim quote whose report data starts with SHA-256(tag).
func sgxQuote(t *testing.T, w *world, tag string) []byte {
	t.Helper()
	var rd [64]byte
	sum := sha256.Sum256([]byte(tag))
	copy(rd[:], sum[:])
	q, err := w.pki.QuoteSGX(rand.Reader, sim.SGXReport{MRENCLAVE: [32]byte{1, 2}, MRSIGNER: [32]byte{3, 4}, ISVProdID: 7, ISVSVN: 3, ReportData: rd})
	if err != nil {
		t.Fatal(err)
	}
	return q
}

// call makes one request and returns the status and decoded body.
func call(ctx context.Context, client *http.Client, method, url, body string) (int, map[string]any, error) {
	req, err := http.NewRequestWithContext(ctx, method, url, strings.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return 0, nil, err
	}
	var out map[string]any
	if err := json.Unmarshal(b, &out); err != nil {
		return resp.StatusCode, nil, fmt.Errorf("status %d, body %q: %w", resp.StatusCode, b, err)
	}
	return resp.StatusCode, out, nil
}

func attestBody(q []byte) string {
	return fmt.Sprintf(`{"quote":%q}`, base64.RawURLEncoding.EncodeToString(q))
}

// attestOn attests q on one replica and returns the token (fatal unless
// 200). A 503 (the replica is fenced while it renews its lease or rejoins,
// which a loaded machine provokes) is a refusal a client retries, not an
// answer: it is retried, within a bound.
func attestOn(t *testing.T, n *replicaNode, q []byte) string {
	t.Helper()
	code, out, err := attestRetry(t, n, q)
	if err != nil || code != 200 {
		t.Fatalf("attest on %s: %d %v %v", n.srv.URL, code, out, err)
	}
	return out["token"].(string)
}

// attestRetry posts q to n, retrying for up to a minute while the answer
// is 503 ServiceUnavailable (fenced); other answers, 503
// PolicyUnavailable included, are returned.
func attestRetry(t *testing.T, n *replicaNode, q []byte) (int, map[string]any, error) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		code, out, err := call(t.Context(), http.DefaultClient, "POST", n.srv.URL+"/attest/SgxEnclave"+av, attestBody(q))
		if err != nil || code != http.StatusServiceUnavailable || errCode(out) != "ServiceUnavailable" || time.Now().After(deadline) {
			return code, out, err
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// keySet fetches a replica's /certs.
func keySet(t *testing.T, url string) *tokens.KeySet {
	t.Helper()
	resp, err := http.Get(url + "/certs")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	ks, err := tokens.ParseJWKS(b)
	if err != nil {
		t.Fatalf("%s/certs: %v", url, err)
	}
	return ks
}

func kids(ks *tokens.KeySet) map[string]bool {
	m := map[string]bool{}
	for _, k := range ks.Keys {
		m[k.ID] = true
	}
	return m
}

func tokenKid(t *testing.T, tok string) string {
	t.Helper()
	p, _, err := jwt.NewParser().ParseUnverified(tok, jwt.MapClaims{})
	if err != nil {
		t.Fatal(err)
	}
	kid, _ := p.Header["kid"].(string)
	return kid
}

// policyDoc is an unsigned MAA policy document that permits everything
// and issues marker=v, so a token shows which policy judged it.
func policyText(v string) string {
	return fmt.Sprintf("version= 1.0;\nauthorizationrules{\n\t=> permit();\n};\nissuancerules{\n\t=> issue(type=\"marker\", value=%q);\n};\n", v)
}

// policyHash is MAA's x-ms-policy-hash of text.
func policyHash(text string) string {
	inner := base64.RawURLEncoding.EncodeToString([]byte(text))
	sum := sha256.Sum256([]byte(inner))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// A token from any replica validates against the /certs of every other,
// and each replica's key is published by all of them as soon as New
// returns (no waiting: that is the guarantee).
func TestTokensValidateAcrossReplicas(t *testing.T) {
	w := getWorld(t)
	nodes := startReplicas(t, w, 3, replicaOpts{})
	// The last replica lists the others' keys from its first snapshot on,
	// before any later change reaches it.
	if got := kids(keySet(t, nodes[2].srv.URL)); len(got) != 3 {
		t.Errorf("the last replica to join lists %d keys right after New, want 3", len(got))
	}
	q := sgxQuote(t, w, "across")
	for i, a := range nodes {
		tok := attestOn(t, a, q)
		for j, b := range nodes {
			claims, err := tokens.Verify(tok, keySet(t, b.srv.URL), tokens.Options{Time: time.Now(), Issuer: issuer})
			if err != nil {
				t.Errorf("token from replica %d against /certs of replica %d: %v", i, j, err)
				continue
			}
			if claims["x-ms-attestation-type"] != "sim-sgx" {
				t.Errorf("claims %v", claims)
			}
		}
	}
	// Each /certs lists exactly the three replicas' keys.
	want := kids(keySet(t, nodes[0].srv.URL))
	if len(want) != 3 {
		t.Fatalf("/certs lists %d keys, want 3", len(want))
	}
	for _, n := range nodes[1:] {
		if got := kids(keySet(t, n.srv.URL)); len(got) != 3 || !sameSet(got, want) {
			t.Errorf("/certs of %s lists %v, want %v", n.srv.URL, got, want)
		}
	}
}

func sameSet(a, b map[string]bool) bool {
	if len(a) != len(b) {
		return false
	}
	for k := range a {
		if !b[k] {
			return false
		}
	}
	return true
}

// A policy set on replica A is in force on B and C when the PUT returns:
// the very next attestation on each carries its hash and its claim. A
// reset on C is in force on A and B the same way.
func TestPolicyChangeAppliesOnAllBeforeReturn(t *testing.T) {
	w := getWorld(t)
	nodes := startReplicas(t, w, 3, replicaOpts{})
	q := sgxQuote(t, w, "policy")
	for round := range 3 {
		text := policyText(fmt.Sprintf("v%d", round))
		code, out, err := call(t.Context(), http.DefaultClient, "PUT", nodes[round%3].srv.URL+"/policies/SgxEnclave"+av, attest.UnsignedPolicy(text))
		if err != nil || code != 200 {
			t.Fatalf("PUT: %d %v %v", code, out, err)
		}
		res := parseUnverified(t, out["token"].(string))
		if res["x-cloister-replicas"] != float64(3) {
			t.Errorf("x-cloister-replicas = %v, want 3", res["x-cloister-replicas"])
		}
		for i, n := range nodes {
			c := parseUnverified(t, attestOn(t, n, q))
			if c["x-ms-policy-hash"] != policyHash(text) || c["marker"] != fmt.Sprintf("v%d", round) {
				t.Errorf("round %d, replica %d: policy hash %v marker %v, want the policy just set", round, i, c["x-ms-policy-hash"], c["marker"])
			}
		}
	}
	code, out, err := call(t.Context(), http.DefaultClient, "POST", nodes[2].srv.URL+"/policies/SgxEnclave:reset"+av, "eyJhbGciOiJub25lIn0..")
	if err != nil || code != 200 {
		t.Fatalf("reset: %d %v %v", code, out, err)
	}
	for i, n := range nodes {
		if c := parseUnverified(t, attestOn(t, n, q)); c["marker"] != nil {
			t.Errorf("replica %d still issues marker %v after the reset", i, c["marker"])
		}
	}
}

func parseUnverified(t *testing.T, tok string) jwt.MapClaims {
	t.Helper()
	c := jwt.MapClaims{}
	if _, _, err := jwt.NewParser().ParseUnverified(tok, c); err != nil {
		t.Fatal(err)
	}
	return c
}

// A replica cut off from etcd (its client closed, its HTTP server still
// up) stops signing: within its lease it answers 503, never a token judged
// by a policy it can no longer follow. Its peer then stops waiting for it:
// a policy change returns, confirmed by the one live replica.
func TestCutOffReplicaStopsSigning(t *testing.T) {
	w := getWorld(t)
	nodes := startReplicas(t, w, 2, replicaOpts{})
	q := sgxQuote(t, w, "cut off")
	attestOn(t, nodes[1], q)
	nodes[1].store.Close()
	// A bounded wait for a liveness property (the lease runs out), not a
	// timing assertion: the bound is many times the TTL.
	deadline := time.Now().Add(10 * ttl)
	for {
		code, out, err := call(t.Context(), http.DefaultClient, "POST", nodes[1].srv.URL+"/attest/SgxEnclave"+av, attestBody(q))
		if err != nil {
			t.Fatal(err)
		}
		if code == http.StatusServiceUnavailable {
			break
		}
		if code != 200 {
			t.Fatalf("status %d %v", code, out)
		}
		if time.Now().After(deadline) {
			t.Fatalf("the cut-off replica still signs after %v", 10*ttl)
		}
		time.Sleep(50 * time.Millisecond)
	}
	code, out, err := call(t.Context(), http.DefaultClient, "PUT", nodes[0].srv.URL+"/policies/SgxEnclave"+av, attest.UnsignedPolicy(policyText("alone")))
	if err != nil || code != 200 {
		t.Fatalf("PUT with a cut-off peer: %d %v %v", code, out, err)
	}
	if got := parseUnverified(t, out["token"].(string))["x-cloister-replicas"]; got != float64(1) {
		t.Errorf("x-cloister-replicas = %v, want 1", got)
	}
	if c := parseUnverified(t, attestOn(t, nodes[0], q)); c["marker"] != "alone" {
		t.Errorf("marker %v", c["marker"])
	}
}

// Rotating a replica's key publishes the new key on every replica before
// the replica signs with it; the old key stays published.
func TestRotationPublishesEverywhere(t *testing.T) {
	w := getWorld(t)
	nodes := startReplicas(t, w, 2, replicaOpts{})
	q := sgxQuote(t, w, "rotation")
	old := attestOn(t, nodes[0], q)
	if err := nodes[0].svc.RotateKey(t.Context()); err != nil {
		t.Fatal(err)
	}
	fresh := attestOn(t, nodes[0], q)
	if tokenKid(t, old) == tokenKid(t, fresh) {
		t.Fatal("the key did not change")
	}
	ks := keySet(t, nodes[1].srv.URL)
	for _, tok := range []string{old, fresh} {
		if _, err := tokens.Verify(tok, ks, tokens.Options{Time: time.Now(), Issuer: issuer}); err != nil {
			t.Errorf("token of kid %s against the peer's /certs: %v", tokenKid(t, tok), err)
		}
	}
}

// errCode is the code of a CloudError body.
func errCode(out map[string]any) string {
	e, _ := out["error"].(map[string]any)
	c, _ := e["code"].(string)
	return c
}
