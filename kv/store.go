package kv

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"

	"github.com/cloister-dev/cloister/seal"
)

// Options configures Open. It is validated once, by Open.
type Options struct {
	// Sealer seals and opens every record; required. Its Keys must be the
	// platform's (tee.NewSealer(env.Platform())).
	Sealer seal.Sealer

	// Policy is the seal policy of new records: zero means
	// seal.PolicyEnclave (only this exact build can read the store). Use
	// seal.PolicySigner for a store that must survive upgrades: then an
	// enclave of the same signer and product at an equal or higher SVN
	// opens it, and a lower SVN is refused.
	Policy seal.Policy

	// Counter is the trusted counter of this store; nil means a new
	// MemCounter holding the state Open finds (trust on first use: see the
	// package documentation for what that does and does not detect across
	// restarts). To keep detection across a reopen within one run, pass the
	// same Counter to every Open.
	Counter Counter

	// MinVersion, if non-zero, pins the least store version Open accepts:
	// the operator records Store.Version after a run and passes it back,
	// which detects rollback across restarts without a persistent counter.
	MinVersion uint64

	// MinSVN, under seal.PolicySigner only, is the least SVN whose sealed
	// state Open accepts (ErrDowngrade below it). After an upgrade the
	// first Open re-seals the state at the new SVN; from then on the
	// operator passes the new SVN here, and a state an old (possibly
	// vulnerable) release sealed is refused. Records need no such check:
	// the state holds the SHA-256 of each one.
	MinSVN uint16

	// Create allows Open to create the store when the host has no state
	// for it. Without it a missing store is ErrStoreNotFound. Open never
	// creates over a state it cannot read, nor over records left behind.
	Create bool

	// Rand supplies the store id and MAC key of a new store; nil means
	// crypto/rand.
	Rand io.Reader
}

func (o *Options) validate() error {
	if o.Sealer.Keys == nil {
		return errors.New("kv: options: Sealer.Keys is required")
	}
	switch o.Policy {
	case 0:
		o.Policy = seal.PolicyEnclave
	case seal.PolicyEnclave, seal.PolicySigner:
	default:
		return fmt.Errorf("kv: options: unknown seal policy %d", o.Policy)
	}
	if o.MinSVN > 0 && o.Policy != seal.PolicySigner {
		return errors.New("kv: options: MinSVN applies to seal.PolicySigner stores only")
	}
	if o.Rand == nil {
		o.Rand = rand.Reader
	}
	o.Sealer.Keys = &cachedKeys{inner: o.Sealer.Keys, m: map[string][]byte{}}
	return nil
}

// Store is a sealed key/value store kept on an untrusted host. The host
// sees record ids (HMAC-SHA256 of key names under a key that lives only in
// the sealed state), sealed values whose seal label binds store id, record
// id and version, the sealed pages of the index (names, record ids,
// versions and the SHA-256 of each record), and one sealed state record
// holding the index's root ref and the version.
// Safe for concurrent use; concurrent writers are batched
// into one host commit (group commit).
type Store struct {
	b    Backend
	name string
	opts Options
	loc  locator

	cache *pageCache // verified index pages, shared by every reader

	mu         sync.Mutex
	core       *core
	queue      []*waiter
	committing bool
	batchCap   int   // if > 0, the most groups a batch takes (learnt from errBatchTooLarge)
	err        error // sticky: ErrCommitUnknown or ErrClosed
}

// waiter is one group waiting for the commit that carries it.
type waiter struct {
	g    group
	done chan error
}

