package ledger

import (
	"fmt"
	"strconv"
	"strings"
)

// TxID is a transaction id as CCF and ACL write it: "view.seqno". Seqnos
// start at 1 and number every transaction of the ledger, signatures and
// governance changes included, so the seqnos of one collection's entries
// have gaps.
type TxID struct {
	View  uint64
	Seqno uint64
}

// String writes the id as "view.seqno".
func (t TxID) String() string {
	return strconv.FormatUint(t.View, 10) + "." + strconv.FormatUint(t.Seqno, 10)
}

// ParseTxID parses "view.seqno" (decimal, no sign, no leading zeros, both
// parts at least 1); anything else is ErrBadTxID.
func ParseTxID(s string) (TxID, error) {
	v, q, ok := strings.Cut(s, ".")
	if !ok {
		return TxID{}, fmt.Errorf("%w: %q has no '.'", ErrBadTxID, s)
	}
	view, err := parseUint(v)
	if err != nil {
		return TxID{}, fmt.Errorf("%w: %q: view: %v", ErrBadTxID, s, err)
	}
	seq, err := parseUint(q)
	if err != nil {
		return TxID{}, fmt.Errorf("%w: %q: seqno: %v", ErrBadTxID, s, err)
	}
	return TxID{View: view, Seqno: seq}, nil
}

func parseUint(s string) (uint64, error) {
	if s == "" || len(s) > 20 || (s[0] == '0') {
		return 0, fmt.Errorf("want a decimal number from 1, without leading zeros")
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("want decimal digits only")
		}
	}
	return strconv.ParseUint(s, 10, 64)
}
