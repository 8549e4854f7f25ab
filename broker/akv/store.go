package akv

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/cloister-dev/cloister/kv"
)

// ErrKeyNotFound means the vault has no key of that name (or version).
var ErrKeyNotFound = errors.New("akv: key not found")

// Records in the broker's sealed kv store (kv seals every value and keeps
// names in its sealed index, so the host sees neither key material nor
// key names):
//
//	akv/key/NAME/VERSION  one keyRecord (JSON)
//	akv/latest/NAME       the VERSION of NAME's newest version
const (
	recKeyPrefix    = "akv/key/"
	recLatestPrefix = "akv/latest/"
)

// keyRecord is one version of a key as stored.
type keyRecord struct {
	Name       string            `json:"name"`
	Version    string            `json:"version"`
	Kty        string            `json:"kty"`
	Crv        string            `json:"crv,omitempty"`
	Size       int               `json:"size,omitempty"`
	KeyOps     []string          `json:"key_ops"`
	Private    []byte            `json:"private"` // PKCS#8 DER, or the oct key
	Enabled    bool              `json:"enabled"`
	NotBefore  *int64            `json:"nbf,omitempty"`
	Expires    *int64            `json:"exp,omitempty"`
	Created    int64             `json:"created"`
	Updated    int64             `json:"updated"`
	Exportable bool              `json:"exportable"`
	Tags       map[string]string `json:"tags,omitempty"`
	Policy     *policyRecord     `json:"policy,omitempty"`
}

// policyRecord is a key's release policy as the client sent it: the
// document bytes are kept exactly, so getKey returns what was set.
type policyRecord struct {
	ContentType string `json:"content_type"`
	Immutable   bool   `json:"immutable"`
	Data        []byte `json:"data"`
}

func (r *keyRecord) id(vaultURL string) string {
	return vaultURL + "/keys/" + r.Name + "/" + r.Version
}

// putVersion stores rec as its name's newest version, in one commit.
func putVersion(ctx context.Context, s *kv.Store, rec *keyRecord) error {
	b, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("akv: encoding key %s: %w", rec.Name, err)
	}
	defer clear(b)
	return s.Update(ctx, func(tx *kv.Tx) error {
		if err := tx.Put(recKeyPrefix+rec.Name+"/"+rec.Version, b); err != nil {
			return err
		}
		return tx.Put(recLatestPrefix+rec.Name, []byte(rec.Version))
	})
}

// getVersion loads NAME's VERSION, or its newest version when version is "".
func getVersion(ctx context.Context, s *kv.Store, name, version string) (*keyRecord, error) {
	if version == "" {
		v, err := s.Get(ctx, recLatestPrefix+name)
		if errors.Is(err, kv.ErrNotFound) {
			return nil, fmt.Errorf("%w: %s", ErrKeyNotFound, name)
		}
		if err != nil {
			return nil, fmt.Errorf("akv: reading key %s: %w", name, err)
		}
		version = string(v)
	}
	b, err := s.Get(ctx, recKeyPrefix+name+"/"+version)
	if errors.Is(err, kv.ErrNotFound) {
		return nil, fmt.Errorf("%w: %s version %s", ErrKeyNotFound, name, version)
	}
	if err != nil {
		return nil, fmt.Errorf("akv: reading key %s: %w", name, err)
	}
	defer clear(b)
	var rec keyRecord
	if err := json.Unmarshal(b, &rec); err != nil {
		return nil, fmt.Errorf("akv: stored key %s: %w", name, err)
	}
	if rec.Name != name || rec.Version != version {
		// kv binds each value to its name; a record naming another key
		// would be a bug, never a host attack.
		return nil, fmt.Errorf("akv: stored key %s/%s names %s/%s", name, version, rec.Name, rec.Version)
	}
	return &rec, nil
}
