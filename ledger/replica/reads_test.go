package replica

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/cloister-dev/cloister/ledger"
)

// TestReadsOnEveryNode: the committed-state reads (Status, Current, List,
// Collections, User, Counter) give the same answers on every node once
// it applied the writes, name the node and a transaction at or after the
// write, and refuse bad input with the ledger's named errors.
func TestReadsOnEveryNode(t *testing.T) {
	c := newCluster(t, 3, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var last ledger.TxID
	for i := range 5 {
		tx, _, err := appendRetry(ctx, c.live(), i, "col", fmt.Sprint("e", i))
		if err != nil {
			t.Fatal(err)
		}
		last = tx
	}
	lead := c.node(c.waitLeader(nil))
	if _, err := lead.SetUser(ctx, "AA:BB", ledger.RoleReader); err != nil {
		t.Fatal(err)
	}
	moved, err := lead.CompareAndIncrement(ctx, "ctr", 0, []byte("v1"))
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range c.live() {
		if err := r.WaitApplied(ctx, moved.Seqno); err != nil {
			t.Fatal(err)
		}
		if _, _, err := r.WaitReceipt(ctx, last); err != nil {
			t.Fatal(err)
		}
		ok, sv, err := r.Status(last)
		if err != nil || !ok || sv.Node != r.ID() || sv.At.Seqno < last.Seqno {
			t.Fatalf("node %d: Status(%s) = %v %+v %v", r.ID(), last, ok, sv, err)
		}
		cur, sv, err := r.Current("col")
		if err != nil || cur.Contents != "e4" || sv.Node != r.ID() {
			t.Fatalf("node %d: Current = %+v %+v %v", r.ID(), cur, sv, err)
		}
		recs, more, _ := r.List("col", 0, 0)
		if len(recs) != 5 || more || recs[0].Contents != "e0" {
			t.Fatalf("node %d: List = %d entries, more %v", r.ID(), len(recs), more)
		}
		// Membership changes are ledger entries too, in their collection.
		if cols := r.Collections(); fmt.Sprint(cols) != fmt.Sprint([]string{MembershipCollection, "col"}) {
			t.Fatalf("node %d: Collections = %v", r.ID(), cols)
		}
		if r.User("AA:BB") != ledger.RoleReader || r.User("CC") != ledger.RoleNone {
			t.Fatalf("node %d: users", r.ID())
		}
		ctr, err := r.Counter(ctx, "ctr")
		if err != nil || ctr.Version != 1 || string(ctr.Value) != "v1" {
			t.Fatalf("node %d: Counter = %+v %v", r.ID(), ctr, err)
		}
		if r.View() != last.View || r.Durable() < moved.Seqno {
			t.Fatalf("node %d: View %d Durable %d", r.ID(), r.View(), r.Durable())
		}
		if _, _, err := r.Status(ledger.TxID{View: last.View, Seqno: 1 << 40}); !errors.Is(err, ledger.ErrNotFound) {
			t.Fatalf("node %d: Status of a future transaction: %v", r.ID(), err)
		}
		if _, _, err := r.Current("none"); !errors.Is(err, ledger.ErrNotFound) {
			t.Fatalf("node %d: Current of an empty collection: %v", r.ID(), err)
		}
		if _, err := r.Counter(ctx, ""); !errors.Is(err, ledger.ErrInvalid) {
			t.Fatalf("node %d: Counter with no name: %v", r.ID(), err)
		}
	}
}
