package main

import (
	"encoding/binary"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/cloister-dev/cloister/ledger"
	"github.com/cloister-dev/cloister/ledger/receipt"
	"github.com/cloister-dev/cloister/tee"
)

// benchLedgerResult is the JSON of `cloister bench ledger --json`. The
// keys are a contract (issue 17): Do NOT rename.
type benchLedgerResult struct {
	AppendsPerS        float64 `json:"appends_per_s"`
	ReceiptP50Ms       float64 `json:"receipt_p50_ms"`
	ReceiptP99Ms       float64 `json:"receipt_p99_ms"`
	VerifyReceiptsPerS float64 `json:"verify_receipts_per_s"`
	PlainAppendsPerS   float64 `json:"plain_appends_per_s"`
	Entries            int     `json:"entries"`
	Writers            int     `json:"writers"`
	EntryBytes         int     `json:"entry_bytes"`
}

const benchLedgerHelp = `Measure the ledger in one process and one run:

  appends_per_s        entries/s appended by --writers concurrent writers through a
                       ledger.Node whose host storage goes through the boundary to a
                       bbolt file (as in an enclave), counted until every entry is
                       durable AND its receipt is ready (a durable signature covers it)
  receipt_p50_ms/p99   per entry, from the start of its append to its receipt being ready
  verify_receipts_per_s  receipts checked as a client does (leaf, Merkle path, ECDSA
                       P-384 over the root, node certificate against the service
                       certificate), on one core
  plain_appends_per_s  the same entries written straight to bbolt by the same number of
                       writers with bbolt's DB.Batch (group commit, fsynced), no sealing,
                       no Merkle tree, no boundary

Targets (reported, not asserted): appends_per_s >= 20,000 and >= 50% of plain; receipt
p99 <= 50 ms. Figures depend on the machine's load and on the disk under --dir.

With --nodes N (N >= 2) it measures the replicated ledger instead (ledger/replica: raft
over mutually attested TLS on loopback, every node in this process with its own bbolt
file through the boundary), in one run:

  appends_per_s_1node  entries/s through a 1-node service, counted until committed and
                       every writer's last receipt is ready
  appends_per_s_Nnodes the same through an N-node service, writers on the leader (as
                       clients that followed a redirect); target: >= 50% of 1 node
  appends_per_s_Nnodes_forwarded  the same with writers spread over all nodes, the
                       followers forwarding to the leader
  failover_p50_ms/max  --failovers times: the leader is stopped; time until a write
                       started after that is acknowledged; the node then restarts from
                       its sealed state
`

func runBenchLedger(e *env, args []string) error {
	fs := newFlagSet("bench ledger", "[--json] [--entries N] [--writers N] [--size BYTES] [--dir DIR] [--nodes N [--failovers K]]", benchLedgerHelp)
	jsonOut := fs.Bool("json", false, "print the figures as one JSON object")
	entries := fs.Int("entries", 100000, "entries appended on each side")
	writers := fs.Int("writers", 64, "concurrent writers")
	size := fs.Int("size", 256, "entry contents in bytes")
	dir := fs.String("dir", "", "directory for the bbolt files (default: a new temporary directory, removed after)")
	nodes := fs.Int("nodes", 0, "measure the replicated ledger with this many nodes (and 1) instead")
	failovers := fs.Int("failovers", 5, "with --nodes: leader failovers measured")
	if err := parseNoArgs(e, fs, args); err != nil {
		return err
	}
	if *nodes != 0 && (*nodes < 2 || *nodes > 9) {
		return usagef("--nodes %d: want 2..9", *nodes)
	}
	if *failovers < 0 || *failovers > 100 {
		return usagef("--failovers %d: want 0..100", *failovers)
	}
	switch {
	case *entries < 1 || *entries > 10_000_000:
		return usagef("--entries %d: want 1..10000000", *entries)
	case *writers < 1 || *writers > 4096:
		return usagef("--writers %d: want 1..4096", *writers)
	case *size < 0 || *size > ledger.MaxContents:
		return usagef("--size %d: want 0..%d", *size, ledger.MaxContents)
	}
	if *dir == "" {
		d, err := os.MkdirTemp("", "cloister-bench-ledger-")
		if err != nil {
			return fmt.Errorf("bench ledger: %w", err)
		}
		defer os.RemoveAll(d)
		*dir = d
	}
	if *nodes > 0 {
		return runBenchLedgerNodes(e, *dir, *nodes, *entries, *writers, *size, *failovers, *jsonOut)
	}
	res, err := benchLedger(e, *dir, *entries, *writers, *size)
	if err != nil {
		return fmt.Errorf("bench ledger: %w", err)
	}
	if *jsonOut {
		return printJSON(e.stdout, res)
	}
	w := e.stdout
	fmt.Fprintf(w, "%d entries of %d bytes, %d writers\n", res.Entries, res.EntryBytes, res.Writers)
	fmt.Fprintf(w, "ledger appends/s (receipt ready) %10.0f\n", res.AppendsPerS)
	fmt.Fprintf(w, "plain bbolt appends/s            %10.0f  (ledger %.0f%%)\n", res.PlainAppendsPerS, 100*res.AppendsPerS/res.PlainAppendsPerS)
	fmt.Fprintf(w, "receipt ready p50 / p99          %7.1f ms / %.1f ms\n", res.ReceiptP50Ms, res.ReceiptP99Ms)
	fmt.Fprintf(w, "receipts verified/s (1 core)     %10.0f\n", res.VerifyReceiptsPerS)
	return nil
}

// contents is entry i's contents: size bytes, distinct per entry.
func benchContents(i, size int) string {
	b := make([]byte, size)
	for j := range b {
		b[j] = 'a' + byte((i+j)%26)
	}
	copy(b, fmt.Sprintf("%d:", i))
	return string(b)
}

