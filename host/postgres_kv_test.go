package host_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/cloister-dev/cloister/host"
	"github.com/cloister-dev/cloister/kv"
	"github.com/cloister-dev/cloister/kv/kvtest"
)

// The kv store over a real PostgreSQL server (host.StartTestPostgres skips
// where there is none): crashes at the host's commit points with a host
// restart after each, and attacks made with SQL on the table itself.

var kvRoot = bytes.Repeat([]byte{7}, 32)

// pgRecords is the table host.PostgresStore keeps its records in.
const pgRecords = "cloister_records"

func pgExec(t *testing.T, dsn string, sql ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	for _, q := range sql {
		if _, err := conn.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
}

func TestKVOverPostgresCrashWithHostRestart(t *testing.T) {
	newDB := host.StartTestPostgres(t)
	dsn := newDB(t)
	ctx := context.Background()
	ctr := &kvtest.Counter{} // persistent across the host restarts
	var acked []string
	restart := func() (*host.PostgresStore, *kvtest.Faulty, *kv.Store) {
		t.Helper()
		ps, err := host.OpenPostgresStore(ctx, dsn)
		if err != nil {
			t.Fatal(err)
		}
		f := &kvtest.Faulty{Backend: kvtest.HostBackend(ps)}
		s, err := kv.Open(ctx, f, "s", kv.Options{Sealer: kvtest.Sealer(kvRoot, 0xA1, 0x51, 2), Counter: ctr, Create: true})
		if err != nil {
			t.Fatalf("open after restart: %v (false alarm)", err)
		}
		for _, k := range acked {
			if got, err := s.Get(ctx, k); err != nil || string(got) != "v" {
				t.Fatalf("acknowledged %s after restart: %q, %v", k, got, err)
			}
		}
		return ps, f, s
	}
	ps, f, s := restart()
	// 300 keys with 64-byte names: an index of about ten leaves under a
	// root, so the Update below, touching three of them, is a multi-page
	// commit.
	name := func(i int) string { return fmt.Sprintf("%064d", i) }
	for n := 0; n < 300; n += 25 {
		if err := s.Update(ctx, func(tx *kv.Tx) error {
			for i := n; i < n+25; i++ {
				tx.Put(name(i), []byte("p"))
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	spread := []int{10, 150, 290}
	// Each commit swaps the counter (prepare), writes to PostgreSQL, swaps
	// it again (commit): a crash before or after each of the three.
	points := []struct {
		host, counter kvtest.Fault
		skip          int  // counter swaps to let through first
		applied       bool // the Update is there after the restart
	}{
		{counter: kvtest.FaultDropBefore},
		{counter: kvtest.FaultDropAfter},
		{host: kvtest.FaultDropBefore},
		{host: kvtest.FaultDropAfter, applied: true},
		{counter: kvtest.FaultDropBefore, skip: 1, applied: true},
		{counter: kvtest.FaultDropAfter, skip: 1, applied: true},
	}
	for round, p := range points {
		k := fmt.Sprint("acked", round)
		if err := s.Put(ctx, k, []byte("v")); err != nil {
			t.Fatal(err)
		}
		acked = append(acked, k)
		if p.host != kvtest.FaultNone {
			f.FailNext(p.host)
		} else {
			ctr.FailLater(p.skip, p.counter)
		}
		ka, kb := fmt.Sprint("a", round), fmt.Sprint("b", round)
		err := s.Update(ctx, func(tx *kv.Tx) error {
			tx.Put(ka, []byte("1"))
			for _, i := range spread {
				tx.Put(name(i), []byte(fmt.Sprint(round)))
			}
			return tx.Put(kb, []byte("1"))
		})
		if !errors.Is(err, kv.ErrCommitUnknown) {
			t.Fatalf("round %d: Update = %v, want ErrCommitUnknown", round, err)
		}
		if err := ps.Close(); err != nil {
			t.Fatal(err)
		}
		ps, f, s = restart()
		_, errA := s.Get(ctx, ka)
		_, errB := s.Get(ctx, kb)
		if (errA == nil) != (errB == nil) {
			t.Fatalf("round %d: half a commit: %v, %v", round, errA, errB)
		}
		if (errA == nil) != p.applied {
			t.Fatalf("round %d: commit applied = %v, want %v", round, errA == nil, p.applied)
		}
		for _, i := range spread {
			if v, err := s.Get(ctx, name(i)); err != nil || (string(v) == fmt.Sprint(round)) != p.applied {
				t.Fatalf("round %d: half a commit: key %d = %q, %v", round, i, v, err)
			}
		}
	}
	ps.Close()
}

func TestKVOverPostgresAttacks(t *testing.T) {
	newDB := host.StartTestPostgres(t)
	ctx := context.Background()
	sealer := kvtest.Sealer(kvRoot, 0xA1, 0x51, 2)

	t.Run("rollback of the whole table", func(t *testing.T) {
		dsn := newDB(t)
		ps, err := host.OpenPostgresStore(ctx, dsn)
		if err != nil {
			t.Fatal(err)
		}
		defer ps.Close()
		b := kvtest.HostBackend(ps)
		ctr := kv.NewMemCounter(kv.Count{})
		s, err := kv.Open(ctx, b, "s", kv.Options{Sealer: sealer, Counter: ctr, Create: true})
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range []string{"a", "b"} {
			if err := s.Put(ctx, k, []byte("1")); err != nil {
				t.Fatal(err)
			}
		}
		pgExec(t, dsn, "CREATE TABLE snap AS SELECT * FROM "+pgRecords)
		if err := s.Put(ctx, "a", []byte("2")); err != nil {
			t.Fatal(err)
		}
		if err := s.Put(ctx, "c", []byte("2")); err != nil {
			t.Fatal(err)
		}
		pgExec(t, dsn, "BEGIN", "DELETE FROM "+pgRecords, "INSERT INTO "+pgRecords+" SELECT * FROM snap", "COMMIT")
		if _, err := s.Get(ctx, "a"); !errors.Is(err, kv.ErrReplay) {
			t.Errorf("Get(a) after rollback = %v, want ErrReplay", err)
		}
		if _, err := kv.Open(ctx, b, "s", kv.Options{Sealer: sealer, Counter: ctr}); !errors.Is(err, kv.ErrRollback) {
			t.Errorf("Open after rollback = %v, want ErrRollback", err)
		}
	})

	t.Run("swap two records", func(t *testing.T) {
		dsn := newDB(t)
		ps, err := host.OpenPostgresStore(ctx, dsn)
		if err != nil {
			t.Fatal(err)
		}
		defer ps.Close()
		s, err := kv.Open(ctx, kvtest.HostBackend(ps), "s", kv.Options{Sealer: sealer, Create: true})
		if err != nil {
			t.Fatal(err)
		}
		// Learn each key's record id from the rows each Put adds.
		rows := func() map[string]bool {
			m := map[string]bool{}
			ps.Keys(ctx, nil, nil, func(k []byte) bool { m[string(k)] = true; return true })
			return m
		}
		ids := map[string][]byte{}
		for _, k := range []string{"a", "b"} {
			before := rows()
			if err := s.Put(ctx, k, []byte("value of "+k)); err != nil {
				t.Fatal(err)
			}
			for r := range rows() {
				if !before[r] {
					if ids[k] != nil {
						t.Skipf("Put(%s) added more than one row; cannot tell its record", k)
					}
					ids[k] = []byte(r)
				}
			}
		}
		va, _ := ps.Get(ctx, ids["a"])
		vb, _ := ps.Get(ctx, ids["b"])
		if err := ps.CommitBatch(ctx, []host.BatchOp{{Key: ids["a"], Value: vb}, {Key: ids["b"], Value: va}}); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Get(ctx, "a"); !errors.Is(err, kv.ErrSwapped) {
			t.Errorf("Get(a) after swap = %v, want ErrSwapped", err)
		}
	})

	t.Run("change a byte", func(t *testing.T) {
		dsn := newDB(t)
		ps, err := host.OpenPostgresStore(ctx, dsn)
		if err != nil {
			t.Fatal(err)
		}
		defer ps.Close()
		s, err := kv.Open(ctx, kvtest.HostBackend(ps), "s", kv.Options{Sealer: sealer, Create: true})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Put(ctx, "a", []byte("1")); err != nil {
			t.Fatal(err)
		}
		// Flip the last byte of every record, the state included.
		pgExec(t, dsn, "UPDATE "+pgRecords+" SET value = set_byte(value, length(value)-1, get_byte(value, length(value)-1) # 1) WHERE length(value) > 0")
		if _, err := s.Get(ctx, "a"); !errors.Is(err, kv.ErrTampered) {
			t.Errorf("Get(a) after a changed byte = %v, want ErrTampered", err)
		}
		if _, err := kv.Open(ctx, kvtest.HostBackend(ps), "s", kv.Options{Sealer: sealer}); !errors.Is(err, kv.ErrTampered) {
			t.Errorf("Open after a changed byte = %v, want ErrTampered", err)
		}
	})
}
