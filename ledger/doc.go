// Package ledger is Cloister's confidential ledger: an append-only log kept
// by an enclave, whose entries come back with receipts in the format Azure
// Confidential Ledger (ACL, built on CCF) returns, so that anyone can check
// them offline with the service certificate.
//
// The package is split the way etcd's raft is: a pure core (Core: the
// Merkle tree, transaction ids, signature transactions, users, counters,
// no I/O, no goroutines, no clock) that a driver feeds with records, and
// drivers around it: Storage keeps the records in sealed, authenticated,
// hash-chained segments on the host; Node is the single-node driver (group
// commit, signature transactions every SignEvery records or SignInterval);
// a replicated driver (issue 19) can feed the same Core from a raft log.
//
// # Receipts
//
// Every transaction (entry, signature, user change, counter change) is a
// leaf of one Merkle tree. A leaf is SHA-256(writeSetDigest ‖
// SHA-256(commitEvidence) ‖ claimsDigest) and an inner node is
// SHA-256(left ‖ right), with no domain prefix, as CCF hashes its tree. A
// signature transaction at seqno s signs, with the node key, the root of
// the tree of the s-1 transactions before it; the ECDSA signature is over
// the root taken as a SHA-256 digest (CCF signs the root prehashed). An
// entry's receipt is its leaf components, the inclusion proof to the root
// of the first signature after it, that signature, the node certificate
// (issued by the service key) and the node id, the hex SHA-256 of the node
// public key's DER SubjectPublicKeyInfo.
//
// Application claims follow ACL's LedgerEntryV1: with a per-transaction
// secret key k, the claim digest is SHA-256("LedgerEntryV1" ‖
// SHA-256(HMAC(k, collectionId) ‖ HMAC(k, contents))) and the claims
// digest of the receipt is SHA-256(uint32le(count) ‖ each claim digest).
package ledger