// Open opens the store called name on b, checking the state it finds
// against the trusted counter, Options.MinVersion and Options.MinSVN, and
// that every record the state lists is there. An error leaves the host's
// records untouched.
//
// Under seal.PolicySigner, a state sealed at a lower SVN than the running
// enclave's is re-sealed at once (one empty commit), so that after an
// upgrade the operator can pin Options.MinSVN to the new SVN.
func Open(ctx context.Context, b Backend, name string, opts Options) (*Store, error) {
	s, err := newStore(b, name, opts)
	if err != nil {
		return nil, err
	}
	raw, ok, err := b.Get(ctx, stateKey(s.loc))
	if err != nil {
		return nil, fmt.Errorf("kv: open %q: state: %w", name, err)
	}
	if !ok {
		if err := s.create(ctx); err != nil {
			return nil, fmt.Errorf("kv: open %q: %w", name, err)
		}
		return s, nil
	}
	st, sealedSVN, err := s.openState(ctx, raw)
	if err != nil {
		return nil, fmt.Errorf("kv: open %q: %w", name, err)
	}
	d := sha256.Sum256(raw)
	if s.opts.Counter == nil {
		s.opts.Counter = NewMemCounter(Count{Version: st.version, Digest: d})
	}
	c, err := s.opts.Counter.Read(ctx)
	if err != nil {
		return nil, fmt.Errorf("kv: open %q: counter: %w", name, err)
	}
	fr, err := checkFresh(st.version, d, c, s.opts.MinVersion)
	if err != nil {
		return nil, fmt.Errorf("kv: open %q: %w", name, err)
	}
	if err := s.checkRecords(ctx, st); err != nil {
		return nil, fmt.Errorf("kv: open %q: %w", name, err)
	}
	switch fr {
	case freshAbandon:
		// The host holds the committed state: the prepared commit never
		// became durable, or the host dropped it. Forget it, so that its
		// state can never be accepted later.
		next := Count{Version: c.Version, Digest: c.Digest}
		if err := s.swapCounter(ctx, c, next); err != nil {
			return nil, fmt.Errorf("kv: open %q: clearing the abandoned commit: %w", name, err)
		}
		c = next
	case freshCatchUp:
		// Finish step 4 of the commit that crashed after its host write.
		next := Count{Version: st.version, Digest: d}
		if err := s.swapCounter(ctx, c, next); err != nil {
			return nil, fmt.Errorf("kv: open %q: finishing the prepared commit: %w", name, err)
		}
		c = next
	}
	s.core = newCore(s.loc, st, c)
	if s.opts.Policy == seal.PolicySigner && sealedSVN < s.opts.Sealer.Identity.SVN {
		if err := s.forceCommit(ctx); err != nil {
			return nil, fmt.Errorf("kv: open %q: re-sealing the state at SVN %d: %w", name, s.opts.Sealer.Identity.SVN, err)
		}
	}
	return s, nil
}

func newStore(b Backend, name string, opts Options) (*Store, error) {
	if b == nil {
		return nil, errors.New("kv: open: nil backend")
	}
	if name == "" || len(name) > MaxKeySize {
		return nil, fmt.Errorf("kv: open: store name of %d bytes", len(name))
	}
	if err := opts.validate(); err != nil {
		return nil, err
	}
	return &Store{b: b, name: name, opts: opts, loc: locatorFor(name), cache: newPageCache(pageCacheSize)}, nil
}

// swapCounter moves the trusted counter from old to new, naming a conflict
// as the fork it is.
func (s *Store) swapCounter(ctx context.Context, old, new Count) error {
	err := s.opts.Counter.CompareAndSwap(ctx, old, new)
	if errors.Is(err, ErrCounterConflict) {
		return fmt.Errorf("%w: %w", ErrFork, err)
	}
	return err
}

// create makes a new store when the host has no state, refusing whenever
// that could hide a deletion: records left under the store, a trusted
// counter above zero, or a pinned version.
func (s *Store) create(ctx context.Context) error {
	keys, err := s.b.List(ctx, recordPrefix(s.loc))
	if err != nil {
		return fmt.Errorf("list: %w", err)
	}
	if len(keys) > 0 {
		return fmt.Errorf("%w: state record missing, %d records remain", ErrMissingRecord, len(keys))
	}
	if s.opts.MinVersion > 0 {
		return fmt.Errorf("%w: state record missing, pinned version %d", ErrRollback, s.opts.MinVersion)
	}
	if s.opts.Counter == nil {
		s.opts.Counter = NewMemCounter(Count{})
	}
	c, err := s.opts.Counter.Read(ctx)
	if err != nil {
		return fmt.Errorf("counter: %w", err)
	}
	if c.Version > 0 {
		return fmt.Errorf("%w: state record missing, trusted counter %d (the host wiped the store; see Recover)", ErrRollback, c.Version)
	}
	if !s.opts.Create {
		return ErrStoreNotFound
	}
	st, err := s.newState()
	if err != nil {
		return err
	}
	// A creation that crashed before its host write leaves a prepared
	// Next at version 0; the prepare below replaces it.
	s.core = newCore(s.loc, st, c)
	return s.forceCommit(ctx)
}

