package etcdstate_test

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cloister-dev/cloister/attest"
	"github.com/cloister-dev/cloister/attest/tokens"
	"github.com/cloister-dev/cloister/internal/etcdembed"
)

// got is one token a client received, with the policy in force (the index
// of the last policy whose PUT had returned) when it sent the request.
type got struct {
	token    string
	inForce  int64
	replica  int
	attempts int
}

// Under a load of clients that retry on another replica, the etcd leader
// and one replica are killed (the replica as a crash: its lease ends only
// at its TTL) while policies keep changing. No client sees a wrong
// answer: every token validates against the /certs of every surviving
// replica (the dead replica's key included, kept until its tokens expire)
// and carries the policy in force when its request was sent or a later
// one; the only refusals are 503s and broken connections, and every
// client request ends with a token.
func TestFaultsUnderLoad(t *testing.T) {
	begin := time.Now()
	w := getWorld(t) // the PKI and platform; this test has its own cluster
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	cluster, err := etcdembed.Start(ctx, "", 3)
	if err != nil {
		t.Fatal(err)
	}
	// A cleanup, not a defer: cleanups run last in, first out, so the
	// replicas (registered later) stop before the cluster, whose members
	// would otherwise wait for the replicas' streams to drain.
	t.Cleanup(func() { cluster.Close() })
	t.Logf("world and cluster ready after %v", time.Since(begin))
	nodes := startReplicas(t, w, 3, replicaOpts{endpoints: cluster.Endpoints()})
	t.Logf("replicas ready after %v", time.Since(begin))
	q := sgxQuote(t, w, "faults")
	client := &http.Client{Timeout: 30 * time.Second}

	var (
		next     atomic.Int64 // round robin
		inForce  atomic.Int64 // index of the policy in force; -1: the default
		sentMax  atomic.Int64 // highest policy index whose PUT was sent
		mu       sync.Mutex
		received []got
		wrong    []string
	)
	inForce.Store(-1)
	sentMax.Store(-1)
	// The default policy's hash, from a token judged by it.
	defaultHash, _ := parseUnverified(t, attestOn(t, nodes[0], q))["x-ms-policy-hash"].(string)
	hashes := map[string]int64{defaultHash: -1}
	const nPolicies = 4
	for i := range int64(nPolicies) {
		hashes[policyHash(policyText(fmt.Sprint(i)))] = i
	}
	fail := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		if len(wrong) < 20 {
			wrong = append(wrong, fmt.Sprintf(format, args...))
		}
	}
	// do sends one request round robin, retrying on another replica after
	// a refusal (503) or a broken connection, until it succeeds or ctx ends.
	do := func(method, path, body string) (map[string]any, int, int, error) {
		for attempt := 1; ; attempt++ {
			i := int(next.Add(1) % int64(len(nodes)))
			code, out, err := call(ctx, client, method, nodes[i].srv.URL+path, body)
			switch {
			case err == nil && code == 200:
				return out, i, attempt, nil
			case ctx.Err() != nil:
				return nil, i, attempt, ctx.Err()
			case err == nil && code != http.StatusServiceUnavailable:
				fail("%s %s on replica %d: status %d %v: a wrong answer, not a refusal", method, path, i, code, out)
			}
		}
	}

	stopLoad := make(chan struct{})
	var load sync.WaitGroup
	for range 3 {
		load.Go(func() {
			for {
				select {
				case <-stopLoad:
					return
				default:
				}
				f := inForce.Load()
				out, i, n, err := do("POST", "/attest/SgxEnclave"+av, attestBody(q))
				if err != nil {
					return
				}
				mu.Lock()
				received = append(received, got{token: out["token"].(string), inForce: f, replica: i, attempts: n})
				mu.Unlock()
			}
		})
	}
	count := func() int { mu.Lock(); defer mu.Unlock(); return len(received) }
	waitTokens := func(n int) {
		for count() < n && ctx.Err() == nil {
			time.Sleep(20 * time.Millisecond)
		}
	}
	setPolicy := func(i int64) {
		sentMax.Store(i)
		t0 := time.Now()
		defer func() { t.Logf("policy %d: PUT took %v (tokens so far %d)", i, time.Since(t0), count()) }()
		if _, _, _, err := do("PUT", "/policies/SgxEnclave"+av, attest.UnsignedPolicy(policyText(fmt.Sprint(i)))); err != nil {
			t.Errorf("PUT policy %d: %v", i, err)
			return
		}
		inForce.Store(i)
	}

	var p int64
	for ; p < nPolicies/2; p++ {
		waitTokens(count() + 5)
		setPolicy(p)
	}
	lead := cluster.Leader()
	if lead < 0 {
		t.Fatal("no etcd leader")
	}
	t0 := time.Now()
	if err := cluster.Stop(lead); err != nil {
		t.Fatal(err)
	}
	t1 := time.Now()
	nodes[1].crash()
	t.Logf("stop %v crash %v", t1.Sub(t0), time.Since(t1))
	t.Logf("stopped etcd member %d (the leader) and crashed replica 1 after %d tokens", lead, count())
	for ; p < nPolicies; p++ {
		waitTokens(count() + 5)
		setPolicy(p)
	}
	waitTokens(count() + 10)
	close(stopLoad)
	load.Wait()
	if err := ctx.Err(); err != nil {
		t.Fatalf("the test ran out of time: %v", err)
	}

	t.Logf("load done after %v", time.Since(begin))
	// Every token, from any replica (the crashed one's too), validates
	// against each surviving replica's /certs.
	for _, n := range []*replicaNode{nodes[0], nodes[2]} {
		ks := keySet(t, n.srv.URL)
		for _, g := range received {
			claims, err := tokens.Verify(g.token, ks, tokens.Options{Time: time.Now(), Issuer: issuer})
			if err != nil {
				fail("token from replica %d does not validate against %s/certs: %v", g.replica, n.srv.URL, err)
				continue
			}
			h, _ := claims["x-ms-policy-hash"].(string)
			idx, ok := hashes[h]
			switch {
			case !ok:
				fail("token from replica %d carries policy hash %s, which no policy of the test has", g.replica, h)
			case idx < g.inForce:
				fail("token from replica %d was judged by policy %d, but policy %d was in force when it was requested", g.replica, idx, g.inForce)
			}
		}
	}
	retried := 0
	for _, g := range received {
		if g.attempts > 1 {
			retried++
		}
	}
	t.Logf("%d tokens, %d of them after a retry; last policy in force %d; checked after %v", len(received), retried, inForce.Load(), time.Since(begin))
	if inForce.Load() != nPolicies-1 {
		t.Errorf("policy in force %d, want %d", inForce.Load(), nPolicies-1)
	}
	for _, m := range wrong {
		t.Error(m)
	}
}
