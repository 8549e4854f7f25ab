package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/cloister-dev/cloister/boundary"
	"github.com/cloister-dev/cloister/host"
	"github.com/cloister-dev/cloister/host/wire"
	"github.com/cloister-dev/cloister/kv"
	"github.com/cloister-dev/cloister/tee"
	"github.com/cloister-dev/cloister/tee/sim"
)

// benchKVResult is the JSON of `cloister bench kv --json`. The keys are a
// contract (scripts read them): Do NOT rename.
type benchKVResult struct {
	SealedPut1w  float64 `json:"sealed_put_per_s_1w"`
	PlainPut1w   float64 `json:"plain_put_per_s_1w"`
	SealedPut64w float64 `json:"sealed_put_per_s_64w"`
	PlainPut64w  float64 `json:"plain_put_per_s_64w"`
	SealedGet    float64 `json:"sealed_get_per_s"`
	PlainGet     float64 `json:"plain_get_per_s"`
	Keys         int     `json:"keys"`
}

// runBenchKV measures the sealed store against plain bbolt, in one run and
// one process: the sealed side goes through kv, an in-process boundary
// region and the host services over a bbolt file; the plain side writes the
// same 1 KiB values straight to a bbolt file with bbolt's DB.Batch, which
// groups concurrent writers the way kv's group commit does. Every put is
// durable (in an fsynced transaction) before it is acknowledged on both
// sides.
func runBenchKV(e *env, args []string) error {
	fs := newFlagSet("bench kv", "[--json] [--duration D] [--keys N] [--dir DIR]",
		`Measure 1 KiB random puts/s (1 writer, then 64 concurrent writers) and gets/s
(1 reader) through the sealed store kv/ (via the boundary and the host's bbolt
storage) and straight to bbolt on the host (no sealing, no boundary). Puts are
durable before they are acknowledged on both sides; both sides batch
concurrent writers into one transaction (kv's group commit, bbolt's DB.Batch).
Keys are 64 bytes ("key/" and 60 digits); both sides are filled with --keys
keys before measuring, in transactions of 100. Targets (reported, not asserted): sealed puts
at least 50% of plain with 64 writers, and at least 10,000 sealed updates/s.
Figures depend on the disk under --dir (a tmpfs makes fsync free).
`)
	jsonOut := fs.Bool("json", false, "print the figures as one JSON object")
	duration := fs.Duration("duration", 2*time.Second, "time per measurement")
	keys := fs.Int("keys", 1000, "size of the key space the random puts and gets draw from")
	dir := fs.String("dir", "", "directory for the bbolt files (default: a new temporary directory, removed after)")
	if err := parseNoArgs(e, fs, args); err != nil {
		return err
	}
	switch {
	case *duration <= 0:
		return usagef("--duration %v: want a positive duration", *duration)
	case *keys < 1 || *keys > 10_000_000:
		return usagef("--keys %d: want 1..10000000", *keys)
	}
	if *dir == "" {
		d, err := os.MkdirTemp("", "cloister-bench-kv-")
		if err != nil {
			return fmt.Errorf("bench kv: %w", err)
		}
		defer os.RemoveAll(d)
		*dir = d
	}
	b := &kvBench{e: e, d: *duration, keys: *keys, dir: *dir}
	res, err := b.run(e.ctx)
	if err != nil {
		return fmt.Errorf("bench kv: %w", err)
	}
	if *jsonOut {
		return printJSON(e.stdout, res)
	}
	w := e.stdout
	fmt.Fprintf(w, "%-22s %12s %12s %8s\n", "1 KiB, durable", "sealed/s", "plain/s", "ratio")
	for _, r := range []struct {
		name          string
		sealed, plain float64
	}{
		{"put, 1 writer", res.SealedPut1w, res.PlainPut1w},
		{"put, 64 writers", res.SealedPut64w, res.PlainPut64w},
		{"get, 1 reader", res.SealedGet, res.PlainGet},
	} {
		fmt.Fprintf(w, "%-22s %12.0f %12.0f %7.0f%%\n", r.name, r.sealed, r.plain, 100*r.sealed/r.plain)
	}
	return nil
}

type kvBench struct {
	e    *env
	d    time.Duration
	keys int
	dir  string
}

