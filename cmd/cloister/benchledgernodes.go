package main

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cloister-dev/cloister/evidence/pcs"
	"github.com/cloister-dev/cloister/ledger"
	"github.com/cloister-dev/cloister/ledger/replica"
	"github.com/cloister-dev/cloister/policy"
	"github.com/cloister-dev/cloister/ratls"
	"github.com/cloister-dev/cloister/tee"
	"github.com/cloister-dev/cloister/tee/sim"
)

// benchLedgerNodes measures the replicated ledger (ledger/replica) in one
// run: a 1-node service and an n-node service, each node with its own
// host storage through the boundary to its own bbolt file, raft over
// mutually attested TLS on loopback, all in this process on the same
// cores; then leader failovers on the n-node service. The JSON keys
// appends_per_s_1node, appends_per_s_<n>nodes, failover_p50_ms and
// failover_max_ms are a contract (issue 19): do NOT rename.
func benchLedgerNodes(e *env, dir string, nodes, entries, writers, size, failovers int) (map[string]any, error) {
	one, err := benchReplicaAppends(e, filepath.Join(dir, "one"), 1, entries, writers, size, 0)
	if err != nil {
		return nil, fmt.Errorf("1 node: %w", err)
	}
	many, err := benchReplicaAppends(e, filepath.Join(dir, "many"), nodes, entries, writers, size, failovers)
	if err != nil {
		return nil, fmt.Errorf("%d nodes: %w", nodes, err)
	}
	fwd, err := benchReplicaAppends(e, filepath.Join(dir, "fwd"), nodes, entries, writers, size, -1)
	if err != nil {
		return nil, fmt.Errorf("%d nodes, forwarded: %w", nodes, err)
	}
	return map[string]any{
		fmt.Sprintf("appends_per_s_%dnodes_forwarded", nodes): fwd.appendsPerS,
		"appends_per_s_1node":                       one.appendsPerS,
		fmt.Sprintf("appends_per_s_%dnodes", nodes): many.appendsPerS,
		"failover_p50_ms":                           many.failoverP50,
		"failover_max_ms":                           many.failoverMax,
		"failovers":                                 failovers,
		"nodes":                                     nodes,
		"entries":                                   entries,
		"writers":                                   writers,
		"entry_bytes":                               size,
	}, nil
}

type replicaBench struct {
	appendsPerS              float64
	failoverP50, failoverMax float64
}

// benchCluster is n in-process nodes of one service.
type benchCluster struct {
	// spread sends writes to every node in turn (followers forward them
	// to the leader); otherwise to the leader, as a client that followed
	// a redirect does.
	spread bool
	e      *env
	dir    string
	pki    *sim.PKI
	col    *pcs.Bundle
	mu     sync.Mutex
	nodes  map[uint64]*replica.Replica
	stops  map[uint64]func()
	addrs  map[uint64]string
}

func (c *benchCluster) start(ctx context.Context, id uint64, bootstrap bool, join string) error {
	backend, plat, cleanup, err := boundaryStorage(c.dir, fmt.Sprintf("node%d.db", id), c.e.now())
	if err != nil {
		return err
	}
	listen := c.addrs[id]
	if listen == "" {
		listen = "127.0.0.1:0"
	}
	now := c.e.now()
	r, err := replica.Start(ctx, replica.Options{
		ID: id, Listen: listen, Backend: backend, Sealer: tee.NewSealer(plat), Platform: plat,
		NodePolicy: ratls.VerifyOptions{
			Policy: policy.Policy{MRENCLAVE: [][]byte{benchNodeMeasurement[:]}, AllowDebug: true},
			Now:    func() time.Time { return now }, Collateral: ratls.BundleSource(c.col), TrustRoots: []*x509.Certificate{c.pki.Root},
		},
		Now: func() time.Time { return now }, Bootstrap: bootstrap, Join: join,
		// Snapshots every 50,000 raft entries: the whole ledger is one
		// snapshot, so taking them often costs more than the log.
		SnapshotEvery: 50000,
	})
	if err != nil {
		cleanup()
		return err
	}
	c.mu.Lock()
	c.nodes[id], c.addrs[id] = r, r.Addr()
	c.stops[id] = func() { r.Close(); cleanup() }
	c.mu.Unlock()
	return nil
}

