package ledger

import (
	"bytes"
	"context"
	"crypto/cipher"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/x509"
	"encoding/binary"
	"fmt"
	"io"
	"slices"

	"github.com/cloister-dev/cloister/kv"
	"github.com/cloister-dev/cloister/seal"
)

// keysKey is the host key of the sealed key record.
const keysKey = "ledger/keys"

// Storage keeps the ledger's transactions on the host in sealed,
// hash-chained, append-only segments (segment.go), one host record per
// group commit, plus one record sealed to the enclave (seal.PolicyEnclave)
// that holds the keys. Why segments and not kv/: a group commit of
// thousands of entries is one AES-GCM pass and one host write, where kv/
// would seal and index every entry as its own record (DESIGN.md, Ledger).
//
// What it detects at open: a torn or edited segment, one stored at another
// position, a dropped middle segment, a segment from another history. What
// a single node cannot detect is the host dropping the newest segments
// whole (a rollback of the tail): that needs a trusted counter outside the
// host or replication (issue 19). Not safe for concurrent use.
type Storage struct {
	b    kv.Backend
	aead cipher.AEAD
	rnd  io.Reader
	next uint64   // number of the next segment
	prev [32]byte // chain digest of the last segment
}

// StorageOptions configure OpenStorage.
type StorageOptions struct {
	// Backend is the host storage; required.
	Backend kv.Backend
	// Sealer seals the key record to the enclave; required.
	Sealer seal.Sealer
	// Rand is the source of keys and nonces; nil means crypto/rand.
	Rand io.Reader
	// NewIdentity makes the identity of a new ledger (called once, when
	// the host holds nothing); required.
	NewIdentity func() (*Identity, error)
}

// Opened is what OpenStorage found: the keys, and every stored
// transaction in order (to Apply to a Core).
type Opened struct {
	Identity *Identity
	View     uint64
	Secret   []byte
	Records  []Record
	Created  bool
}

// keys is the sealed key record's plaintext.
type keys struct {
	storage [32]byte
	secret  [32]byte
	view    uint64
	id      *Identity
}

// OpenStorage reads (or creates) the ledger on the host.
func OpenStorage(ctx context.Context, o StorageOptions) (*Storage, *Opened, error) {
	if o.Backend == nil || o.NewIdentity == nil || o.Sealer.Keys == nil {
		return nil, nil, fmt.Errorf("ledger: storage: Backend, Sealer and NewIdentity are required")
	}
	if o.Rand == nil {
		o.Rand = rand.Reader
	}
	segKeys, err := o.Backend.List(ctx, []byte(segPrefix))
	if err != nil {
		return nil, nil, fmt.Errorf("ledger: storage: listing segments: %w", err)
	}
	blob, ok, err := o.Backend.Get(ctx, []byte(keysKey))
	if err != nil {
		return nil, nil, fmt.Errorf("ledger: storage: reading keys: %w", err)
	}
	var k *keys
	created := false
	switch {
	case !ok && len(segKeys) > 0:
		return nil, nil, fmt.Errorf("%w: %d segments but no key record (deleted by the host)", ErrKeys, len(segKeys))
	case !ok:
		if k, err = newKeys(ctx, o); err != nil {
			return nil, nil, err
		}
		created = true
	default:
		pt, err := o.Sealer.Open(ctx, seal.PolicyEnclave, []byte(keysKey), blob)
		if err != nil {
			return nil, nil, fmt.Errorf("%w: %w", ErrKeys, err)
		}
		if k, err = decodeKeys(pt); err != nil {
			return nil, nil, fmt.Errorf("%w: %w", ErrKeys, err)
		}
	}
	aead, err := newAEAD(k.storage[:])
	if err != nil {
		return nil, nil, err
	}
	s := &Storage{b: o.Backend, aead: aead, rnd: o.Rand}
	recs, err := s.replay(ctx, segKeys)
	if err != nil {
		return nil, nil, err
	}
	return s, &Opened{Identity: k.id, View: k.view, Secret: bytes.Clone(k.secret[:]), Records: recs, Created: created}, nil
}

// firstView is the view of a new ledger: ACL's ids start in view 2.
const firstView = 2

func newKeys(ctx context.Context, o StorageOptions) (*keys, error) {
	id, err := o.NewIdentity()
	if err != nil {
		return nil, err
	}
	k := &keys{view: firstView, id: id}
	if _, err := io.ReadFull(o.Rand, k.storage[:]); err != nil {
		return nil, fmt.Errorf("ledger: storage: key: %w", err)
	}
	if _, err := io.ReadFull(o.Rand, k.secret[:]); err != nil {
		return nil, fmt.Errorf("ledger: storage: secret: %w", err)
	}
	pt, err := encodeKeys(k)
	if err != nil {
		return nil, err
	}
	blob, err := o.Sealer.Seal(ctx, seal.PolicyEnclave, []byte(keysKey), pt)
	clear(pt)
	if err != nil {
		return nil, fmt.Errorf("ledger: storage: sealing keys: %w", err)
	}
	if err := o.Backend.Commit(ctx, []kv.Op{{Key: []byte(keysKey), Value: blob}}); err != nil {
		return nil, fmt.Errorf("ledger: storage: writing keys: %w", err)
	}
	return k, nil
}

