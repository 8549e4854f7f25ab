package replica

import (
	"context"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/cloister-dev/cloister/evidence/pcs"
	"github.com/cloister-dev/cloister/kv/kvtest"
	"github.com/cloister-dev/cloister/ledger"
	"github.com/cloister-dev/cloister/policy"
	"github.com/cloister-dev/cloister/ratls"
	"github.com/cloister-dev/cloister/tee"
	"github.com/cloister-dev/cloister/tee/sim"
)

var simNow = time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)

var (
	nodeApp  = sim.App{MRENCLAVE: [32]byte{0x1E, 0xD6, 0x19}, MRSIGNER: [32]byte{0x51}, ProductID: 1, SVN: 1}
	otherApp = sim.App{MRENCLAVE: [32]byte{0xBA, 0xD0}, MRSIGNER: [32]byte{0x51}, ProductID: 1, SVN: 1}
)

// network is the loopback network of a test cluster: every node dials
// through it, so the test can cut links (both directions) and close the
// connections already open across a cut.
type network struct {
	mu    sync.Mutex
	addrs map[string]uint64 // listen address -> node
	cut   map[[2]uint64]bool
	conns map[[2]uint64][]net.Conn
}

func newNetwork() *network {
	return &network{addrs: map[string]uint64{}, cut: map[[2]uint64]bool{}, conns: map[[2]uint64][]net.Conn{}}
}

func (nw *network) dialer(from uint64) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		nw.mu.Lock()
		to := nw.addrs[addr]
		blocked := nw.cut[[2]uint64{from, to}]
		nw.mu.Unlock()
		if blocked {
			return nil, fmt.Errorf("test network: link %d->%d is cut", from, to)
		}
		var d net.Dialer
		c, err := d.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		nw.mu.Lock()
		defer nw.mu.Unlock()
		if nw.cut[[2]uint64{from, to}] {
			c.Close()
			return nil, fmt.Errorf("test network: link %d->%d is cut", from, to)
		}
		nw.conns[[2]uint64{from, to}] = append(nw.conns[[2]uint64{from, to}], c)
		return c, nil
	}
}

// partition cuts every link between group and the other nodes.
func (nw *network) partition(group, others []uint64) {
	nw.mu.Lock()
	defer nw.mu.Unlock()
	for _, a := range group {
		for _, b := range others {
			for _, k := range [][2]uint64{{a, b}, {b, a}} {
				nw.cut[k] = true
				for _, c := range nw.conns[k] {
					c.Close()
				}
				delete(nw.conns, k)
			}
		}
	}
}

func (nw *network) heal() {
	nw.mu.Lock()
	defer nw.mu.Unlock()
	nw.cut = map[[2]uint64]bool{}
}

// cluster is in-process nodes talking raft over real TCP on loopback,
// with mutually attested TLS carrying sim evidence.
type cluster struct {
	t        *testing.T
	pki      *sim.PKI
	col      *pcs.Bundle
	net      *network
	tune     func(*Options)
	mu       sync.Mutex
	nodes    map[uint64]*Replica
	backends map[uint64]*kvtest.MemBackend
	svc      *x509.Certificate
}

func (c *cluster) policy() ratls.VerifyOptions {
	return ratls.VerifyOptions{
		Policy: policy.Policy{MRENCLAVE: [][]byte{nodeApp.MRENCLAVE[:]}, AllowDebug: true},
		Now:    func() time.Time { return simNow }, Collateral: ratls.BundleSource(c.col),
		TrustRoots: []*x509.Certificate{c.pki.Root},
	}
}

