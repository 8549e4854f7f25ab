// Package ledgercounter is a kv.Counter kept in a confidential ledger
// (package ledger, served by `cloister ledger serve`): one named ledger
// counter per store, moved by compare-and-increment, every change a ledger
// transaction. A store opened with it detects a whole-store rollback
// across enclave restarts, which kv.MemCounter (lost when the enclave
// stops) cannot.
//
// The ledger is reached over attested TLS (package ledgerclient). A
// ledger counter belongs to the user that moves it (no other user can move
// or read it), so the client certificate must be the same at every start
// (sealed with the store): under another certificate the counter reads as
// new, and kv fails closed (ErrRollback) on a store ahead of it.
package ledgercounter

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/cloister-dev/cloister/kv"
	"github.com/cloister-dev/cloister/ledger/aclapi"
	"github.com/cloister-dev/cloister/ledger/ledgerclient"
)

// Options configure a Counter: the ledger client's, and the counter's name.
type Options struct {
	ledgerclient.Options
	// Name is the ledger counter holding this store's Count (one per store).
	Name string
}

// Counter implements kv.Counter over the ledger's counter API.
type Counter struct {
	c    *ledgerclient.Client
	path string
	name string
}

// New checks o and returns the Counter. It does not contact the ledger.
func New(o Options) (*Counter, error) {
	if o.Name == "" || strings.ContainsAny(o.Name, "/?#%") {
		return nil, fmt.Errorf("ledgercounter: counter name %q: want a non-empty name without / ? # %%", o.Name)
	}
	c, err := ledgerclient.New(o.Options)
	if err != nil {
		return nil, err
	}
	return &Counter{c: c, path: "/app/counters/" + url.PathEscape(o.Name), name: o.Name}, nil
}

// countSize is the encoding of a kv.Count in the counter's value.
const countSize = 8 + 32 + 32

func encodeCount(c kv.Count) []byte {
	b := binary.BigEndian.AppendUint64(make([]byte, 0, countSize), c.Version)
	b = append(b, c.Digest[:]...)
	return append(b, c.Next[:]...)
}

func decodeCount(b []byte) (kv.Count, error) {
	if len(b) == 0 {
		return kv.Count{}, nil
	}
	if len(b) != countSize {
		return kv.Count{}, fmt.Errorf("ledgercounter: counter value of %d bytes, want %d", len(b), countSize)
	}
	var c kv.Count
	c.Version = binary.BigEndian.Uint64(b)
	copy(c.Digest[:], b[8:40])
	copy(c.Next[:], b[40:])
	return c, nil
}

// state is the ledger counter: its own version and the Count it holds.
type state struct {
	version uint64
	count   kv.Count
}

func (c *Counter) do(ctx context.Context, method string, body any) (state, int, error) {
	var out aclapi.CounterJSON
	if _, err := c.c.Do(ctx, method, c.path, body, &out); err != nil {
		var se *ledgerclient.StatusError
		if errors.As(err, &se) {
			return state{}, se.Status, fmt.Errorf("ledgercounter: %s counter %q: %w", method, c.name, err)
		}
		return state{}, 0, fmt.Errorf("ledgercounter: %s counter %q: %w", method, c.name, err)
	}
	if out.Name != c.name {
		return state{}, http.StatusOK, fmt.Errorf("ledgercounter: counter %q: the ledger answered for %q", c.name, out.Name)
	}
	v, err := base64.StdEncoding.DecodeString(out.Value)
	if err != nil {
		return state{}, http.StatusOK, fmt.Errorf("ledgercounter: counter %q: value: %w", c.name, err)
	}
	cnt, err := decodeCount(v)
	if err != nil {
		return state{}, http.StatusOK, err
	}
	return state{version: out.Version, count: cnt}, http.StatusOK, nil
}

// Read implements kv.Counter.
func (c *Counter) Read(ctx context.Context) (kv.Count, error) {
	s, _, err := c.do(ctx, http.MethodGet, nil)
	return s.count, err
}

// maxRaces bounds the re-reads when the ledger counter moved between our
// read and our increment but still holds old (it went away and back).
const maxRaces = 8

// CompareAndSwap implements kv.Counter: read the ledger counter, and if
// it holds old, compare-and-increment it from the version read to new.
func (c *Counter) CompareAndSwap(ctx context.Context, old, new kv.Count) error {
	if new.Version < old.Version {
		return fmt.Errorf("ledgercounter: refusing to move back from %d to %d", old.Version, new.Version)
	}
	for i := 0; i < maxRaces; i++ {
		s, _, err := c.do(ctx, http.MethodGet, nil)
		if err != nil {
			return err
		}
		if s.count != old {
			return fmt.Errorf("%w: ledger counter %q holds version %d, expected %d", kv.ErrCounterConflict, c.name, s.count.Version, old.Version)
		}
		_, status, err := c.do(ctx, http.MethodPost, map[string]any{
			"expectedVersion": s.version, "value": base64.StdEncoding.EncodeToString(encodeCount(new)),
		})
		if status == http.StatusConflict {
			continue
		}
		return err
	}
	return fmt.Errorf("%w: ledger counter %q keeps moving", kv.ErrCounterConflict, c.name)
}
