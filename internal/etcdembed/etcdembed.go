// Package etcdembed starts a real etcd cluster inside this process, on
// loopback ports and in a temporary directory: the attestation service's
// replica tests and `cloister bench attest --replicas` use it instead of
// an etcd binary. It is etcd's own server (go.etcd.io/etcd/server/v3/embed),
// not a stand-in.
package etcdembed

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
)

// Cluster is a running embedded cluster.
type Cluster struct {
	dir     string
	members []*embed.Etcd
	clients []string
	mu      sync.Mutex
	stopped []bool
	closing sync.WaitGroup // members being closed after Stop
}

// Start starts an n-member cluster (1..7) in a temporary directory under
// dir ("" for the system's), with fast raft timers (50 ms heartbeat,
// 500 ms election: loopback is quick, and a failover test should not wait
// etcd's WAN defaults) and without fsync (the data dies with the cluster).
// It returns when every member is ready or ctx ends.
func Start(ctx context.Context, dir string, n int) (*Cluster, error) {
	if n < 1 || n > 7 {
		return nil, fmt.Errorf("etcdembed: %d members: want 1..7", n)
	}
	root, err := os.MkdirTemp(dir, "cloister-etcd-")
	if err != nil {
		return nil, fmt.Errorf("etcdembed: %w", err)
	}
	c := &Cluster{dir: root, stopped: make([]bool, n)}
	// Ports are found by listening on :0 and closing; another process may
	// take one before etcd binds it, which fails Start (not silently).
	peers, clients := make([]url.URL, n), make([]url.URL, n)
	var initial []string
	for i := range n {
		p, err := freePort()
		if err != nil {
			os.RemoveAll(root)
			return nil, err
		}
		q, err := freePort()
		if err != nil {
			os.RemoveAll(root)
			return nil, err
		}
		peers[i] = url.URL{Scheme: "http", Host: p}
		clients[i] = url.URL{Scheme: "http", Host: q}
		initial = append(initial, fmt.Sprintf("m%d=%s", i, peers[i].String()))
		c.clients = append(c.clients, clients[i].String())
	}
	for i := range n {
		cfg := embed.NewConfig()
		cfg.Name = fmt.Sprintf("m%d", i)
		cfg.Dir = filepath.Join(root, cfg.Name)
		cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{peers[i]}, []url.URL{peers[i]}
		cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{clients[i]}, []url.URL{clients[i]}
		cfg.InitialCluster = strings.Join(initial, ",")
		cfg.InitialClusterToken = "cloister-embedded"
		cfg.ClusterState = embed.ClusterStateFlagNew
		cfg.TickMs, cfg.ElectionMs = 50, 500
		cfg.UnsafeNoFsync = true
		cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
		e, err := embed.StartEtcd(cfg)
		if err != nil {
			c.Close()
			return nil, fmt.Errorf("etcdembed: member %d: %w", i, err)
		}
		c.members = append(c.members, e)
	}
	for i, e := range c.members {
		select {
		case <-e.Server.ReadyNotify():
		case err := <-e.Err():
			c.Close()
			return nil, fmt.Errorf("etcdembed: member %d: %w", i, err)
		case <-ctx.Done():
			c.Close()
			return nil, fmt.Errorf("etcdembed: waiting for member %d: %w", i, ctx.Err())
		}
	}
	return c, nil
}

func freePort() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("etcdembed: %w", err)
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// Endpoints are the members' client URLs.
func (c *Cluster) Endpoints() []string { return append([]string(nil), c.clients...) }

// Stop stops member i (as a crash looks to its peers: its connections
// close, it answers nothing more). Stopping a stopped member does nothing.
func (c *Cluster) Stop(i int) error {
	if i < 0 || i >= len(c.members) {
		return errors.New("etcdembed: no such member")
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.stopped[i] {
		c.stopped[i] = true
		// HardStop ends raft at once, without handing leadership over (a
		// graceful Close would first wait for client streams to drain and
		// transfer leadership, which is not what a crash does). The
		// listeners and streams are closed in the background; Close
		// waits for that.
		e := c.members[i]
		e.Server.HardStop()
		c.closing.Go(e.Close)
	}
	return nil
}

// Leader returns the index of the member that is the raft leader, as a
// running member sees it, or -1 when none is known.
func (c *Cluster) Leader() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, e := range c.members {
		if !c.stopped[i] {
			lead := e.Server.Lead()
			for j, m := range c.members {
				if uint64(m.Server.MemberID()) == lead {
					return j
				}
			}
		}
	}
	return -1
}

// Close stops every member and removes the data directory.
func (c *Cluster) Close() error {
	for i := range c.members {
		_ = c.Stop(i)
	}
	c.closing.Wait()
	return os.RemoveAll(c.dir)
}