func newCluster(t *testing.T, n int, tune func(*Options)) *cluster {
	t.Helper()
	pki, err := sim.Load(filepath.Join(t.TempDir(), "sim"), rand.Reader, simNow)
	if err != nil {
		t.Fatal(err)
	}
	col, err := pki.Collateral(rand.Reader, simNow, false)
	if err != nil {
		t.Fatal(err)
	}
	c := &cluster{t: t, pki: pki, col: col, net: newNetwork(), tune: tune, nodes: map[uint64]*Replica{}, backends: map[uint64]*kvtest.MemBackend{}}
	t.Cleanup(c.closeAll)
	if n == 0 {
		return c
	}
	first, err := c.start(1, nodeApp, true, "")
	if err != nil {
		t.Fatal(err)
	}
	c.svc = first.Identity().ServiceCert
	c.waitLeader(nil)
	for id := uint64(2); id <= uint64(n); id++ {
		if _, err := c.start(id, nodeApp, false, c.node(1).Addr()); err != nil {
			t.Fatalf("node %d joining: %v", id, err)
		}
	}
	return c
}

// options are node id's options on its backend (kept across restarts).
func (c *cluster) options(id uint64, app sim.App, bootstrap bool, join string) Options {
	plat, err := sim.NewPlatform(c.pki, tee.KindSimSGX, app, nil)
	if err != nil {
		c.t.Fatal(err)
	}
	c.mu.Lock()
	b, ok := c.backends[id]
	if !ok {
		b = kvtest.NewMemBackend()
		c.backends[id] = b
	}
	c.mu.Unlock()
	o := Options{
		ID: id, Listen: "127.0.0.1:0", Backend: b, Sealer: tee.NewSealer(plat), Platform: plat,
		NodePolicy: c.policy(), Now: func() time.Time { return simNow }, Bootstrap: bootstrap, Join: join,
		Tick: 10 * time.Millisecond, ElectionTicks: 10, SignInterval: 50 * time.Millisecond,
		DialContext: c.net.dialer(id),
		Identity: ledger.IdentityOptions{IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, ServiceExtensions: func(spki []byte) ([]pkix.Extension, error) {
			e, err := ratls.Extension(context.Background(), plat, spki, nil)
			return []pkix.Extension{e}, err
		}},
	}
	if c.tune != nil {
		c.tune(&o)
	}
	return o
}

func (c *cluster) start(id uint64, app sim.App, bootstrap bool, join string) (*Replica, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	o := c.options(id, app, bootstrap, join)
	// The listen address must be known to the network before peers dial
	// it: pick it first.
	// A restarted node keeps its address, as a deployed one does.
	c.net.mu.Lock()
	for a, n := range c.net.addrs {
		if n == id {
			o.Listen = a
		}
	}
	c.net.mu.Unlock()
	if o.Listen == "127.0.0.1:0" {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		o.Listen = ln.Addr().String()
		ln.Close()
		c.net.mu.Lock()
		c.net.addrs[o.Listen] = id
		c.net.mu.Unlock()
	}
	r, err := Start(ctx, o)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	c.nodes[id] = r
	c.mu.Unlock()
	return r, nil
}

func (c *cluster) node(id uint64) *Replica {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nodes[id]
}

func (c *cluster) live() []*Replica {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []*Replica
	for id := uint64(1); id <= 16; id++ {
		if r, ok := c.nodes[id]; ok {
			out = append(out, r)
		}
	}
	return out
}

// kill stops node id (its host storage stays).
func (c *cluster) kill(id uint64) {
	c.mu.Lock()
	r := c.nodes[id]
	delete(c.nodes, id)
	c.mu.Unlock()
	r.Close()
}

func (c *cluster) closeAll() {
	for _, r := range c.live() {
		r.Close()
	}
}

