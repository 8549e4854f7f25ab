package seal

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
)

// errRefused is what memKeys returns for a request its identity may not
// have. Tests that expect seal's own checks assert that memKeys was never
// asked, so seal cannot lean on this.
var errRefused = errors.New("memkeys: refused")

// memKeys is a KeySource over one in-memory root secret, following the
// KeySource contract the way a simulator platform would: it refuses other
// measurements, other signers or products, and SVNs above its own, and
// derives with DeriveKey and one purpose per policy.
type memKeys struct {
	root []byte
	id   Identity // the platform's running identity

	mu   sync.Mutex
	reqs []KeyRequest
	last []byte // the slice handed out last, to check seal clears it
}

func newMemKeys(root []byte, id Identity) *memKeys {
	return &memKeys{root: root, id: id}
}

func (m *memKeys) SealKey(_ context.Context, req KeyRequest) ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.reqs = append(m.reqs, req)
	switch req.Policy {
	case PolicyEnclave:
		if !bytes.Equal(req.Measurement, m.id.Measurement) {
			return nil, fmt.Errorf("%w: measurement", errRefused)
		}
	case PolicySigner:
		if !bytes.Equal(req.Signer, m.id.Signer) || req.ProductID != m.id.ProductID {
			return nil, fmt.Errorf("%w: signer or product", errRefused)
		}
		if req.SVN > m.id.SVN {
			return nil, fmt.Errorf("%w: svn %d above %d", errRefused, req.SVN, m.id.SVN)
		}
	default:
		return nil, fmt.Errorf("%w: policy %d", errRefused, req.Policy)
	}
	k, err := DeriveKey(m.root, "test "+req.Policy.String(), req.Context())
	if err != nil {
		return nil, err
	}
	m.last = k
	return k, nil
}

// requests returns a copy of the requests seen so far.
func (m *memKeys) requests() []KeyRequest {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]KeyRequest(nil), m.reqs...)
}

// funcKeys adapts a function to KeySource, for error paths.
type funcKeys func(context.Context, KeyRequest) ([]byte, error)

func (f funcKeys) SealKey(ctx context.Context, req KeyRequest) ([]byte, error) { return f(ctx, req) }

// zeroReader yields zero bytes: a pinned nonce for golden tests.
type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) { clear(p); return len(p), nil }

// countReader yields 1, 2, 3, ...: a pinned nonce distinct from zero.
type countReader struct{ n byte }

func (c *countReader) Read(p []byte) (int, error) {
	for i := range p {
		c.n++
		p[i] = c.n
	}
	return len(p), nil
}

// Fixed test material. rootA and rootB stand for two platforms.
var (
	rootA = seq(0x00, 32)
	rootB = seq(0x80, 32)

	measA   = bytes.Repeat([]byte{0x11}, 32)
	measB   = bytes.Repeat([]byte{0x12}, 32)
	signerA = bytes.Repeat([]byte{0x22}, 32)
	signerB = bytes.Repeat([]byte{0x23}, 32)

	// idA is the enclave most tests seal as.
	idA = Identity{Measurement: measA, Signer: signerA, ProductID: 0x0102, SVN: 3}
)

// seq returns n bytes start, start+1, ...
func seq(start byte, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = start + byte(i)
	}
	return b
}

// sealerFor returns a Sealer for id on the platform with root.
func sealerFor(root []byte, id Identity) (Sealer, *memKeys) {
	ks := newMemKeys(root, id)
	return Sealer{Keys: ks, Identity: id}, ks
}

// with returns id with changes applied, leaving id untouched.
func with(id Identity, f func(*Identity)) Identity {
	id.Measurement = bytes.Clone(id.Measurement)
	id.Signer = bytes.Clone(id.Signer)
	f(&id)
	return id
}

// sentinels are every cause Open may report for bad input.
var sentinels = []error{ErrMalformed, ErrWrongIdentity, ErrSVNTooHigh, ErrAuth}

// isSentinel reports whether err wraps one of sentinels.
func isSentinel(err error) bool {
	for _, s := range sentinels {
		if errors.Is(err, s) {
			return true
		}
	}
	return false
}
