package replica

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cloister-dev/cloister/ledger"
)

// acked is what clients were told: a transaction id per contents.
type acked struct {
	mu sync.Mutex
	m  map[ledger.TxID]string
}

func (a *acked) add(tx ledger.TxID, s string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.m == nil {
		a.m = map[ledger.TxID]string{}
	}
	a.m[tx] = s
}

func (a *acked) n() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.m)
}

// load runs writers appending through the live nodes until stop, each
// retrying until a node acknowledges; it records every acknowledgement.
func load(c *cluster, writers int, ack *acked, stop <-chan struct{}) (wait func() error) {
	var wg sync.WaitGroup
	var firstErr atomic.Value
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				s := fmt.Sprintf("w%d-%d", w, i)
				tx, _, err := appendRetry(ctx, c.live(), w+i, "load", s)
				if err != nil {
					select {
					case <-stop:
						return
					default:
					}
					firstErr.CompareAndSwap(nil, err)
					return
				}
				ack.add(tx, s)
			}
		}()
	}
	return func() error {
		wg.Wait()
		cancel()
		if err, ok := firstErr.Load().(error); ok {
			return err
		}
		return nil
	}
}

func waitAcks(t *testing.T, ack *acked, n int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for ack.n() < n {
		select {
		case <-ctx.Done():
			t.Fatalf("only %d writes acknowledged within 30s, want %d", ack.n(), n)
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// checkAcked: every acknowledged entry is on every node given, with its
// contents, and its receipt from that node verifies with the service
// certificate.
func checkAcked(t *testing.T, c *cluster, ack *acked, nodes []*Replica) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ack.mu.Lock()
	defer ack.mu.Unlock()
	var max uint64
	for tx := range ack.m {
		max = maxU(max, tx.Seqno)
	}
	for _, r := range nodes {
		if err := r.WaitApplied(ctx, max); err != nil {
			t.Fatal(err)
		}
		n := 0
		for tx, s := range ack.m {
			e, sv, err := r.Entry(tx)
			if err != nil {
				t.Fatalf("node %d lost acknowledged %s (%q): %v", r.ID(), tx, s, err)
			}
			if e.Contents != s || e.Collection != "load" {
				t.Fatalf("node %d has %s = %q, acknowledged %q", r.ID(), tx, e.Contents, s)
			}
			if sv.Node != r.ID() || sv.At.Seqno < tx.Seqno {
				t.Fatalf("node %d served %s saying %+v", r.ID(), tx, sv)
			}
			if n < 20 { // receipts are slower: a sample per node
				tr, _, err := r.WaitReceipt(ctx, tx)
				if err != nil {
					t.Fatal(err)
				}
				checkReceipt(t, tr, c.svc, e)
			}
			n++
		}
	}
}

func maxU(a, b uint64) uint64 {
	if a > b {
		return a
	}
	return b
}

// TestKillLeaderUnderLoad (3 nodes): the leader is killed while writers
// append; a new leader is elected, writes resume, and no acknowledged
// entry is lost on the survivors.
func TestKillLeaderUnderLoad(t *testing.T) {
	c := newCluster(t, 3, nil)
	var ack acked
	stop := make(chan struct{})
	wait := load(c, 8, &ack, stop)
	waitAcks(t, &ack, 200)
	old := c.waitLeader(nil)
	c.kill(old)
	before := ack.n()
	lead := c.waitLeader(nil)
	if lead == old {
		t.Fatalf("killed leader %d still named leader", old)
	}
	waitAcks(t, &ack, before+200)
	close(stop)
	if err := wait(); err != nil {
		t.Fatal(err)
	}
	checkAcked(t, c, &ack, c.live())
	t.Logf("%d writes acknowledged, leader %d killed after %d, new leader %d", ack.n(), old, before, lead)
}

// TestJoinWrongMeasurementRefused: a node running other code cannot join:
// the member's TLS handshake refuses its evidence, nothing is added.
func TestJoinWrongMeasurementRefused(t *testing.T) {
	c := newCluster(t, 3, nil)
	before := c.node(1).Members()
	_, err := c.start(9, otherApp, false, c.node(1).Addr())
	if !errors.Is(err, ErrJoin) {
		t.Fatalf("join with another measurement: %v, want ErrJoin", err)
	}
	// Give a wrongly admitted node time to show up, then check it did not:
	// a conf change would be applied within a few ticks.
	if _, _, err := appendRetry(context.Background(), c.live(), 0, "c", "after"); err != nil {
		t.Fatal(err)
	}
	if got := c.node(1).Members(); fmt.Sprint(got) != fmt.Sprint(before) {
		t.Fatalf("members %v after a refused join, were %v", got, before)
	}
}