// waitLeader waits until every node in among (all live nodes if nil)
// names the same leader, itself in among, and returns it.
func (c *cluster) waitLeader(among []*Replica) uint64 {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for {
		nodes := among
		if nodes == nil {
			nodes = c.live()
		}
		lead, agree := nodes[0].Leader(), true
		in := false
		for _, r := range nodes {
			agree = agree && r.Leader() == lead
			in = in || r.ID() == lead
		}
		if lead != 0 && agree && in {
			return lead
		}
		select {
		case <-ctx.Done():
			c.t.Fatalf("no leader agreed on within 20s")
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// appendRetry appends through the nodes in turn until one acknowledges,
// as a client with several endpoints does.
func appendRetry(ctx context.Context, nodes []*Replica, i int, coll, contents string) (ledger.TxID, *Replica, error) {
	for {
		for k := range nodes {
			r := nodes[(i+k)%len(nodes)]
			actx, cancel := context.WithTimeout(ctx, 2*time.Second)
			tx, err := r.Append(actx, coll, contents)
			cancel()
			if err == nil {
				return tx, r, nil
			}
			if ctx.Err() != nil {
				return ledger.TxID{}, nil, ctx.Err()
			}
			if !errors.Is(err, ErrNoLeader) && !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, ErrStopped) {
				return ledger.TxID{}, nil, err
			}
		}
		select {
		case <-ctx.Done():
			return ledger.TxID{}, nil, ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// checkReceipt verifies a receipt as the documented algorithm does: leaf
// from its components (and the entry's LedgerEntryV1 claims), the proof
// to the root, the node certificate issued by the service certificate,
// the signature over the root.
func checkReceipt(t *testing.T, tr *ledger.TransactionReceipt, svc *x509.Certificate, e ledger.Record) {
	t.Helper()
	if err := verifyReceipt(tr, svc, e); err != nil {
		t.Fatal(err)
	}
}

func verifyReceipt(tr *ledger.TransactionReceipt, svc *x509.Certificate, e ledger.Record) error {
	r := tr.Receipt
	h32 := func(s string) ([32]byte, error) {
		b, err := hex.DecodeString(s)
		if err != nil || len(b) != 32 {
			return [32]byte{}, fmt.Errorf("receipt %s: %q is not a SHA-256", tr.TransactionID, s)
		}
		return [32]byte(b), nil
	}
	var lc ledger.LeafComponents
	var err error
	if lc.WriteSetDigest, err = h32(r.LeafComponents.WriteSetDigest); err != nil {
		return err
	}
	if lc.ClaimsDigest, err = h32(r.LeafComponents.ClaimsDigest); err != nil {
		return err
	}
	if len(tr.ApplicationClaims) != 1 || tr.ApplicationClaims[0].LedgerEntry == nil {
		return fmt.Errorf("receipt %s: no LedgerEntry claim", tr.TransactionID)
	}
	le := tr.ApplicationClaims[0].LedgerEntry
	if le.CollectionID != e.Collection || le.Contents != e.Contents {
		return fmt.Errorf("receipt %s: claims for %q/%q, entry is %q/%q", tr.TransactionID, le.CollectionID, le.Contents, e.Collection, e.Contents)
	}
	k, err := base64.StdEncoding.DecodeString(le.SecretKey)
	if err != nil {
		return err
	}
	if ledger.ClaimsDigest(ledger.LedgerEntryV1Digest(k, le.CollectionID, le.Contents)) != lc.ClaimsDigest {
		return fmt.Errorf("receipt %s: claims digest does not match the entry", tr.TransactionID)
	}
	lc.CommitEvidence = r.LeafComponents.CommitEvidence
	steps := make([]ledger.ProofStep, len(r.Proof))
	for i, p := range r.Proof {
		s := p.Right
		if p.Left != "" {
			s, steps[i].Left = p.Left, true
		}
		if steps[i].Hash, err = h32(s); err != nil {
			return err
		}
	}
	root := ledger.Walk(lc.Leaf(), steps)
	blk, _ := pem.Decode([]byte(r.Cert))
	if blk == nil {
		return errors.New("receipt: cert is not PEM")
	}
	node, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		return err
	}
	if err := node.CheckSignatureFrom(svc); err != nil {
		return fmt.Errorf("receipt %s: node certificate: %w", tr.TransactionID, err)
	}
	sig, err := base64.StdEncoding.DecodeString(r.Signature)
	pub, ok := node.PublicKey.(*ecdsa.PublicKey)
	if err != nil || !ok || !ecdsa.VerifyASN1(pub, root[:], sig) {
		return fmt.Errorf("receipt %s: signature over the root does not verify", tr.TransactionID)
	}
	return nil
}