// newState returns the state of a new, empty store at version 0, with a
// fresh store id and MAC key, and puts its empty root page in the cache so
// that the first commit writes it.
func (s *Store) newState() (*state, error) {
	st := &state{}
	if _, err := io.ReadFull(s.opts.Rand, st.store[:]); err != nil {
		return nil, fmt.Errorf("store id: %w", err)
	}
	if _, err := io.ReadFull(s.opts.Rand, st.macKey[:]); err != nil {
		return nil, fmt.Errorf("mac key: %w", err)
	}
	t, _ := emptyTree(&st.macKey)
	st.index = t
	s.cache.put(t.root, &page{leaf: true})
	return st, nil
}

// forceCommit commits the current state as the next version with no
// changes: creation, re-sealing after an upgrade, recovery.
func (s *Store) forceCommit(ctx context.Context) error {
	st := s.core.st
	rd, err := propose(s.pages(ctx, st), st, nil, true)
	if err != nil {
		return err
	}
	if err := s.core.setPending(rd); err != nil {
		return err
	}
	return s.execute(ctx, rd)
}

// openState authenticates the host's state record under the store's
// policy and decodes it, returning the SVN it was sealed at (PolicySigner;
// 0 otherwise). The blob is opened under the label its own header
// declares, so that what the host did can be named: a state of another
// store is ErrForeignStore, any other failure to authenticate ErrTampered,
// a state sealed under another policy or identity ErrUnseal (wrapping
// seal's reason), and one sealed below Options.MinSVN ErrDowngrade.
func (s *Store) openState(ctx context.Context, raw []byte) (*state, uint16, error) {
	h, err := decodeStateRecord(raw)
	if err != nil {
		return nil, 0, err
	}
	plain, err := s.opts.Sealer.Open(ctx, s.opts.Policy, stateLabel(h.loc, h.store, h.version), h.blob)
	if err != nil {
		return nil, 0, sealErr("state", err)
	}
	var svn uint16
	if s.opts.Policy == seal.PolicySigner {
		// Authenticated now: the seal header is part of the AAD.
		bind, err := seal.UnverifiedBinding(h.blob)
		if err != nil {
			return nil, 0, sealErr("state", err)
		}
		svn = bind.SVN
		if svn < s.opts.MinSVN {
			clear(plain)
			return nil, 0, fmt.Errorf("%w: state sealed at SVN %d, minimum %d", ErrDowngrade, svn, s.opts.MinSVN)
		}
	}
	if h.loc != s.loc {
		return nil, 0, fmt.Errorf("%w: state belongs to another store name", ErrForeignStore)
	}
	st, err := decodeState(plain)
	clear(plain)
	if err != nil {
		return nil, 0, err
	}
	if st.store != h.store || st.version != h.version {
		return nil, 0, fmt.Errorf("%w: state header disagrees with sealed state", ErrTampered)
	}
	return st, svn, nil
}

// sealErr maps a seal.Open failure: identity and policy refusals mean this
// enclave may not read the store (ErrUnseal); everything else means the
// bytes are not what this store sealed (ErrTampered).
func sealErr(what string, err error) error {
	if errors.Is(err, seal.ErrAuth) || errors.Is(err, seal.ErrMalformed) {
		return fmt.Errorf("%w: %s: %w", ErrTampered, what, err)
	}
	return fmt.Errorf("%w: %s: %w", ErrUnseal, what, err)
}

// checkRecords reads every index page of st (verifying each) and lists the
// store's records on the host, and fails with ErrMissingRecord if any
// record the index lists is absent. Records the index does not list are
// ignored: an atomic commit never leaves them, and they are never read. It
// reads the whole index: O(n) at Open, once.
func (s *Store) checkRecords(ctx context.Context, st *state) error {
	keys, err := s.b.List(ctx, recordPrefix(s.loc))
	if err != nil {
		return fmt.Errorf("list: %w", err)
	}
	have := make(map[string]bool, len(keys))
	for _, k := range keys {
		have[string(k)] = true
	}
	var n, missing uint64
	err = st.index.scan(s.pages(ctx, st), "", func(it leafItem) bool {
		n++
		if !have[string(recordKey(s.loc, it.e.rid))] {
			missing++
		}
		return true
	})
	if err != nil {
		return err
	}
	if n != st.keys {
		return fmt.Errorf("%w: the index of state version %d holds %d keys, the state says %d", ErrTampered, st.version, n, st.keys)
	}
	if missing > 0 {
		return fmt.Errorf("%w: %d of %d records listed by state version %d are not on the host", ErrMissingRecord, missing, n, st.version)
	}
	return nil
}