func benchLedger(e *env, dir string, entries, writers, size int) (*benchLedgerResult, error) {
	ctx := e.ctx
	res := &benchLedgerResult{Entries: entries, Writers: writers, EntryBytes: size}
	backend, plat, cleanup, err := boundaryStorage(dir, "ledger.db", e.now())
	if err != nil {
		return nil, err
	}
	defer cleanup()
	n, err := ledger.Open(ctx, ledger.Options{Backend: backend, Sealer: tee.NewSealer(plat), Now: e.now})
	if err != nil {
		return nil, err
	}
	defer n.Close()

	// Follow commits: (time, last signature) at every change.
	type event struct {
		at   time.Time
		upto uint64
	}
	var (
		evMu   sync.Mutex
		events []event
		stop   = make(chan struct{})
		follow sync.WaitGroup
	)
	follow.Add(1)
	go func() {
		defer follow.Done()
		for {
			upto, ch := n.Committed()
			now := e.now()
			evMu.Lock()
			events = append(events, event{now, upto})
			evMu.Unlock()
			select {
			case <-ch:
			case <-stop:
				return
			}
		}
	}()
	samples := make([][]ledgerSample, writers)
	var next atomic.Int64
	var wg sync.WaitGroup
	var firstErr atomic.Value
	start := e.now()
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= entries {
					return
				}
				t0 := e.now()
				tx, err := n.Append(ctx, "bench", benchContents(i, size))
				if err != nil {
					firstErr.CompareAndSwap(nil, err)
					return
				}
				samples[w] = append(samples[w], ledgerSample{tx.Seqno, t0})
			}
		}(w)
	}
	wg.Wait()
	if err, ok := firstErr.Load().(error); ok {
		close(stop)
		follow.Wait()
		return nil, err
	}
	var last uint64
	for _, ss := range samples {
		for _, s := range ss {
			last = max(last, s.seqno)
		}
	}
	if err := n.WaitCommitted(ctx, ledger.TxID{View: n.View(), Seqno: last}); err != nil {
		return nil, err
	}
	elapsed := e.now().Sub(start)
	close(stop)
	follow.Wait()
	res.AppendsPerS = float64(entries) / elapsed.Seconds()
	// The follower's last event may precede the final commit it saw
	// through WaitCommitted: record it.
	if upto, _ := n.Committed(); len(events) == 0 || events[len(events)-1].upto < upto {
		events = append(events, event{e.now(), upto})
	}
	var lat []float64
	for _, ss := range samples {
		for _, s := range ss {
			k := sort.Search(len(events), func(k int) bool { return events[k].upto > s.seqno })
			if k == len(events) {
				return nil, fmt.Errorf("no commit seen for seqno %d", s.seqno)
			}
			lat = append(lat, float64(events[k].at.Sub(s.start))/float64(time.Millisecond))
		}
	}
	slices.Sort(lat)
	res.ReceiptP50Ms = lat[len(lat)/2]
	res.ReceiptP99Ms = lat[min(len(lat)-1, len(lat)*99/100)]

	if res.VerifyReceiptsPerS, err = benchVerify(e, n, samples[0]); err != nil {
		return nil, err
	}
	if res.PlainAppendsPerS, err = benchPlain(e, filepath.Join(dir, "plain.db"), entries, writers, size); err != nil {
		return nil, err
	}
	return res, nil
}

// ledgerSample is one append: its seqno and when it started.
type ledgerSample struct {
	seqno uint64
	start time.Time
}

// benchVerify fetches receipts and times checking them as a client does:
// parse the JSON ACL returns and verify it offline with ledger/receipt
// against the service certificate.
func benchVerify(e *env, n *ledger.Node, ss []ledgerSample) (float64, error) {
	svc := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: n.Identity().ServiceCert.Raw})
	var docs [][]byte
	for _, s := range ss {
		r, ok, err := n.Receipt(ledger.TxID{View: n.View(), Seqno: s.seqno})
		if err != nil || !ok {
			return 0, fmt.Errorf("receipt of %d: ready %v: %v", s.seqno, ok, err)
		}
		doc, err := json.Marshal(r)
		if err != nil {
			return 0, fmt.Errorf("receipt of %d: %w", s.seqno, err)
		}
		docs = append(docs, doc)
		if len(docs) == 1000 {
			break
		}
	}
	start := e.now()
	for _, doc := range docs {
		resp, err := receipt.Parse(doc)
		if err != nil {
			return 0, err
		}
		if _, err := receipt.Verify(resp, receipt.Options{ServiceCert: svc}); err != nil {
			return 0, err
		}
	}
	return float64(len(docs)) / e.now().Sub(start).Seconds(), nil
}

// benchPlain appends the same entries straight to bbolt with DB.Batch.
func benchPlain(e *env, path string, entries, writers, size int) (float64, error) {
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		return 0, err
	}
	defer db.Close()
	bucket := []byte("entries")
	if err := db.Update(func(tx *bolt.Tx) error { _, err := tx.CreateBucketIfNotExists(bucket); return err }); err != nil {
		return 0, err
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	var firstErr atomic.Value
	start := e.now()
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= entries {
					return
				}
				v := []byte("bench\x00" + benchContents(i, size))
				err := db.Batch(func(tx *bolt.Tx) error {
					b := tx.Bucket(bucket)
					seq, err := b.NextSequence()
					if err != nil {
						return err
					}
					return b.Put(binary.BigEndian.AppendUint64(nil, seq), v)
				})
				if err != nil {
					firstErr.CompareAndSwap(nil, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if err, ok := firstErr.Load().(error); ok {
		return 0, err
	}
	return float64(entries) / e.now().Sub(start).Seconds(), nil
}
