// Package kv is the enclave's sealed key/value store. The host keeps every
// byte of it and is trusted with none: it cannot read names or values, and
// if it swaps, replays, deletes, changes or rolls back records, or serves
// another store's, the store says so with a named error instead of
// returning wrong data.
//
// # What the host sees
//
// Under a prefix derived from a hash of the store name (see format.go):
//
//   - one record per key, under a record id = HMAC-SHA256(MAC key, name),
//     holding the value sealed with seal.Sealer; its seal label (AAD) binds
//     store id ‖ record id ‖ version, so a record is only valid for its own
//     key, store and version;
//   - one state record, sealed with label locator ‖ store id ‖ version,
//     holding the index (each name with its record id and version), the
//     store version, the MAC key, and a digest over all (record id,
//     version) pairs.
//
// The MAC key is 32 random bytes made at creation and kept inside the
// sealed state, so it is exactly as protected as the sealing key material
// it is sealed under. It is not derived from the running identity's key on
// purpose: under seal.PolicySigner an upgraded enclave (higher SVN) has a
// different current key, and ids derived from it would strand every record.
//
// # Freshness
//
// Reads are checked against the in-enclave index: the record must exist,
// authenticate under its own label, and carry the version the index lists
// (older: ErrReplay; newer: ErrRollback; another key: ErrSwapped; another
// store: ErrForeignStore; anything else: ErrTampered). The index itself is
// checked at Open against a trusted monotonic Counter and the operator's
// pin (Options.MinVersion). See Counter for what is and is not detected
// across restarts: with the default in-memory counter, a rollback of the
// whole store while the enclave is down is detected only with MinVersion.
//
// # Commits
//
// Put, Delete and Update go through a pure core (core.go) whose ready value
// lists the records to seal and write and the counter value to commit, and
// states the ordering contract: sealed writes durable, in one atomic host
// batch (storage.commit, one bbolt transaction), BEFORE the trusted counter
// moves. Concurrent writers are batched into one commit (group commit), so
// N writers cost one host round trip and one fsync.
//
// # Limits
//
// The index is one sealed record rewritten by every commit, so the number
// of keys is bounded by the host record size (about 256 KiB of index: a few
// thousand keys with short names) and commit cost grows with it. A paged or
// Merkle index would lift that; the record format already carries what it
// needs (record id and version).
//
// If a commit's outcome is unknown (the host call or the counter failed
// after sending), the store returns ErrCommitUnknown until reopened, and
// Open accepts whichever of the two states the host serves (version v, or
// v+1 = counter+1). The host may keep such an unacknowledged state A
// (version v+1), serve v at the reopen, let the enclave commit and
// acknowledge a different v+1 (B), and later serve A in place of B. Both
// carry the version the counter holds, so a counter holding only a number
// cannot tell them apart; a DigestCounter (MemCounter is one) records the
// committed state's digest with each value, and Open refuses A with
// ErrRollback. A persistent counter must be a DigestCounter too (the
// ledger's will be) to close this across restarts.
package kv
