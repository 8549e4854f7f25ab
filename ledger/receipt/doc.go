// Package receipt parses and verifies Azure Confidential Ledger (ACL) write
// transaction receipts offline, as Microsoft's "Verify Azure Confidential
// Ledger write transaction receipts" and CCF's receipt documentation describe
// them, with the azure-confidentialledger Python SDK's receipt verification
// (azure.confidentialledger.receipt) as the reference implementation. It is
// pure: bytes in, a Result or an error out; no I/O, no clock.
//
// A receipt proves that one transaction is in the ledger's Merkle tree under
// a root that a node of the service signed:
//
//  1. application claims, when the caller gives them: their digest (the
//     ACL claims digest, see ClaimsDigest) must equal leafComponents.claimsDigest;
//  2. the node certificate (cert) must be endorsed by the service
//     certificate the caller trusts, directly or through the
//     serviceEndorsements chain (oldest previous service identity first):
//     each certificate's signature is checked with the next one's ECDSA key,
//     the last by the service certificate's;
//  3. leaf = SHA-256(writeSetDigest ‖ SHA-256(commitEvidence) ‖ claimsDigest);
//  4. root = the fold of the proof over the leaf: {"left": h} gives
//     SHA-256(h ‖ cur), {"right": h} gives SHA-256(cur ‖ h), in the given order;
//  5. nodeId, when present, must be SHA-256 of the node key's DER
//     SubjectPublicKeyInfo;
//  6. signature (base64 of a DER ECDSA signature) must verify over the root
//     with the node certificate's key. The 32-byte root is the signed digest
//     itself, on any curve (CCF signs the root with sign_hash; the reference
//     verifies with Prehashed(SHA-256)); a P-384 key verifies it as OpenSSL does.
//
// Certificate validity periods are not checked, as in the reference: a
// receipt is evidence of a signature made in the past, and ACL node and
// service certificates live about 90 days (every published receipt's expired
// in 2022 or 2023). Trust comes from the service certificate the caller names.
//
// Deliberate differences from the reference, all stricter (fail closed):
//   - digests (writeSetDigest, claimsDigest, proof hashes, nodeId, a
//     ClaimDigest value) must be exactly 64 hex digits; Python's bytes.fromhex
//     takes any length and spaces. CCF only ever writes SHA-256 digests, and a
//     shorter claimsDigest would shift the leaf's bytes.
//   - a JSON object with two members of one name is refused (Python keeps the
//     last); a field given in both spellings (nodeId and node_id) is refused
//     (the reference's camel-case conversion would keep one silently). Only
//     the snake_case names ACL has written are read (node_id, leaf_components,
//     claims_digest, commit_evidence, write_set_digest, service_endorsements,
//     is_signature_transaction), not any name that converts to a field.
//   - the signature must be standard padded base64 without line breaks, and
//     each PEM string exactly one CERTIFICATE block as Go's encoding/pem
//     reads it (the reference's reader also takes an END line that does not
//     begin a line).
//   - a receipt marked is_signature_transaction true is refused: Microsoft's
//     verification guide refuses signature transaction receipts for ACL.
//   - in an ACL GET receipt response, a non-empty transactionId must name the
//     transaction of the receipt's commit evidence ("ce:VIEW.SEQNO:…"), so a
//     response cannot present a proof of one transaction as another's.
//   - certificates are parsed by Go's crypto/x509 after a walk of their DER
//     structure (der.go), which together refuse encodings the reference's
//     pyca/cryptography reads: a BIT STRING (signature or key) declaring
//     unused bits, differing inner and outer signature algorithms, malformed
//     extension values or name strings. A test (refdiff_test.go) runs every
//     published receipt and thousands of mutations through both stacks; these
//     encodings and the transactionId check are the only verdicts that
//     differ, and only this way round.
//   - an endorsement signed with SHA-1 is refused (the reference's
//     cryptography library accepts it); ACL signs with ECDSA and SHA-256 or
//     SHA-384.
//   - resource caps (limits.go) bound what hostile input can make it do.
package receipt
