// Package ratls is attested TLS (RA-TLS): TLS 1.3 whose peer authentication
// is remote attestation instead of a certificate authority.
//
// A Server generates a fresh key pair in the enclave, obtains evidence from
// its tee.Platform that binds the key, and serves a self-signed certificate
// carrying that evidence in the CCC interoperable extension (OID
// 2.23.133.5.4.9; see Form for the layout and the legacy forms it can also
// write). Certificates are renewed before they expire and on Refresh.
//
// A Verifier reads any of those forms (ParseAll: format only), verifies
// the evidence of every form present with evidence.Verify, checks that each
// binds the certificate's key (Evidence.CheckKeyBinding) and that all name
// the same identity, and appraises the claims with policy.Appraise: parse,
// verify, appraise. A policy that names no identity is refused
// (policy.ErrNoIdentity) unless it sets AnyIdentity. Results are cached per
// certificate digest until the certificate, the PCK chain or the collateral
// would expire (or CacheTTL passes), so repeated handshakes skip the quote
// verification.
//
// ClientConfig and ServerConfig return ordinary *tls.Config values (TLS 1.3
// only) whose VerifyConnection is the attestation check; crypto/tls runs it
// on every handshake, session resumptions included. Both sides may attest
// each other (Verifier.ClientConfig with a Server, Verifier.ServerConfig).
//
// Freshness: a client may ask, inside the session, for new evidence whose
// report_data is SHA-512(TLS exporter ‖ nonce) with the exporter label
// ExporterLabel. The server answers at ChallengePath (ChallengeHandler), the
// client checks the answer with Verifier.Challenge or VerifyFresh.
package ratls