// benchNodeMeasurement is boundaryStorage's sim app measurement.
var benchNodeMeasurement = [32]byte{0xbe}

func (c *benchCluster) stop(id uint64) {
	c.mu.Lock()
	f := c.stops[id]
	delete(c.stops, id)
	delete(c.nodes, id)
	c.mu.Unlock()
	if f != nil {
		f()
	}
}

func (c *benchCluster) live() []*replica.Replica {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []*replica.Replica
	for id := uint64(1); id <= uint64(len(c.addrs)); id++ {
		if r, ok := c.nodes[id]; ok {
			out = append(out, r)
		}
	}
	return out
}

func (c *benchCluster) close() {
	for id := range c.addrs {
		c.stop(id)
	}
}

// leader waits until every live node names the same live leader.
func (c *benchCluster) leader(ctx context.Context) (uint64, error) {
	for {
		nodes := c.live()
		lead, ok := nodes[0].Leader(), true
		in := false
		for _, r := range nodes {
			ok = ok && r.Leader() == lead
			in = in || r.ID() == lead
		}
		if ok && in && lead != 0 {
			return lead, nil
		}
		select {
		case <-ctx.Done():
			return 0, fmt.Errorf("no leader: %w", ctx.Err())
		case <-time.After(2 * time.Millisecond):
		}
	}
}

// appendAny appends through the live nodes, starting at i, until one
// acknowledges (a client with every node's address).
func (c *benchCluster) appendAny(ctx context.Context, i int, contents string) (ledger.TxID, *replica.Replica, error) {
	for {
		nodes := c.live()
		if !c.spread {
			for _, r := range nodes {
				if r.Leader() == r.ID() {
					nodes = []*replica.Replica{r}
					break
				}
			}
		}
		for k := range nodes {
			r := nodes[(i+k)%len(nodes)]
			actx, cancel := context.WithTimeout(ctx, time.Second)
			tx, err := r.Append(actx, "bench", contents)
			cancel()
			if err == nil {
				return tx, r, nil
			}
			if ctx.Err() != nil {
				return ledger.TxID{}, nil, ctx.Err()
			}
			if !errors.Is(err, replica.ErrNoLeader) && !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, replica.ErrStopped) {
				return ledger.TxID{}, nil, err
			}
		}
		select {
		case <-ctx.Done():
			return ledger.TxID{}, nil, ctx.Err()
		case <-time.After(time.Millisecond):
		}
	}
}