// Version returns the store's committed version. An operator without a
// persistent counter records it after a run and passes it back as
// Options.MinVersion.
func (s *Store) Version() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.core.st.version
}

// Close stops the store; later calls return ErrClosed. It waits for no
// commit: a commit in flight completes for its callers.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err == nil {
		s.err = ErrClosed
	}
	return nil
}

// Get returns key's value, ErrNotFound if the key has none, or the error
// naming what the host did (ErrMissingRecord, ErrReplay, ErrSwapped,
// ErrTampered, ErrForeignStore, ErrRollback).
func (s *Store) Get(ctx context.Context, key string) ([]byte, error) {
	if err := checkKeyName(key); err != nil {
		return nil, err
	}
	v, _, err := s.get(ctx, key)
	return v, err
}

// get returns key's value and the entry version it was verified against (0
// when absent). It reads the committed state only: a record a commit in
// flight writes or deletes is read after that commit resolves, so Get
// never returns a value that was not acknowledged (the host may hold it
// already and still fail the commit).
func (s *Store) get(ctx context.Context, key string) ([]byte, uint64, error) {
	for attempt := 0; ; attempt++ {
		s.mu.Lock()
		if s.err != nil {
			err := s.err
			s.mu.Unlock()
			return nil, 0, err
		}
		st := s.core.st
		r := ridFor(&st.macKey, key)
		wait := s.core.inFlight(r)
		s.mu.Unlock()
		if wait != nil {
			if err := waitFor(ctx, wait); err != nil {
				return nil, 0, err
			}
			continue
		}
		e, ok, err := st.index.lookup(s.pages(ctx, st), key)
		if err == nil && !ok {
			return nil, 0, fmt.Errorf("%w: %q", ErrNotFound, key)
		}
		if err == nil {
			var v []byte
			if v, err = s.fetch(ctx, st, e); err == nil {
				return v, e.version, nil
			}
		}
		// A commit may have been proposed and reached the host after we
		// read the committed state (replacing its record, or deleting the
		// index pages it replaced, whichever keys it writes): wait for it
		// and read the new committed view instead of raising a false alarm.
		s.mu.Lock()
		wait = s.core.pendingDone()
		moved := s.core.st != st
		s.mu.Unlock()
		if (wait != nil || moved) && attempt < 16 {
			if wait != nil {
				if err := waitFor(ctx, wait); err != nil {
					return nil, 0, err
				}
			}
			continue
		}
		return nil, 0, fmt.Errorf("kv: get %q: %w", key, err)
	}
}

// waitFor waits until ch is closed or ctx ends.
func waitFor(ctx context.Context, ch <-chan struct{}) error {
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("kv: get: waiting for a commit in flight: %w", ctx.Err())
	}
}

// fetch reads and verifies the record of e.
func (s *Store) fetch(ctx context.Context, st *state, e entry) ([]byte, error) {
	raw, ok, err := s.b.Get(ctx, recordKey(s.loc, e.rid))
	if err != nil {
		return nil, fmt.Errorf("backend: %w", err)
	}
	if !ok {
		return nil, fmt.Errorf("%w: record at version %d", ErrMissingRecord, e.version)
	}
	return s.openRecord(ctx, st, e, raw)
}

