package kv

import (
	"errors"
	"testing"
)

// The core is pure, so its rules are tested without a backend or sealer.

func TestCheckFresh(t *testing.T) {
	d := func(b byte) [32]byte { return [32]byte{b} }
	for _, tc := range []struct {
		name  string
		state uint64
		dig   [32]byte
		c     Count
		pin   uint64
		want  freshness
		err   error
	}{
		{"committed", 5, d(5), Count{Version: 5, Digest: d(5)}, 0, freshOK, nil},
		{"committed, stale prepare", 5, d(5), Count{Version: 5, Digest: d(5), Next: d(6)}, 0, freshAbandon, nil},
		{"crash after the host write", 6, d(6), Count{Version: 5, Digest: d(5), Next: d(6)}, 0, freshCatchUp, nil},
		{"counter+1 but not the prepared state", 6, d(7), Count{Version: 5, Digest: d(5), Next: d(6)}, 0, 0, ErrFork},
		{"counter+1 with nothing prepared", 6, d(6), Count{Version: 5, Digest: d(5)}, 0, 0, ErrFork},
		{"same version, other state", 5, d(9), Count{Version: 5, Digest: d(5)}, 0, 0, ErrRollback},
		{"older than the counter", 4, d(4), Count{Version: 5, Digest: d(5)}, 0, 0, ErrRollback},
		{"counter behind by more than one commit", 7, d(7), Count{Version: 5, Digest: d(5), Next: d(6)}, 0, 0, ErrRollback},
		{"pin met", 5, d(5), Count{Version: 5, Digest: d(5)}, 5, freshOK, nil},
		{"under the pin", 5, d(5), Count{Version: 5, Digest: d(5)}, 6, 0, ErrRollback},
		{"creation caught up", 1, d(1), Count{Next: d(1)}, 0, freshCatchUp, nil},
	} {
		got, err := checkFresh(tc.state, tc.dig, tc.c, tc.pin)
		if got != tc.want || !errors.Is(err, tc.err) || (tc.err == nil && err != nil) {
			t.Errorf("%s: checkFresh = %v, %v; want %v, %v", tc.name, got, err, tc.want, tc.err)
		}
	}
}

// newTestCore returns a core at version 3 over an empty index, and the
// page source holding that index.
func newTestCore() (*core, *memPages) {
	st := &state{version: 3}
	st.macKey[0] = 1
	src, tr := newMemPages(&st.macKey)
	st.index = tr
	return newCore(locatorFor("t"), st, Count{Version: 3}), src
}

// commitTest finishes rd with made-up record sums and installs it, as the
// driver does after a durable commit.
func commitTest(t *testing.T, c *core, src *memPages, rd *ready) {
	t.Helper()
	sums := make([][32]byte, len(rd.writes))
	for i := range sums {
		sums[i][0] = byte(i + 1)
	}
	tc, _, err := rd.finish(src, sums)
	if err != nil {
		t.Fatal(err)
	}
	src.commit(tc)
	c.advance(Count{Version: rd.version})
}

func TestCoreProposeAdvance(t *testing.T) {
	c, src := newTestCore()
	rd, err := propose(src, c.st, []group{
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
	if err := c.setPending(rd); err != nil {
		t.Fatal(err)
	}
	if err := c.setPending(rd); err == nil {
		t.Fatal("a second commit while one is in flight was accepted")
	}
	// Nothing is committed until advance: Get still sees version 3.
	if c.st.version != 3 || c.st.keys != 0 {
		t.Fatal("propose changed the committed state")
	}
	commitTest(t, c, src, rd)
	if e, ok, err := c.st.index.lookup(src, "a"); c.st.version != 4 || c.count.Version != 4 || !ok || err != nil || e.version != 4 || c.st.keys != 2 {
		t.Fatalf("after advance: %+v", c.st)
	}
	// The encoded state decodes to the same state.
	st, err := decodeState(encodeState(c.st))
	if err != nil || st.version != 4 || st.keys != 2 || st.index.root != c.st.index.root || st.index.height != c.st.index.height {
		t.Fatalf("state round trip = %+v, %v", st, err)
	}
	// Delete and abort.
	rd, _ = propose(src, c.st, []group{{changes: []change{{name: "a", del: true}}}}, false)
	if len(rd.deletes) != 1 || rd.next.keys != 1 {
		t.Fatalf("delete ready: %+v", rd)
	}
	c.setPending(rd)
	c.abort()
	if c.pending != nil || c.st.keys != 2 {
		t.Fatal("abort kept the pending commit")
	}
	// A read of the entry version this batch wrote, seen by a later group.
	rd, _ = propose(src, c.st, []group{
		{changes: []change{{name: "n", value: []byte("1")}}},
		{changes: []change{{name: "m"}}, reads: map[string]uint64{"n": 5}},
		{changes: []change{{name: "o"}}, reads: map[string]uint64{"n": 0}},
	}, false)
	if rd.results[0] != nil || rd.results[1] != nil || !errors.Is(rd.results[2], ErrConflict) {
		t.Fatalf("reads within a batch: %v", rd.results)
	}
	// All groups refused: nothing to commit.
	rd, _ = propose(src, c.st, []group{{changes: []change{{name: "z"}}, reads: map[string]uint64{"a": 1}}}, false)
	if !rd.empty() || c.pending != nil {
		t.Fatal("an all-conflict proposal is not empty")
	}
}

func TestStateDecodeRejectsEveryPrefix(t *testing.T) {
	c, src := newTestCore()
	rd, _ := propose(src, c.st, []group{{changes: []change{{name: "a", value: []byte("1")}, {name: "bb", value: nil}}}}, false)
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
