// Package akv is the broker's Azure Key Vault surface for secure key
// release: Microsoft's Key Vault clients (@azure/keyvault-keys and the
// other Azure SDKs) create keys with a release policy, read them and
// release them to an attested environment, unchanged, against a Cloister
// broker.
//
// A key is released only to the holder of an attestation token from an
// authority the operator trusts (Cloister's attestation service or any
// MAA-shaped issuer, by its JWKS), whose claims satisfy the key's release
// policy (Azure's JSON grammar: ParsePolicy, Policy.Evaluate), and only
// wrapped to the RSA key the token carries in x-ms-runtime.keys: RSA-OAEP
// of an ephemeral AES-256 key, then AES key wrap with padding (RFC 5649)
// of the key material (wrap.go), inside a JWS of Azure's release shape
// signed by the vault. Keys are kept in the broker's sealed kv store.
//
// Layers: policy.go and eval.go are the pure release policy parser and
// evaluator; token.go verifies tokens given authorities' keys;
// authority.go fetches key sets over TLS; wrap.go wraps; vault.go is the
// logic of create/get/release; http.go the REST face (challenge auth,
// api-version, Azure's error shape); client.go opens a release result.
package akv