// openRecord authenticates a host record under the store's policy and the
// label its header declares, then compares it with what the index
// expects, naming the attack: another store's record (ErrForeignStore),
// another key's record (ErrSwapped), an older version (ErrReplay), a newer
// version than the state lists (ErrRollback: the state under it is old),
// or the right key and version with other contents (ErrReplay: a write the
// host applied but the store never acknowledged).
func (s *Store) openRecord(ctx context.Context, st *state, e entry, raw []byte) ([]byte, error) {
	h, err := decodeRecord(raw)
	if err != nil {
		return nil, err
	}
	plain, err := s.opts.Sealer.Open(ctx, s.opts.Policy, recordLabel(h.store, h.rid, h.version), h.blob)
	if err != nil {
		// The state opened, so this enclave may read the store: a record
		// it cannot open (even one claiming another identity or policy in
		// its seal header) was changed or made up.
		return nil, fmt.Errorf("%w: record: %w", ErrTampered, err)
	}
	sum := sha256.Sum256(raw)
	switch {
	case h.store != st.store:
		err = fmt.Errorf("%w: record sealed for store %x", ErrForeignStore, h.store[:4])
	case h.rid != e.rid:
		err = fmt.Errorf("%w: record of id %x served for id %x", ErrSwapped, h.rid[:4], e.rid[:4])
	case h.version < e.version:
		err = fmt.Errorf("%w: record version %d, state lists %d", ErrReplay, h.version, e.version)
	case h.version > e.version:
		err = fmt.Errorf("%w: record version %d is newer than state's %d", ErrRollback, h.version, e.version)
	case subtle.ConstantTimeCompare(sum[:], e.sum[:]) != 1:
		err = fmt.Errorf("%w: record version %d is authentic but not the one the state committed (a write that was never acknowledged)", ErrReplay, h.version)
	default:
		return plain, nil
	}
	clear(plain)
	return nil, err
}

// List returns the names of the keys that start with prefix, sorted, from
// the committed index (its pages are read from the host and verified).
func (s *Store) List(ctx context.Context, prefix string) ([]string, error) {
	for attempt := 0; ; attempt++ {
		s.mu.Lock()
		if s.err != nil {
			err := s.err
			s.mu.Unlock()
			return nil, err
		}
		st := s.core.st
		s.mu.Unlock()
		var out []string
		err := st.index.scan(s.pages(ctx, st), prefix, func(it leafItem) bool {
			if !strings.HasPrefix(it.name, prefix) {
				return false
			}
			out = append(out, it.name)
			return true
		})
		if err == nil {
			return out, nil
		}
		// As in get: a commit in flight may have deleted pages of st.
		s.mu.Lock()
		wait := s.core.pendingDone()
		moved := s.core.st != st
		s.mu.Unlock()
		if (wait == nil && !moved) || attempt >= 16 {
			return nil, fmt.Errorf("kv: list %q: %w", prefix, err)
		}
		if wait != nil {
			if err := waitFor(ctx, wait); err != nil {
				return nil, err
			}
		}
	}
}

// Put sets key to value. It returns once the value is durable on the host
// and the trusted counter has moved: an acknowledged Put survives any
// crash.
func (s *Store) Put(ctx context.Context, key string, value []byte) error {
	if err := checkKeyName(key); err != nil {
		return err
	}
	if len(value) > MaxValueSize {
		return fmt.Errorf("%w: value of %d bytes, limit %d", ErrTooLarge, len(value), MaxValueSize)
	}
	return s.submit(ctx, group{changes: []change{{name: key, value: bytes.Clone(value)}}})
}

// Delete removes key; deleting a missing key is not an error. It returns
// once the deletion is committed, as Put does.
func (s *Store) Delete(ctx context.Context, key string) error {
	if err := checkKeyName(key); err != nil {
		return err
	}
	return s.submit(ctx, group{changes: []change{{name: key, del: true}}})
}

func checkKeyName(key string) error {
	if key == "" || len(key) > MaxKeySize {
		return fmt.Errorf("%w: key of %d bytes, want 1 to %d", ErrTooLarge, len(key), MaxKeySize)
	}
	return nil
}

// Tx is the view of an Update: reads see the committed store plus the
// transaction's own writes, and the writes commit together or not at all.
type Tx struct {
	s      *Store
	ctx    context.Context
	reads  map[string]uint64
	writes map[string]change
	order  []string
}

// Get reads key inside the transaction.
func (tx *Tx) Get(key string) ([]byte, error) {
	if w, ok := tx.writes[key]; ok {
		if w.del {
			return nil, fmt.Errorf("%w: %q", ErrNotFound, key)
		}
		return bytes.Clone(w.value), nil
	}
	v, ver, err := tx.s.get(tx.ctx, key)
	if err != nil && !errors.Is(err, ErrNotFound) {
		return nil, err
	}
	if _, seen := tx.reads[key]; !seen {
		tx.reads[key] = ver
	} else if tx.reads[key] != ver {
		return nil, fmt.Errorf("%w: %q changed during the transaction", ErrConflict, key)
	}
	return v, err
}

