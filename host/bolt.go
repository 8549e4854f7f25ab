package host

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/cloister-dev/cloister/boundary"
)

// boltBucket is the one bucket holding the records.
var boltBucket = []byte("records")

// BoltStore is a Store in a bbolt file: one bucket, keys as given, each
// Put a committed (fsynced) transaction.
type BoltStore struct {
	db *bolt.DB
}

// OpenBoltStore opens (creating it and its directory if needed) the bbolt
// file at path. bbolt locks the file, so a second cloister run on the same
// file fails here after a second instead of corrupting it.
func OpenBoltStore(path string) (*BoltStore, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("host: storage: %w", err)
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		return nil, fmt.Errorf("host: storage: open %s: %w", path, err)
	}
	if err := db.Update(func(tx *bolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(boltBucket)
		return err
	}); err != nil {
		db.Close()
		return nil, fmt.Errorf("host: storage: %s: %w", path, err)
	}
	return &BoltStore{db: db}, nil
}

// Get implements Store.
func (s *BoltStore) Get(ctx context.Context, key []byte) ([]byte, error) {
	var v []byte
	err := s.db.View(func(tx *bolt.Tx) error {
		// bbolt's slices live only as long as the transaction: copy.
		if b := tx.Bucket(boltBucket).Get(key); b != nil {
			v = bytes.Clone(b)
			if v == nil {
				v = []byte{}
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("host: storage: get: %w", err)
	}
	if v == nil {
		return nil, ErrNotFound
	}
	return v, nil
}

// Put implements Store.
func (s *BoltStore) Put(ctx context.Context, key, record []byte) error {
	if err := checkKey(key); err != nil {
		return err
	}
	if err := s.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(boltBucket).Put(key, record) }); err != nil {
		return fmt.Errorf("host: storage: put: %w", err)
	}
	return nil
}

// Delete implements Store.
func (s *BoltStore) Delete(ctx context.Context, key []byte) error {
	if len(key) == 0 {
		return nil
	}
	if err := s.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(boltBucket).Delete(key) }); err != nil {
		return fmt.Errorf("host: storage: delete: %w", err)
	}
	return nil
}

// CommitBatch implements Store: all ops in one bbolt transaction, so
// all-or-nothing after a crash, durable when it returns (bbolt syncs the
// data pages, then the meta page that makes them current).
func (s *BoltStore) CommitBatch(ctx context.Context, ops []BatchOp) error {
	if err := checkBatch(ops); err != nil {
		return err
	}
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(boltBucket)
		for _, op := range ops {
			var err error
			if op.Delete {
				err = b.Delete(op.Key)
			} else {
				err = b.Put(op.Key, op.Value)
			}
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("host: storage: commit: %w", err)
	}
	return nil
}

// Keys implements Store. fn runs inside a read transaction, so it must not
// call Put or Delete on the same store (bbolt would deadlock).
func (s *BoltStore) Keys(ctx context.Context, prefix, after []byte, fn func(key []byte) bool) error {
	err := s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(boltBucket).Cursor()
		k, _ := c.Seek(prefix)
		if bytes.Compare(after, prefix) >= 0 {
			if k, _ = c.Seek(after); k != nil && bytes.Equal(k, after) {
				k, _ = c.Next()
			}
		}
		for ; k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
			if err := ctx.Err(); err != nil {
				return err
			}
			if !fn(k) {
				break
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("host: storage: list: %w", err)
	}
	return nil
}

// Close implements Store.
func (s *BoltStore) Close() error {
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("host: storage: close: %w", err)
	}
	return nil
}

// checkKey enforces the key bounds every Store shares.
func checkKey(key []byte) error {
	if len(key) == 0 || len(key) > boundary.MaxStorageKey {
		return errors.New("host: storage: key must be 1 to " + fmt.Sprint(boundary.MaxStorageKey) + " bytes")
	}
	return nil
}
