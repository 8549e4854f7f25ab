package attest

import (
	"context"
	"errors"
	"time"
)

// SharedState is where replicas of the service keep what they share:
// policies, policy signers, the published token keys and who is alive.
// Without it (Config.Shared nil) the service keeps today's embedded state
// (memory, or files under StateDir). attest/etcdstate implements it on
// etcd; the replication rules (fencing, acknowledgements, what a record
// must prove before it is used) live here, in replica.go, so that they do
// not depend on the engine.
//
// Keys are relative to the store's namespace. Revisions are the store's
// global, strictly increasing write counter (etcd's revision): every
// method that writes returns the revision of its write, and a snapshot
// says at which revision it was read, so a watch can resume exactly after
// it.
type SharedState interface {
	// Snapshot returns every record whose key starts with prefix, read at
	// one revision, which it returns too.
	Snapshot(ctx context.Context, prefix string) ([]Record, int64, error)
	// Put writes key. With ifModRev >= 0 the write happens only if the
	// key's last modification revision is ifModRev (0: the key is
	// absent), else it fails with ErrConflict.
	Put(ctx context.Context, key string, value []byte, ifModRev int64) (int64, error)
	// Delete removes key, with the same condition as Put. Deleting an
	// absent key unconditionally is not an error.
	Delete(ctx context.Context, key string, ifModRev int64) (int64, error)
	// Watch calls apply with every change under prefix after revision
	// after, one revision at a time and in revision order, until ctx ends
	// (it then returns ctx's error), apply returns an error (returned as
	// is), or the stream cannot continue (for instance the revision was
	// compacted: the caller resynchronises from a Snapshot).
	Watch(ctx context.Context, prefix string, after int64, apply func(rev int64, changes []Record) error) error
	// Grant starts a lease of at least ttl; PutLeased writes a key that
	// disappears when the lease ends.
	Grant(ctx context.Context, ttl time.Duration) (Lease, error)
	// PutLeased writes key bound to lease.
	PutLeased(ctx context.Context, lease Lease, key string, value []byte) (int64, error)
	// KeepAlive renews lease once and returns its new time to live,
	// counted from when the store received the renewal (so from no
	// earlier than the call). A lease that has ended fails with
	// ErrLeaseLost.
	KeepAlive(ctx context.Context, lease Lease) (time.Duration, error)
	// Revoke ends lease now, deleting its keys.
	Revoke(ctx context.Context, lease Lease) error
}

// Record is one key of the shared state, or (Deleted) its removal.
type Record struct {
	Key     string
	Value   []byte
	ModRev  int64 // revision of the key's last write
	Deleted bool
}

// Lease identifies a SharedState lease.
type Lease int64

// Errors a SharedState returns where callers branch.
var (
	// ErrConflict: a conditional Put or Delete found another revision.
	ErrConflict = errors.New("attest: shared state changed concurrently")
	// ErrLeaseLost: the lease has ended (expired or revoked).
	ErrLeaseLost = errors.New("attest: shared-state lease lost")
)