// Put sets key inside the transaction.
func (tx *Tx) Put(key string, value []byte) error {
	if err := checkKeyName(key); err != nil {
		return err
	}
	if len(value) > MaxValueSize {
		return fmt.Errorf("%w: value of %d bytes", ErrTooLarge, len(value))
	}
	tx.set(change{name: key, value: bytes.Clone(value)})
	return nil
}

// Delete removes key inside the transaction.
func (tx *Tx) Delete(key string) error {
	if err := checkKeyName(key); err != nil {
		return err
	}
	tx.set(change{name: key, del: true})
	return nil
}

func (tx *Tx) set(c change) {
	if _, ok := tx.writes[c.name]; !ok {
		tx.order = append(tx.order, c.name)
	}
	tx.writes[c.name] = c
}

// Update runs fn and commits its writes atomically: after a crash either
// all of them are there or none. If a key fn read was changed by another
// writer before the commit, fn runs again (up to a few times, then
// ErrConflict); an fn that writes nothing has its reads checked against
// one committed state the same way, so it never sees a torn view; fn must therefore have no side effects besides tx. An
// error from fn aborts without writing.
func (s *Store) Update(ctx context.Context, fn func(tx *Tx) error) error {
	var err error
	for range updateRetries {
		tx := &Tx{s: s, ctx: ctx, reads: map[string]uint64{}, writes: map[string]change{}}
		if err = fn(tx); err != nil {
			if errors.Is(err, ErrConflict) {
				continue
			}
			return err
		}
		if len(tx.writes) == 0 {
			// Nothing to commit, but fn's reads must still be of one
			// committed state: check them all against the current one.
			if err = s.validateReads(ctx, tx.reads); errors.Is(err, ErrConflict) {
				continue
			}
			return err
		}
		g := group{reads: tx.reads}
		for _, n := range tx.order {
			g.changes = append(g.changes, tx.writes[n])
		}
		if err = s.submit(ctx, g); !errors.Is(err, ErrConflict) {
			return err
		}
	}
	return err
}

// validateReads checks that every key in reads (name to the entry version
// a Tx saw, 0: absent) has that version in one committed state, the
// current one: ErrConflict otherwise. It reads index pages only.
func (s *Store) validateReads(ctx context.Context, reads map[string]uint64) error {
	for attempt := 0; ; attempt++ {
		s.mu.Lock()
		if s.err != nil {
			err := s.err
			s.mu.Unlock()
			return err
		}
		st := s.core.st
		s.mu.Unlock()
		var err error
		for name, seen := range reads {
			var e entry
			var ok bool
			if e, ok, err = st.index.lookup(s.pages(ctx, st), name); err != nil {
				break
			}
			if !ok {
				e.version = 0
			}
			if e.version != seen {
				return fmt.Errorf("%w: %q changed during the transaction", ErrConflict, name)
			}
		}
		if err == nil {
			return nil
		}
		// As in get: a commit in flight may have deleted pages of st.
		s.mu.Lock()
		wait := s.core.pendingDone()
		moved := s.core.st != st
		s.mu.Unlock()
		if (wait == nil && !moved) || attempt >= 16 {
			return fmt.Errorf("kv: update: %w", err)
		}
		if wait != nil {
			if err := waitFor(ctx, wait); err != nil {
				return err
			}
		}
	}
}

