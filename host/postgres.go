package host

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/cloister-dev/cloister/boundary"
)

// pgTable is the one table holding the records. bytea compares bytewise
// (memcmp, then length), so its primary-key order is the order Keys needs.
const pgTable = "cloister_records"

const (
	// pgMaxConns bounds the connections one PostgresStore holds open.
	pgMaxConns = 8
	// pgKeysPage bounds the keys Keys reads per query: it holds no
	// connection while fn runs, so fn may call the store.
	pgKeysPage = 1000
	// pgRetries bounds how often CommitBatch retries a transaction the
	// server rolled back as a deadlock or serialization failure (then
	// nothing of it was applied, so a retry is safe).
	pgRetries = 5
	// pgOpenTimeout bounds connecting and creating the table when the
	// caller's context has no deadline.
	pgOpenTimeout = 30 * time.Second
)

var _ Store = (*PostgresStore)(nil)

// PostgresStore is a Store in one PostgreSQL table (key bytea primary key,
// value bytea), through a pool of pgx connections. Each Put, Delete and
// CommitBatch is one committed transaction, durable as the server's
// configuration makes it (synchronous_commit on, the default, waits for the
// WAL flush). It lets several hosts share one store for scale-out; the
// enclave still detects anything the database or its operator changes.
type PostgresStore struct {
	pool *pgxpool.Pool
}

// OpenPostgresStore connects to the database at dsn (a PostgreSQL URL or
// key=value string, as pgx accepts) and creates the records table if it
// is missing.
func OpenPostgresStore(ctx context.Context, dsn string) (*PostgresStore, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("host: storage: postgres: %w", err)
	}
	if cfg.MaxConns > pgMaxConns {
		cfg.MaxConns = pgMaxConns
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, pgOpenTimeout)
		defer cancel()
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("host: storage: postgres: %w", err)
	}
	_, err = pool.Exec(ctx, `CREATE TABLE IF NOT EXISTS `+pgTable+` (key bytea PRIMARY KEY, value bytea NOT NULL)`)
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "23505" {
		// Two hosts created the table at once; the other one won.
		err = nil
	}
	if err != nil {
		pool.Close()
		return nil, fmt.Errorf("host: storage: postgres: create table: %w", err)
	}
	return &PostgresStore{pool: pool}, nil
}

// Get implements Store.
func (s *PostgresStore) Get(ctx context.Context, key []byte) ([]byte, error) {
	if len(key) == 0 || len(key) > boundary.MaxStorageKey {
		return nil, ErrNotFound
	}
	var v []byte
	err := s.pool.QueryRow(ctx, `SELECT value FROM `+pgTable+` WHERE key = $1`, key).Scan(&v)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("host: storage: get: %w", err)
	}
	if v == nil {
		v = []byte{}
	}
	return v, nil
}

// Put implements Store.
func (s *PostgresStore) Put(ctx context.Context, key, record []byte) error {
	if err := checkKey(key); err != nil {
		return err
	}
	if _, err := s.pool.Exec(ctx, pgUpsert, key, nonNil(record)); err != nil {
		return fmt.Errorf("host: storage: put: %w", err)
	}
	return nil
}

// Delete implements Store.
func (s *PostgresStore) Delete(ctx context.Context, key []byte) error {
	if len(key) == 0 || len(key) > boundary.MaxStorageKey {
		return nil // no such record can exist
	}
	if _, err := s.pool.Exec(ctx, pgDelete, key); err != nil {
		return fmt.Errorf("host: storage: delete: %w", err)
	}
	return nil
}

const (
	pgUpsert = `INSERT INTO ` + pgTable + ` (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value`
	pgDelete = `DELETE FROM ` + pgTable + ` WHERE key = $1`
)

