// Package kbs serves the Trustee Key Broker Service protocol, version
// 0.4.0, as Trustee (confidential-containers/trustee, kbs/) and today's
// Confidential Containers guests (guest-components' kbs_protocol RCAR
// client, kbs-types) speak it, so that a CoCo guest can use Cloister's
// broker as its KBS.
//
// # Protocol
//
//	POST /kbs/v0/auth      Request {version "0.4.0", tee, extra-params}
//	                       → Challenge {nonce, extra-params
//	                         {"selected-hash-algorithm"}} and the
//	                         kbs-session-id cookie (Path /kbs/v0,
//	                         HttpOnly, Secure when the broker is https)
//	POST /kbs/v0/attest    Attestation {runtime-data {nonce, tee-pubkey},
//	                       tee-evidence {primary_evidence,
//	                       additional_evidence}} with the cookie
//	                       → {"token": JWT}
//	GET  /kbs/v0/resource/{repository}/{type}/{tag}
//	                       with the cookie or "Authorization: Bearer JWT"
//	                       → the resource as a JWE (Response)
//	GET  /kbs/v0/token-jwks → the key that signs tokens (JWKS)
//
// /auth checks extra-params' tee-metadata when present (the primary TEE
// must be the request's; additional, device TEEs are refused) and selects
// the binding hash from its supported-hash-algorithms (SHA-384 when the
// client lists none or supports it). A challenge is used once: the first /attest on a session consumes its
// nonce, and any later one (a replay, or a retry after a failure) is
// refused; the client starts again at /auth, as guest-components does on
// any failure. Sessions last Config.SessionLifetime from /auth.
//
// # What /attest checks
//
// The nonce is the session's; the tee-pubkey is an EC key on P-256, P-384
// or P-521 for ECDH-ES+A256KW, or an RSA key of 2048 to 8192 bits for
// RSA-OAEP-256 (RSA1_5 is refused); primary_evidence (see decodeEvidence)
// is verified by evidence/ with collateral as the attestation service
// gets it, and must be of the session's tee (sgx, tdx, snp; the simulator
// kinds only when its root is in Config.TrustRoots); its report data must
// be the digest (SHA-384 unless the challenge selected another) of the
// canonical JSON of the runtime data, zero-padded to 64 bytes
// (BindingDigests). additional_evidence (device evidence) must be empty:
// the broker verifies none and refuses what it cannot judge. Event logs
// (cc_eventlog, aa_eventlog) and init-data are not checked: policies see
// the measurement registers, not the logs.
//
// # Tokens
//
// The attestation token is an ES256 JWT signed by the broker's token key
// (a P-256 key created on first start and kept in the sealed store, so
// tokens survive a restart; kid is its RFC 7638 thumbprint, published at
// /kbs/v0/token-jwks). Claims: iss (the broker's URL), iat, nbf, exp
// (Config.TokenLifetime), jti, tee, tee-pubkey (as sent) and evidence (the
// verified claims, as policies see them). As a bearer credential it is checked for signature,
// issuer and times, and its tee-pubkey is the key resources are encrypted
// to, so a stolen token releases nothing readable.
//
// # Resources and policies
//
// Resources, the default resource policy and per-resource policies live
// in a sealed kv store. A write whose commit outcome is unknown (the host
// failed the call) is answered 500 and the store is reopened, as a restart
// would: the broker then serves whichever state the host holds durably. A policy is a Rego v1 module in package cloister
// (policy/rego) deciding data.cloister.allow over the input
//
//	{"tee": "sgx"|"tdx"|"snp",
//	 "claims": {verified claims, as `cloister verify evidence` prints,
//	            without report_data (the binding the broker checked);
//	            numbers exact, so SNP's uint64 TCB versions keep their
//	            low SVNs},
//	 "resource": {"repository", "type", "tag", "path"}}
//
// A resource's own policy, when it has one, governs it; otherwise the
// default policy does; until an administrator sets one, DefaultPolicy
// (release nothing) does. Policies are pure, so decisions are cached by
// input and policy generation: every session of one workload shares them,
// and any policy change drops them all. A policy change governs every
// release that completes after its PUT is answered: a request that
// decided under an older generation decides again before serving.
//
// # Refusals
//
// Every refusal is a kbs-types ErrorInformation {type, detail} whose type
// is Trustee's namespace and name. Malformed requests are 400 (SerdeError,
// InvalidRequestPath), oversized bodies 413; a missing, expired, unknown
// or used session, a bad token, evidence that fails verification, is of
// another TEE or binds another runtime-data are 401 (AttestationError,
// TokenNotFound, TokenVerifierError), as Trustee answers them; a failing
// collateral source, a full session table or more than MaxInFlight
// attestations at once (after QueueWait) are 503 with Retry-After.
//
// A policy denial is 403 (PolicyDeny), as the protocol text says, not the
// 401 Trustee sends: guest-components answers 401 on a resource request by
// running the whole attestation again and retrying, which for a denial
// only repeats the same refusal several times (each time costing an
// attestation); 403 ends the request at once with the reason. A missing
// resource is 404, told only to a requester the policy allows.
//
// # Management
//
// PUT (or Trustee's POST) and DELETE /kbs/v0/resource/{path} store (the
// raw body) and delete resources; POST/PUT and GET /kbs/v0/resource-policy
// set and read the default policy, and PUT, GET and DELETE
// /kbs/v0/resource-policy/{path} a resource's own, with Trustee's body
// {"policy": base64 Rego}. A policy that does not compile is refused. Each
// needs "Authorization: Bearer JWT" signed with EdDSA by an Ed25519 admin
// key (Config.AdminKeys), as Trustee's admin API, with exp and iat and a
// lifetime of at most MaxAdminTokenLifetime (checkAdminToken).
package kbs