// submit queues g for the next commit and waits for its outcome. The first
// submitter finding no commit running becomes the leader: it commits
// everything queued, in batches, until the queue is empty; everyone else
// just waits. So N concurrent writers cost about one host round trip and
// one transaction per batch instead of N.
func (s *Store) submit(ctx context.Context, g group) error {
	w := &waiter{g: g, done: make(chan error, 1)}
	s.mu.Lock()
	if s.err != nil {
		err := s.err
		s.mu.Unlock()
		return err
	}
	if size := groupCost(g) + (s.core.st.index.height+1)*pageCost; size > commitBudget {
		s.mu.Unlock()
		// Refused before anything is sent: one host commit could not carry it.
		return fmt.Errorf("%w: %d bytes of records and index pages in one commit, limit %d", ErrTooLarge, size, commitBudget)
	}
	s.queue = append(s.queue, w)
	if s.committing {
		s.mu.Unlock()
		return <-w.done
	}
	s.committing = true
	// Commits run for every waiter, not just the leader: a leader's
	// cancellation must not cut a batch in half.
	cctx := context.WithoutCancel(ctx)
	for len(s.queue) > 0 && s.err == nil {
		batch := s.takeBatch()
		groups := make([]group, len(batch))
		for i, b := range batch {
			groups[i] = b.g
		}
		st := s.core.st
		s.mu.Unlock()
		rd, err := propose(s.pages(cctx, st), st, groups, false)
		if err == nil && !rd.empty() {
			s.mu.Lock()
			err = s.core.setPending(rd)
			s.mu.Unlock()
			if err == nil {
				err = s.execute(cctx, rd)
			}
		}
		s.mu.Lock()
		if errors.Is(err, errBatchTooLarge) && len(batch) > 1 {
			// The estimate let through more pages than one host commit
			// carries; nothing was sent. Retry in halves.
			s.queue = append(batch, s.queue...)
			s.batchCap = len(batch) / 2
			continue
		}
		if s.batchCap > 0 && err == nil {
			s.batchCap += s.batchCap/4 + 1 // grow back slowly
		}
		for i, b := range batch {
			switch {
			case errors.Is(err, errBatchTooLarge):
				b.done <- fmt.Errorf("%w: one commit of %d records and their index pages exceeds the host commit limit", ErrTooLarge, len(b.g.changes))
			case err != nil:
				b.done <- err
			case rd.results[i] != nil:
				b.done <- rd.results[i]
			default:
				b.done <- nil
			}
		}
	}
	for _, b := range s.queue { // only after a sticky error
		b.done <- s.err
	}
	s.queue = nil
	s.committing = false
	s.mu.Unlock()
	return <-w.done
}

// takeBatch removes from the queue as many waiters as fit one commit
// call (at least one). Called with s.mu held.
func (s *Store) takeBatch() []*waiter {
	budget := commitBudget
	h := s.core.st.index.height
	n := 0
	budget -= (h + 1) * pageCost // one path to the root, shared
	for n < len(s.queue) && (s.batchCap == 0 || n < s.batchCap) {
		size := groupCost(s.queue[n].g)
		if n > 0 && budget-size < 0 {
			break
		}
		budget -= size
		n++
	}
	batch := s.queue[:n:n]
	s.queue = s.queue[n:]
	return batch
}

// pageCost is the most host bytes one index page adds to a commit.
const pageCost = maxPageSize + pageRecordHeaderSize + 128

// groupCost estimates the host bytes g adds to a commit: each change's
// record and its leaf item. Changes to keys far apart also rewrite whole
// leaves and the internal pages above them, which the estimate leaves out
// (it cannot know them before reading the index); execute measures the
// real commit and refuses it (errBatchTooLarge, nothing sent) if it does
// not fit, and the batch is retried in halves.
func groupCost(g group) int {
	size := 0
	for _, c := range g.changes {
		size += recordHeaderSize + 128 + len(c.value) + leafItemSize(c.name) + 64
	}
	return size
}

// errBatchTooLarge is execute's refusal of a commit over maxCommitBytes.
var errBatchTooLarge = errors.New("kv: internal: commit over the host limit")