func encodeKeys(k *keys) ([]byte, error) {
	skey, err := x509.MarshalPKCS8PrivateKey(k.id.ServiceKey)
	if err != nil {
		return nil, fmt.Errorf("ledger: storage: %w", err)
	}
	nkey, err := x509.MarshalPKCS8PrivateKey(k.id.NodeKey)
	if err != nil {
		return nil, fmt.Errorf("ledger: storage: %w", err)
	}
	b := []byte("CLK1")
	b = append(b, k.storage[:]...)
	b = append(b, k.secret[:]...)
	b = binary.BigEndian.AppendUint64(b, k.view)
	for _, f := range [][]byte{skey, nkey, k.id.ServiceCert.Raw, k.id.NodeCert.Raw} {
		b = binary.BigEndian.AppendUint32(b, uint32(len(f)))
		b = append(b, f...)
	}
	return b, nil
}

func decodeKeys(pt []byte) (*keys, error) {
	r := &reader{b: pt}
	magic, ok := r.bytes(4)
	if !ok || string(magic) != "CLK1" {
		return nil, fmt.Errorf("not a key record")
	}
	k := &keys{}
	st, ok1 := r.bytes(32)
	sec, ok2 := r.bytes(32)
	if !ok1 || !ok2 || !r.u64(&k.view) {
		return nil, fmt.Errorf("key record truncated")
	}
	k.storage, k.secret = [32]byte(st), [32]byte(sec)
	var f [4][]byte
	for i := range f {
		var n uint32
		if !r.u32(&n) {
			return nil, fmt.Errorf("key record truncated")
		}
		if f[i], ok = r.bytes(int(n)); !ok {
			return nil, fmt.Errorf("key record truncated")
		}
	}
	if !r.empty() {
		return nil, fmt.Errorf("key record has trailing bytes")
	}
	id := &Identity{}
	var err error
	if id.ServiceKey, err = ecKey(f[0]); err != nil {
		return nil, err
	}
	if id.NodeKey, err = ecKey(f[1]); err != nil {
		return nil, err
	}
	if id.ServiceCert, err = x509.ParseCertificate(f[2]); err != nil {
		return nil, err
	}
	if id.NodeCert, err = x509.ParseCertificate(f[3]); err != nil {
		return nil, err
	}
	k.id = id
	return k, nil
}

func ecKey(der []byte) (*ecdsa.PrivateKey, error) {
	k, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, err
	}
	ek, ok := k.(*ecdsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("key record: not an ECDSA key")
	}
	return ek, nil
}

// replay reads every segment in order, checking positions, the chain and
// the seqnos.
func (s *Storage) replay(ctx context.Context, segKeys [][]byte) ([]Record, error) {
	nums := make([]uint64, 0, len(segKeys))
	for _, k := range segKeys {
		if len(k) != len(segPrefix)+8 {
			return nil, fmt.Errorf("%w: host key %q is not a segment key", ErrSegmentTorn, k)
		}
		nums = append(nums, binary.BigEndian.Uint64(k[len(segPrefix):]))
	}
	slices.Sort(nums)
	var recs []Record
	for i, n := range nums {
		if n != uint64(i) {
			return nil, fmt.Errorf("%w: segment %d (found segment %d after %d)", ErrSegmentGap, i, n, i)
		}
		v, ok, err := s.b.Get(ctx, SegmentKey(n))
		if err != nil {
			return nil, fmt.Errorf("ledger: storage: reading segment %d: %w", n, err)
		}
		if !ok {
			return nil, fmt.Errorf("%w: segment %d listed but not readable", ErrSegmentGap, n)
		}
		seg, err := decodeSegment(s.aead, n, v)
		if err != nil {
			return nil, err
		}
		if seg.prev != s.prev {
			return nil, fmt.Errorf("%w: segment %d does not follow segment %d", ErrSegmentChain, n, int64(n)-1)
		}
		if want := uint64(len(recs)) + 1; seg.records[0].Seqno != want {
			return nil, fmt.Errorf("%w: segment %d starts at seqno %d, want %d", ErrSegmentFormat, n, seg.records[0].Seqno, want)
		}
		recs = append(recs, seg.records...)
		s.prev = chainDigest(v)
		s.next = n + 1
	}
	return recs, nil
}

// Append writes recs as the next segment, durably (one Backend.Commit).
// On an error the segment may or may not have been stored: the caller
// must stop using this Storage and reopen (Node fails closed).
func (s *Storage) Append(ctx context.Context, recs []Record) error {
	v, err := encodeSegment(s.aead, s.rnd, s.next, s.prev, recs)
	if err != nil {
		return err
	}
	if err := s.b.Commit(ctx, []kv.Op{{Key: SegmentKey(s.next), Value: v}}); err != nil {
		return fmt.Errorf("ledger: storage: writing segment %d: %w", s.next, err)
	}
	s.prev = chainDigest(v)
	s.next++
	return nil
}

// Segments is the number of segments written.
func (s *Storage) Segments() uint64 { return s.next }
