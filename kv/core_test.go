package kv

import (
	"errors"
	"testing"
)

// The core is pure, so its rules are tested without a backend or sealer.

func TestCheckFresh(t *testing.T) {
	for _, tc := range []struct {
		state, counter, pin uint64
		catchUp             bool
		err                 error
	}{
		{5, 5, 0, false, nil},
		{6, 5, 0, true, nil}, // crash after the write, before the counter: not an alarm
		{4, 5, 0, false, ErrRollback},
		{7, 5, 0, false, ErrRollback}, // counter behind by more than one commit
		{5, 5, 5, false, nil},
		{5, 5, 6, false, ErrRollback},
		{1, 0, 0, true, nil},
	} {
		catchUp, err := checkFresh(tc.state, tc.counter, tc.pin)
		if catchUp != tc.catchUp || !errors.Is(err, tc.err) || (tc.err == nil && err != nil) {
			t.Errorf("checkFresh(state %d, counter %d, pin %d) = %v, %v; want %v, %v", tc.state, tc.counter, tc.pin, catchUp, err, tc.catchUp, tc.err)
		}
	}
}

func newTestCore() *core {
	st := &state{version: 3, entries: map[string]entry{}, names: []string{}}
	st.macKey[0] = 1
	return newCore(locatorFor("t"), st, 3)
}

func TestCoreProposeAdvance(t *testing.T) {
	c := newTestCore()
	rd, err := c.propose([]group{
		{changes: []change{{name: "a", value: []byte("1")}, {name: "b", value: []byte("2")}}},
		{changes: []change{{name: "a", value: []byte("3")}}},                                   // last write wins
		{changes: []change{{name: "c", value: []byte("x")}}, reads: map[string]uint64{"c": 1}}, // stale read
	}, false)
	if err != nil {
		t.Fatal(err)
	}
	if rd.version != 4 || len(rd.writes) != 2 || rd.results[0] != nil || rd.results[1] != nil || !errors.Is(rd.results[2], ErrConflict) {
		t.Fatalf("ready = version %d, %d writes, results %v", rd.version, len(rd.writes), rd.results)
	}
	if _, err := c.propose(nil, true); err == nil {
		t.Fatal("second propose while one is in flight succeeded")
	}
	// Nothing is committed until advance: Get still sees version 3.
	if c.st.version != 3 || len(c.st.entries) != 0 {
		t.Fatal("propose changed the committed state")
	}
	c.advance()
	if c.st.version != 4 || c.counter != 4 || c.st.entries["a"].version != 4 || len(c.st.entries) != 2 {
		t.Fatalf("after advance: %+v", c.st)
	}
	// The encoded state decodes to the same index.
	st, err := decodeState(encodeState(c.st))
	if err != nil || st.version != 4 || len(st.entries) != 2 || st.entries["b"] != c.st.entries["b"] {
		t.Fatalf("state round trip = %+v, %v", st, err)
	}
	// Delete and abort.
	rd, _ = c.propose([]group{{changes: []change{{name: "a", del: true}}}}, false)
	if len(rd.deletes) != 1 || len(rd.next.entries) != 1 {
		t.Fatalf("delete ready: %+v", rd)
	}
	c.abort()
	if c.pending != nil || len(c.st.entries) != 2 {
		t.Fatal("abort kept the pending commit")
	}
	// All groups refused: nothing to commit.
	rd, _ = c.propose([]group{{changes: []change{{name: "z"}}, reads: map[string]uint64{"a": 1}}}, false)
	if !rd.empty() || c.pending != nil {
		t.Fatal("an all-conflict proposal is not empty")
	}
}

func TestStateDecodeRejectsEveryPrefix(t *testing.T) {
	c := newTestCore()
	rd, _ := c.propose([]group{{changes: []change{{name: "a", value: []byte("1")}, {name: "bb", value: nil}}}}, false)
	b := encodeState(rd.next)
	for n := range len(b) {
		if _, err := decodeState(b[:n]); !errors.Is(err, ErrTampered) {
			t.Fatalf("prefix of %d bytes: %v", n, err)
		}
	}
	if _, err := decodeState(append(b, 0)); !errors.Is(err, ErrTampered) {
		t.Fatal("trailing byte accepted")
	}
}
