package kv

import (
	"bytes"
	"context"
	"sync"

	"github.com/cloister-dev/cloister/seal"
)

// cachedKeys remembers the key material the platform hands out, per
// request. Every record Seal and Open asks for a key; on the simulator that
// is a host call, and on hardware an EGETKEY, per record. The material
// stays in enclave memory for the Store's life, as the platform's own key
// does; each caller still gets a fresh copy, because seal clears what it
// is given. Failures are not cached.
type cachedKeys struct {
	inner seal.KeySource
	mu    sync.Mutex
	m     map[string][]byte
}

// SealKey implements seal.KeySource.
func (c *cachedKeys) SealKey(ctx context.Context, req seal.KeyRequest) ([]byte, error) {
	id := string(append([]byte{byte(req.Policy)}, req.Context()...))
	c.mu.Lock()
	k, ok := c.m[id]
	c.mu.Unlock()
	if ok {
		return bytes.Clone(k), nil
	}
	k, err := c.inner.SealKey(ctx, req)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	c.m[id] = bytes.Clone(k)
	c.mu.Unlock()
	return k, nil
}
