package aclapi

import (
	"github.com/cloister-dev/cloister/ledger"
	"github.com/cloister-dev/cloister/ledger/replica"
)

// OverReplica adapts one node of a replicated ledger to Ledger. Writes on
// a follower are forwarded to the leader through raft (as CCF forwards),
// not redirected: the client talks to one node and the write returns once
// a quorum committed it and this node applied it. Reads answer from this
// node's committed state; the response names the node and the
// transaction it had reached (Served).
func OverReplica(r *replica.Replica) Ledger { return replicaLedger{r} }

type replicaLedger struct{ *replica.Replica }

func (l replicaLedger) Entry(tx ledger.TxID) (ledger.Record, error) {
	rec, _, err := l.Replica.Entry(tx)
	return rec, err
}

func (l replicaLedger) Status(tx ledger.TxID) (bool, error) {
	ok, _, err := l.Replica.Status(tx)
	return ok, err
}

func (l replicaLedger) Receipt(tx ledger.TxID) (*ledger.TransactionReceipt, bool, error) {
	tr, ok, _, err := l.Replica.Receipt(tx)
	return tr, ok, err
}

func (l replicaLedger) Current(collection string) (ledger.Record, error) {
	rec, _, err := l.Replica.Current(collection)
	return rec, err
}

func (l replicaLedger) List(collection string, from, to uint64) ([]ledger.Record, bool) {
	recs, more, _ := l.Replica.List(collection, from, to)
	return recs, more
}