func (b *kvBench) run(ctx context.Context) (*benchKVResult, error) {
	sealed, closeSealed, err := b.openSealed(ctx)
	if err != nil {
		return nil, err
	}
	defer closeSealed()
	plain, err := bolt.Open(filepath.Join(b.dir, "plain.db"), 0o600, nil)
	if err != nil {
		return nil, err
	}
	defer plain.Close()
	bucket := []byte("plain")
	if err := plain.Update(func(tx *bolt.Tx) error { _, err := tx.CreateBucketIfNotExists(bucket); return err }); err != nil {
		return nil, err
	}

	names := make([]string, b.keys)
	for i := range names {
		names[i] = fmt.Sprintf("key/%060d", i)
	}
	value := make([]byte, 1024)
	rand.Read(value)
	// Prefill both sides so gets hit and the sealed index has its full size.
	for i := 0; i < len(names); i += 100 {
		end := min(i+100, len(names))
		if err := sealed.Update(ctx, func(tx *kv.Tx) error {
			for _, n := range names[i:end] {
				if err := tx.Put(n, value); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			return nil, err
		}
	}
	for i := 0; i < len(names); i += 100 {
		if err := plain.Update(func(tx *bolt.Tx) error {
			for _, n := range names[i:min(i+100, len(names))] {
				if err := tx.Bucket(bucket).Put([]byte(n), value); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			return nil, err
		}
	}
	sealedPut := func(ctx context.Context, k string, v []byte) error { return sealed.Put(ctx, k, v) }
	plainPut := func(_ context.Context, k string, v []byte) error {
		return plain.Batch(func(tx *bolt.Tx) error { return tx.Bucket(bucket).Put([]byte(k), v) })
	}
	sealedGet := func(ctx context.Context, k string, _ []byte) error { _, err := sealed.Get(ctx, k); return err }
	plainGet := func(_ context.Context, k string, _ []byte) error {
		return plain.View(func(tx *bolt.Tx) error {
			if v := tx.Bucket(bucket).Get([]byte(k)); len(v) != len(value) {
				return fmt.Errorf("plain get %q: %d bytes", k, len(v))
			}
			return nil
		})
	}

	r := benchKVResult{Keys: b.keys}
	for _, m := range []struct {
		out     *float64
		workers int
		op      func(context.Context, string, []byte) error
	}{
		{&r.SealedPut1w, 1, sealedPut},
		{&r.PlainPut1w, 1, plainPut},
		{&r.SealedPut64w, 64, sealedPut},
		{&r.PlainPut64w, 64, plainPut},
		{&r.SealedGet, 1, sealedGet},
		{&r.PlainGet, 1, plainGet},
	} {
		rate, err := b.measure(ctx, m.workers, names, m.op)
		if err != nil {
			return nil, err
		}
		*m.out = rate
	}
	return &r, nil
}

// measure runs op from workers goroutines on random keys with fresh random
// 1 KiB values for b.d and returns completed ops per second.
func (b *kvBench) measure(ctx context.Context, workers int, names []string, op func(context.Context, string, []byte) error) (float64, error) {
	var done atomic.Int64
	var stop atomic.Bool
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	start := b.e.now()
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			v := make([]byte, 1024)
			for !stop.Load() {
				rand.Read(v)
				i, _ := rand.Int(rand.Reader, big.NewInt(int64(len(names))))
				if err := op(ctx, names[i.Int64()], v); err != nil {
					errs <- err
					return
				}
				done.Add(1)
			}
		}()
	}
	deadline := time.NewTimer(b.d)
	select {
	case <-deadline.C:
	case err := <-errs:
		stop.Store(true)
		wg.Wait()
		return 0, err
	case <-ctx.Done():
	}
	stop.Store(true)
	wg.Wait()
	select {
	case err := <-errs:
		return 0, err
	default:
	}
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	elapsed := b.e.now().Sub(start).Seconds()
	return float64(done.Load()) / elapsed, nil
}

// openSealed builds the sealed side in this process: kv over the
// enclave's storage calls (boundaryStorage), sealing with a simulator
// platform.
func (b *kvBench) openSealed(ctx context.Context) (*kv.Store, func(), error) {
	backend, plat, cleanup, err := boundaryStorage(b.dir, "sealed.db", b.e.now())
	if err != nil {
		return nil, nil, err
	}
	s, err := kv.Open(ctx, backend, "bench", kv.Options{Sealer: tee.NewSealer(plat), Create: true})
	if err != nil {
		cleanup()
		return nil, nil, err
	}
	return s, cleanup, nil
}

// boundaryStorage builds, in this process, what an enclave's storage
// calls go through: host services over the bbolt file dir/file, served
// on a boundary region, and a kv.Backend over a client of that region;
// plat is a simulator platform (keys for sealing).
func boundaryStorage(dir, file string, now time.Time) (kv.Backend, tee.Platform, func(), error) {
	pki, err := sim.Load(filepath.Join(dir, "sim"), rand.Reader, now)
	if err != nil {
		return nil, nil, nil, err
	}
	app := sim.App{MRENCLAVE: [32]byte{0xbe}, MRSIGNER: [32]byte{0x51}, ProductID: 1, SVN: 1}
	plat, err := sim.NewPlatform(pki, tee.KindSimSGX, app, nil)
	if err != nil {
		return nil, nil, nil, err
	}
	store, err := host.OpenBoltStore(filepath.Join(dir, file))
	if err != nil {
		return nil, nil, nil, err
	}
	var closers []func()
	cleanup := func() {
		for i := len(closers) - 1; i >= 0; i-- {
			closers[i]()
		}
	}
	closers = append(closers, func() { store.Close() })
	svc, err := host.NewServices(host.ServiceOptions{Store: store, Platform: plat})
	if err != nil {
		cleanup()
		return nil, nil, nil, err
	}
	closers = append(closers, func() { svc.Close() })
	cfg := wire.RegionConfig()
	region, err := boundary.Create(cfg)
	if err != nil {
		cleanup()
		return nil, nil, nil, err
	}
	closers = append(closers, func() { region.Close() })
	table, err := wire.Table()
	if err != nil {
		cleanup()
		return nil, nil, nil, err
	}
	server, err := boundary.NewServer(region, table, svc.Handle)
	if err != nil {
		cleanup()
		return nil, nil, nil, err
	}
	served := make(chan error, 1)
	go func() { served <- server.Serve(context.Background()) }()
	closers = append(closers, func() { server.Close(); <-served })
	attached, err := boundary.Attach(region.File(), cfg)
	if err != nil {
		cleanup()
		return nil, nil, nil, err
	}
	client, err := boundary.NewClient(attached, table)
	if err != nil {
		attached.Close()
		cleanup()
		return nil, nil, nil, err
	}
	closers = append(closers, func() { client.Close(); attached.Close() })
	return boundaryBackend{client}, plat, cleanup, nil
}

// boundaryBackend is kv.Backend over the host storage calls of a boundary
// client: what enclave.Store does inside an enclave, here in one process.
type boundaryBackend struct{ c *boundary.Client }

// getBufs recycles storage.get response buffers (MaxStorageValue each).
var getBufs = sync.Pool{New: func() any { return new([boundary.MaxStorageValue]byte) }}

// Get implements kv.Backend with one storage.get call.
func (b boundaryBackend) Get(ctx context.Context, key []byte) ([]byte, bool, error) {
	buf := getBufs.Get().(*[boundary.MaxStorageValue]byte)
	defer getBufs.Put(buf)
	n, err := b.c.Call(ctx, boundary.CallStorageGet, key, buf[:])
	if errors.Is(err, boundary.ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	return bytes.Clone(buf[:n]), true, nil
}

// List implements kv.Backend over paged storage.list calls.
func (b boundaryBackend) List(ctx context.Context, prefix []byte) ([][]byte, error) {
	var all [][]byte
	resp := make([]byte, boundary.MaxStorageList)
	var after []byte
	for {
		req, err := wire.ListRequest(prefix, after)
		if err != nil {
			return nil, err
		}
		n, err := b.c.Call(ctx, boundary.CallStorageList, req, resp)
		if err != nil {
			return nil, err
		}
		keys, err := wire.ParseListPage(resp[:n], prefix, after)
		if err != nil {
			return nil, err
		}
		if len(keys) == 0 {
			return all, nil
		}
		all = append(all, keys...)
		after = keys[len(keys)-1]
	}
}

// Commit implements kv.Backend with one storage.commit call.
func (b boundaryBackend) Commit(ctx context.Context, ops []kv.Op) error {
	cops := make([]wire.CommitOp, len(ops))
	for i, op := range ops {
		cops[i] = wire.CommitOp{Key: op.Key, Value: op.Value, Delete: op.Delete}
	}
	req, err := wire.CommitRequest(cops)
	if err != nil {
		return err
	}
	_, err = b.c.Call(ctx, boundary.CallStorageCommit, req, nil)
	return err
}
