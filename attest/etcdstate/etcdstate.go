// Package etcdstate keeps the attestation service's shared state in etcd
// (attest.SharedState), so that several replicas of `cloister attest serve
// --etcd` share policies, policy signers and published token keys.
//
// etcd runs outside the TEE: what it may and may not do to the service is
// in DESIGN.md ("One machine first, many when needed"); the checks that
// hold against a hostile etcd are attest's (replica.go), not this
// package's, which only maps the interface onto etcd's client.
package etcdstate

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/cloister-dev/cloister/attest"
)

// DefaultPrefix is the namespace of the service's keys in etcd.
const DefaultPrefix = "/cloister/attest/"

// Options configures Open.
type Options struct {
	// Endpoints are the etcd members' client URLs. Required.
	Endpoints []string
	// TLS authenticates the members (RootCAs) and this client
	// (Certificates); nil speaks plain gRPC, for loopback tests only.
	TLS *tls.Config
	// Prefix is the namespace; empty means DefaultPrefix. Replicas of one
	// service share it; two services must not.
	Prefix string
	// DialTimeout bounds connecting; 0 means 5 s.
	DialTimeout time.Duration
}

// Store is an attest.SharedState on etcd.
type Store struct {
	c      *clientv3.Client
	prefix string
}

var _ attest.SharedState = (*Store)(nil)

// Open connects to etcd. The client retries and moves between endpoints
// by itself; Close releases it.
func Open(opts Options) (*Store, error) {
	if len(opts.Endpoints) == 0 {
		return nil, errors.New("etcdstate: no endpoints")
	}
	if opts.Prefix == "" {
		opts.Prefix = DefaultPrefix
	}
	if opts.DialTimeout <= 0 {
		opts.DialTimeout = 5 * time.Second
	}
	c, err := clientv3.New(clientv3.Config{
		Endpoints: opts.Endpoints, TLS: opts.TLS, DialTimeout: opts.DialTimeout,
		// The client's own logs would go to standard error unstructured;
		// failures reach the service through returned errors instead.
		Logger: zap.NewNop(),
		// Keep idle connections checked, so a dead member is noticed
		// between requests, not by the next one.
		DialKeepAliveTime: 2 * time.Second, DialKeepAliveTimeout: 2 * time.Second, PermitWithoutStream: true,
	})
	if err != nil {
		return nil, fmt.Errorf("etcdstate: %w", err)
	}
	return &Store{c: c, prefix: opts.Prefix}, nil
}

// Close closes the client. A lease it held is not revoked: it ends at its
// TTL, as if this process had died.
func (s *Store) Close() error { return s.c.Close() }

func (s *Store) rel(k []byte) string { return strings.TrimPrefix(string(k), s.prefix) }

// Snapshot implements attest.SharedState.
func (s *Store) Snapshot(ctx context.Context, prefix string) ([]attest.Record, int64, error) {
	resp, err := s.c.Get(ctx, s.prefix+prefix, clientv3.WithPrefix())
	if err != nil {
		return nil, 0, fmt.Errorf("etcdstate: get: %w", err)
	}
	out := make([]attest.Record, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		out = append(out, attest.Record{Key: s.rel(kv.Key), Value: kv.Value, ModRev: kv.ModRevision})
	}
	return out, resp.Header.Revision, nil
}

// txn runs op, conditionally on key's mod revision when ifModRev >= 0.
func (s *Store) txn(ctx context.Context, key string, ifModRev int64, op clientv3.Op) (int64, error) {
	t := s.c.Txn(ctx)
	if ifModRev >= 0 {
		t = t.If(clientv3.Compare(clientv3.ModRevision(s.prefix+key), "=", ifModRev))
	}
	resp, err := t.Then(op).Commit()
	if err != nil {
		return 0, fmt.Errorf("etcdstate: %s: %w", key, err)
	}
	if !resp.Succeeded {
		return 0, fmt.Errorf("etcdstate: %s: %w", key, attest.ErrConflict)
	}
	return resp.Header.Revision, nil
}