func benchReplicaAppends(e *env, dir string, n, entries, writers, size, failovers int) (*replicaBench, error) {
	ctx, cancel := context.WithTimeout(e.ctx, 10*time.Minute)
	defer cancel()
	pki, err := sim.Load(filepath.Join(dir, "sim"), rand.Reader, e.now())
	if err != nil {
		return nil, err
	}
	col, err := pki.Collateral(rand.Reader, e.now(), false)
	if err != nil {
		return nil, err
	}
	// failovers < 0: writes spread over the nodes, no failover.
	spread := failovers < 0
	failovers = max(failovers, 0)
	c := &benchCluster{spread: spread, e: e, dir: dir, pki: pki, col: col, nodes: map[uint64]*replica.Replica{}, stops: map[uint64]func(){}, addrs: map[uint64]string{}}
	defer c.close()
	if err := c.start(ctx, 1, true, ""); err != nil {
		return nil, err
	}
	if _, err := c.leader(ctx); err != nil {
		return nil, err
	}
	for id := uint64(2); id <= uint64(n); id++ {
		if err := c.start(ctx, id, false, c.addrs[1]); err != nil {
			return nil, err
		}
	}
	res := &replicaBench{}
	// Appends: writers on the leader (or spread over the nodes, followers
	// forwarding), counted until every entry is committed and each
	// writer's last receipt is ready on the node that took it.
	var next atomic.Int64
	var wg sync.WaitGroup
	var firstErr atomic.Value
	var last sync.Map // node -> max tx
	start := e.now()
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var max ledger.TxID
			var by *replica.Replica
			for {
				i := int(next.Add(1)) - 1
				if i >= entries {
					break
				}
				tx, r, err := c.appendAny(ctx, w, benchContents(i, size))
				if err != nil {
					firstErr.CompareAndSwap(nil, err)
					return
				}
				if tx.Seqno > max.Seqno {
					max, by = tx, r
				}
			}
			if by != nil {
				last.Store(w, [2]any{by, max})
			}
		}()
	}
	wg.Wait()
	if err, ok := firstErr.Load().(error); ok {
		return nil, err
	}
	var werr error
	last.Range(func(_, v any) bool {
		p := v.([2]any)
		if _, _, err := p[0].(*replica.Replica).WaitReceipt(ctx, p[1].(ledger.TxID)); err != nil {
			werr = err
			return false
		}
		return true
	})
	if werr != nil {
		return nil, werr
	}
	res.appendsPerS = float64(entries) / e.now().Sub(start).Seconds()

	// Failovers: a writer keeps appending; the leader is killed; the time
	// until a write started after the kill is acknowledged (by the new
	// leader's service) is the failover time. The killed node restarts
	// from its sealed state and catches up before the next round.
	var times []float64
	for f := range failovers {
		lead, err := c.leader(ctx)
		if err != nil {
			return nil, err
		}
		killed := e.now()
		c.stop(lead)
		if _, _, err := c.appendAny(ctx, f, benchContents(f, size)); err != nil {
			return nil, fmt.Errorf("failover %d: %w", f, err)
		}
		times = append(times, float64(e.now().Sub(killed))/float64(time.Millisecond))
		if err := c.start(ctx, lead, false, ""); err != nil {
			return nil, fmt.Errorf("restarting node %d: %w", lead, err)
		}
		at := c.live()[0].Last().Seqno
		for _, r := range c.live() {
			at = max(at, r.Last().Seqno)
		}
		c.mu.Lock()
		back := c.nodes[lead]
		c.mu.Unlock()
		if err := back.WaitApplied(ctx, at); err != nil {
			return nil, err
		}
	}
	if len(times) > 0 {
		slices.Sort(times)
		res.failoverP50, res.failoverMax = times[len(times)/2], times[len(times)-1]
	}
	return res, nil
}

func runBenchLedgerNodes(e *env, dir string, nodes, entries, writers, size, failovers int, jsonOut bool) error {
	res, err := benchLedgerNodes(e, dir, nodes, entries, writers, size, failovers)
	if err != nil {
		return fmt.Errorf("bench ledger: %w", err)
	}
	if jsonOut {
		return printJSON(e.stdout, res)
	}
	w := e.stdout
	one, many := res["appends_per_s_1node"].(float64), res[fmt.Sprintf("appends_per_s_%dnodes", nodes)].(float64)
	fmt.Fprintf(w, "%d entries of %d bytes, %d writers\n", entries, size, writers)
	fmt.Fprintf(w, "appends/s, 1 node                %10.0f\n", one)
	fwd := res[fmt.Sprintf("appends_per_s_%dnodes_forwarded", nodes)].(float64)
	fmt.Fprintf(w, "appends/s, %d nodes               %10.0f  (%.0f%% of 1 node)\n", nodes, many, 100*many/one)
	fmt.Fprintf(w, "appends/s, %d nodes, forwarded    %10.0f  (%.0f%% of 1 node)\n", nodes, fwd, 100*fwd/one)
	fmt.Fprintf(w, "leader failover p50 / max        %7.0f ms / %.0f ms (%d failovers)\n", res["failover_p50_ms"], res["failover_max_ms"], failovers)
	return nil
}