// execute carries out rd following its ordering contract: seal, prepare
// the counter, write in one atomic host commit, commit the counter,
// advance. A failure before anything is sent aborts cleanly; a failure
// after makes the outcome unknown (or names the fork), which is sticky
// until the store is reopened.
func (s *Store) execute(ctx context.Context, rd *ready) error {
	st := rd.next
	ops := make([]Op, 0, len(rd.writes)+len(rd.deletes)+1)
	sums := make([][32]byte, len(rd.writes))
	for i, w := range rd.writes {
		blob, err := s.opts.Sealer.Seal(ctx, s.opts.Policy, recordLabel(st.store, w.rid, rd.version), w.value)
		if err != nil {
			s.abort()
			return fmt.Errorf("kv: commit: seal record: %w", err)
		}
		rec := encodeRecord(recordHeader{store: st.store, rid: w.rid, version: rd.version, blob: blob})
		sums[i] = sha256.Sum256(rec)
		ops = append(ops, Op{Key: recordKey(s.loc, w.rid), Value: rec})
	}
	for _, r := range rd.deletes {
		ops = append(ops, Op{Key: recordKey(s.loc, r), Delete: true})
	}
	tc, plain, err := rd.finish(s.pages(ctx, s.committed()), sums)
	if err != nil {
		s.abort()
		return fmt.Errorf("kv: commit: index: %w", err)
	}
	for ref, pp := range tc.write {
		blob, err := s.opts.Sealer.Seal(ctx, s.opts.Policy, pageLabel(st.store, ref), pp)
		if err != nil {
			s.abort()
			return fmt.Errorf("kv: commit: seal index page: %w", err)
		}
		ops = append(ops, Op{Key: pageKey(s.loc, ref), Value: encodePageRecord(pageRecord{store: st.store, ref: ref, blob: blob})})
	}
	for _, ref := range tc.dead {
		ops = append(ops, Op{Key: pageKey(s.loc, ref), Delete: true})
	}
	blob, err := s.opts.Sealer.Seal(ctx, s.opts.Policy, stateLabel(s.loc, st.store, rd.version), plain)
	clear(plain)
	if err != nil {
		s.abort()
		return fmt.Errorf("kv: commit: seal state: %w", err)
	}
	stateRecord := encodeStateRecord(stateHeader{loc: s.loc, store: st.store, version: rd.version, blob: blob})
	ops = append(ops, Op{Key: stateKey(s.loc), Value: stateRecord})
	size := 0
	for _, op := range ops {
		size += len(op.Key) + len(op.Value) + 16
	}
	if size > maxCommitBytes {
		s.abort()
		return errBatchTooLarge
	}
	digest := sha256.Sum256(stateRecord)

	s.mu.Lock()
	cur := s.core.count
	s.mu.Unlock()
	if cur.Version+1 != rd.version {
		return s.fail(fmt.Errorf("kv: internal: counter at %d, commit is version %d", cur.Version, rd.version))
	}
	// Step 2: prepare. The counter names the state this commit will write.
	prepared := Count{Version: cur.Version, Digest: cur.Digest, Next: digest}
	if err := s.swapCounter(ctx, cur, prepared); err != nil {
		if errors.Is(err, ErrFork) {
			return s.fail(fmt.Errorf("kv: commit of version %d: %w", rd.version, err))
		}
		return s.fail(fmt.Errorf("%w: counter prepare for version %d: %w", ErrCommitUnknown, rd.version, err))
	}
	// Step 3: durable, atomically.
	if err := s.b.Commit(ctx, ops); err != nil {
		return s.fail(fmt.Errorf("%w: host commit of version %d: %w", ErrCommitUnknown, rd.version, err))
	}
	// Step 4: only now may the counter move.
	committed := Count{Version: rd.version, Digest: digest}
	if err := s.swapCounter(ctx, prepared, committed); err != nil {
		if errors.Is(err, ErrFork) {
			return s.fail(fmt.Errorf("kv: commit of version %d: %w", rd.version, err))
		}
		return s.fail(fmt.Errorf("%w: counter for version %d: %w", ErrCommitUnknown, rd.version, err))
	}
	// Step 5. The new pages are verified by construction: cache them.
	for ref, pp := range tc.write {
		if p, err := decodePage(pp); err == nil {
			s.cache.put(ref, p)
		}
	}
	s.mu.Lock()
	s.core.advance(committed)
	s.mu.Unlock()
	return nil
}

// committed returns the committed state.
func (s *Store) committed() *state {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.core.st
}

func (s *Store) abort() {
	s.mu.Lock()
	s.core.abort()
	s.mu.Unlock()
}

// fail makes err sticky: the host may or may not hold the commit, so the
// in-memory index can no longer be trusted to match it. Reopening reads
// back whichever state is durable. Gets waiting for the commit wake up and
// find the sticky error.
func (s *Store) fail(err error) error {
	s.mu.Lock()
	if s.err == nil || errors.Is(s.err, ErrClosed) {
		s.err = err
	}
	s.core.resolve()
	s.mu.Unlock()
	return err
}