// CommitBatch implements Store: all ops in one transaction, sent as one
// pipelined batch, so one WAL flush at COMMIT and all-or-nothing after a
// crash. A later op on the same key wins, as if ops ran in order.
func (s *PostgresStore) CommitBatch(ctx context.Context, ops []BatchOp) error {
	if err := checkBatch(ops); err != nil {
		return err
	}
	if len(ops) == 0 {
		return nil
	}
	// Only the last op on each key has an effect; applying those in key
	// order gives the same result and takes row locks in one global
	// order, so concurrent batches do not deadlock.
	last := make(map[string]int, len(ops))
	for i, op := range ops {
		last[string(op.Key)] = i
	}
	order := make([]int, 0, len(last))
	for _, i := range last {
		order = append(order, i)
	}
	slices.SortFunc(order, func(a, b int) int { return bytes.Compare(ops[a].Key, ops[b].Key) })
	var err error
	for range pgRetries {
		err = pgx.BeginTxFunc(ctx, s.pool, pgx.TxOptions{IsoLevel: pgx.ReadCommitted}, func(tx pgx.Tx) error {
			b := &pgx.Batch{}
			for _, i := range order {
				if op := ops[i]; op.Delete {
					b.Queue(pgDelete, op.Key)
				} else {
					b.Queue(pgUpsert, op.Key, nonNil(op.Value))
				}
			}
			return tx.SendBatch(ctx, b).Close()
		})
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || (pgErr.Code != "40001" && pgErr.Code != "40P01") {
			break
		}
	}
	if err != nil {
		return fmt.Errorf("host: storage: commit: %w", err)
	}
	return nil
}

// Keys implements Store. It reads pgKeysPage keys per query and calls fn
// with no connection held, so fn may call the store; each page is its own
// snapshot, as with a store other hosts write to at the same time.
func (s *PostgresStore) Keys(ctx context.Context, prefix, after []byte, fn func(key []byte) bool) error {
	// key >= prefix AND key < end covers exactly the keys with prefix;
	// end is nil when no key sorts after all of them (prefix empty or all
	// 0xff).
	end := prefixEnd(prefix)
	from := prefix
	inclusive := true
	if bytes.Compare(after, prefix) >= 0 {
		from, inclusive = after, false
	}
	for {
		keys, err := s.keysPage(ctx, from, inclusive, end)
		if err != nil {
			return fmt.Errorf("host: storage: list: %w", err)
		}
		for _, k := range keys {
			if err := ctx.Err(); err != nil {
				return err
			}
			if !fn(k) {
				return nil
			}
		}
		if len(keys) < pgKeysPage {
			return nil
		}
		from, inclusive = keys[len(keys)-1], false
	}
}

// keysPage returns up to pgKeysPage keys from from (inclusive or not) to
// end (exclusive; nil means no bound), in order.
func (s *PostgresStore) keysPage(ctx context.Context, from []byte, inclusive bool, end []byte) ([][]byte, error) {
	op := ">"
	if inclusive {
		op = ">="
	}
	q := `SELECT key FROM ` + pgTable + ` WHERE key ` + op + ` $1`
	args := []any{nonNil(from)}
	if end != nil {
		q += ` AND key < $2`
		args = append(args, end)
	}
	q += fmt.Sprintf(` ORDER BY key LIMIT %d`, pgKeysPage)
	rows, err := s.pool.Query(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	var keys [][]byte
	for rows.Next() {
		var k []byte
		if err := rows.Scan(&k); err != nil {
			rows.Close()
			return nil, err
		}
		keys = append(keys, k)
	}
	rows.Close()
	return keys, rows.Err()
}

// prefixEnd returns the least key greater than every key starting with
// prefix, or nil if there is none.
func prefixEnd(prefix []byte) []byte {
	end := bytes.Clone(prefix)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] < 0xff {
			end[i]++
			return end[:i+1]
		}
	}
	return nil
}

// nonNil maps nil to an empty slice: pgx sends a nil []byte as NULL.
func nonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

// Close implements Store. It waits for queries in flight to finish.
func (s *PostgresStore) Close() error {
	s.pool.Close()
	return nil
}