// Put implements attest.SharedState.
func (s *Store) Put(ctx context.Context, key string, value []byte, ifModRev int64) (int64, error) {
	return s.txn(ctx, key, ifModRev, clientv3.OpPut(s.prefix+key, string(value)))
}

// Delete implements attest.SharedState.
func (s *Store) Delete(ctx context.Context, key string, ifModRev int64) (int64, error) {
	return s.txn(ctx, key, ifModRev, clientv3.OpDelete(s.prefix+key))
}

// Watch implements attest.SharedState. The watch requires a leader: on a
// member cut off from the others it ends instead of going silent, and the
// caller resynchronises through another member.
func (s *Store) Watch(ctx context.Context, prefix string, after int64, apply func(int64, []attest.Record) error) error {
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	ch := s.c.Watch(wctx, s.prefix+prefix, clientv3.WithPrefix(), clientv3.WithRev(after+1))
	for resp := range ch {
		if err := resp.Err(); err != nil {
			return fmt.Errorf("etcdstate: watch: %w", err)
		}
		// One response may span several revisions: apply them one by one.
		for i := 0; i < len(resp.Events); {
			rev := resp.Events[i].Kv.ModRevision
			var batch []attest.Record
			for ; i < len(resp.Events) && resp.Events[i].Kv.ModRevision == rev; i++ {
				ev := resp.Events[i]
				batch = append(batch, attest.Record{Key: s.rel(ev.Kv.Key), Value: ev.Kv.Value, ModRev: rev,
					Deleted: ev.Type == mvccpb.DELETE})
			}
			if err := apply(rev, batch); err != nil {
				return err
			}
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return errors.New("etcdstate: watch closed")
}

// Grant implements attest.SharedState (etcd leases count whole seconds).
func (s *Store) Grant(ctx context.Context, ttl time.Duration) (attest.Lease, error) {
	resp, err := s.c.Grant(ctx, int64((ttl+time.Second-1)/time.Second))
	if err != nil {
		return 0, fmt.Errorf("etcdstate: grant: %w", err)
	}
	return attest.Lease(resp.ID), nil
}

// PutLeased implements attest.SharedState.
func (s *Store) PutLeased(ctx context.Context, lease attest.Lease, key string, value []byte) (int64, error) {
	resp, err := s.c.Put(ctx, s.prefix+key, string(value), clientv3.WithLease(clientv3.LeaseID(lease)))
	if errors.Is(err, rpctypes.ErrLeaseNotFound) {
		return 0, fmt.Errorf("etcdstate: %s: %w", key, attest.ErrLeaseLost)
	}
	if err != nil {
		return 0, fmt.Errorf("etcdstate: %s: %w", key, err)
	}
	return resp.Header.Revision, nil
}

// KeepAlive implements attest.SharedState.
func (s *Store) KeepAlive(ctx context.Context, lease attest.Lease) (time.Duration, error) {
	resp, err := s.c.KeepAliveOnce(ctx, clientv3.LeaseID(lease))
	if errors.Is(err, rpctypes.ErrLeaseNotFound) {
		return 0, fmt.Errorf("etcdstate: keepalive: %w", attest.ErrLeaseLost)
	}
	if err != nil {
		return 0, fmt.Errorf("etcdstate: keepalive: %w", err)
	}
	if resp.TTL <= 0 {
		return 0, fmt.Errorf("etcdstate: keepalive: %w", attest.ErrLeaseLost)
	}
	return time.Duration(resp.TTL) * time.Second, nil
}

// Revoke implements attest.SharedState.
func (s *Store) Revoke(ctx context.Context, lease attest.Lease) error {
	if _, err := s.c.Revoke(ctx, clientv3.LeaseID(lease)); err != nil && !errors.Is(err, rpctypes.ErrLeaseNotFound) {
		return fmt.Errorf("etcdstate: revoke: %w", err)
	}
	return nil
}
