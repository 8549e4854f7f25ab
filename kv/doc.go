// Package kv is the enclave's sealed key/value store. The host keeps every
// byte of it and is trusted with none: it cannot read names or values, and
// whatever it changes is reported with a named error instead of wrong data,
// within the limits below, which depend on the trusted Counter.
//
// # What the host sees
//
// Under a prefix derived from a hash of the store name (see format.go):
//
//   - one record per key, under a record id = HMAC-SHA256(MAC key, name),
//     holding the value sealed with seal.Sealer; its seal label binds
//     store id ‖ record id ‖ version;
//   - the index, a Merkle B+-tree of sealed pages of at most 4 KiB (page.go,
//     tree.go): leaves hold each name with its record id, version and the
//     SHA-256 of its record's host bytes; internal pages hold their
//     children's refs; a page's ref is HMAC-SHA256(MAC key, its
//     contents), and pages are never changed, only replaced (copy on
//     write);
//   - one state record, sealed with label locator ‖ store id ‖ version,
//     holding the root page's ref, the index height, the number of keys,
//     the store version and the MAC key.
//
// The state thus covers every page and every record. A commit of k keys
// rewrites the pages on their paths: O(k · log n) bytes, not O(n). The host
// learns the number of keys and pages, record sizes, which records and
// pages are read and written and when, and that a name was written again
// (same id); not names, not values. Every blob is opened under the seal policy the
// store was created with (seal.ErrWrongPolicy otherwise), and each blob
// has its own AES key (seal's per-blob salt), so no number of commits nears
// the AES-GCM nonce bound.
//
// # What is detected
//
// Within one run, with any Counter (tests in attack_test.go,
// attack2_test.go and index_attack_test.go): a record swapped for another
// key's (ErrSwapped), an older value of a record (ErrReplay), an authentic
// value the store never acknowledged, such as a commit the host applied but
// reported as failed (ErrReplay), an older or another index page in place
// of a page (ErrReplay), a changed, truncated or reordered record, page or
// state (ErrTampered), a deleted record or page (ErrMissingRecord), another store's record or state
// (ErrForeignStore), a rollback of the whole store under the running
// enclave (ErrReplay, ErrMissingRecord on reads), and a state or record
// sealed under another policy (ErrUnseal, ErrTampered). Get returns only
// acknowledged data: a read racing a commit waits for it.
//
// Across restarts with the default counter (a new MemCounter per Open):
// Open trusts the first authentic state the host serves. Everything above
// that is inconsistent with that state is still detected, but a rollback of
// the whole store to an earlier state, and a wipe of the whole store
// (Open{Create} then starts an empty one), are NOT detected unless the
// operator pins Options.MinVersion (recording Store.Version after each
// run: then both are ErrRollback). Under seal.PolicySigner, Options.MinSVN
// refuses a state an older release sealed (ErrDowngrade).
//
// With a persistent trusted Counter (the ledger's; kvtest.Counter in
// tests): the above, plus at Open a rollback of the whole store, a wipe
// (ErrRollback), a state of the committed version that is not the committed
// one (ErrRollback), and a state one version past the counter that is not
// the commit this store prepared (ErrFork); a crash at any step of a commit
// reopens without a false alarm, with every acknowledged write present and
// the commit in flight all there or not at all (crash_test.go). A counter
// ahead of the host (the host lost commits), or a host state at the
// counter's version that is not the committed one, makes Open fail with
// ErrRollback until the operator runs Recover, naming the lost versions;
// Recover logs the loss. The counter keeps no history, so Recover accepts
// any authentic state at the version before the lost ones: one the host
// applied for a commit that failed (ErrCommitUnknown) passes too, and then
// more than the named versions is lost.
//
// With one Counter shared by several instances of a store (each on its own
// copy of the host records): the first instance to commit wins; any other
// instance's commit fails with ErrFork before it writes to its host, and
// its copy then fails Open with ErrRollback. An instance that opens while
// another has a commit prepared takes it for a crashed one and clears it:
// that commit then fails with ErrFork after its host write, unacknowledged,
// and its copy fails Open (ErrFork or ErrRollback). Instances with separate
// counters are not detected as forks: each is consistent on its own.
//
// # Commits
//
// Put, Delete and Update go through a pure core (core.go) whose ready value
// lists the records to seal and write and states the ordering contract:
// seal; prepare the counter with the new state's digest; write records and
// state in one atomic host batch (storage.commit, one bbolt transaction);
// move the counter; acknowledge. Concurrent writers are batched into one
// commit (group commit), so N writers cost one host round trip, one host
// transaction (bbolt syncs twice per transaction: data pages, then the
// meta page) and two counter swaps. If a commit's outcome is unknown (the host call or
// the counter failed), the store returns ErrCommitUnknown until reopened,
// and Open accepts exactly the committed state or the prepared one.
//
// # Limits
//
// One commit must fit one storage.commit call (768 KiB): its records and
// the index pages it rewrites. Concurrent writers are batched by an
// estimate and a batch that does not fit is retried in halves; a single
// Update whose keys and pages do not fit is ErrTooLarge (300 keys far
// apart in a store of 40,000 are too many). Open reads every index page
// once, to check that every record is there: O(n). Verified pages are
// cached in enclave memory (up to 8,192 pages: the internal pages of a
// tree of millions of keys, and some leaves).
package kv
