package ratls

import "time"

// All caps on untrusted input and on state live here, so a reviewer sees in
// one place how much a peer's certificate or challenge can make us hold.
const (
	// maxExtensionSize caps one evidence extension value. An SGX or TDX
	// quote with its PCK chain is about 5 KiB; an SEV-SNP configfs-tsm
	// report with its certificate table stays under 16 KiB.
	maxExtensionSize = 64 << 10

	// maxClaimsBufferSize caps the CCC claims buffer. The interop
	// certificates carry 51 to 81 bytes.
	maxClaimsBufferSize = 4 << 10

	// maxClaims caps the entries of the claims map (the interop
	// certificates carry 1 to 3).
	maxClaims = 32

	// maxNesting caps CBOR nesting: tag → array → bstr at the outer level,
	// map → bstr in the claims buffer, array in pubkey-hash. The decoder's
	// smallest allowed value (4) already covers every form we accept.
	maxNesting = 4

	// maxCacheEntries caps the verification cache: one entry per distinct
	// peer certificate seen within its lifetime.
	maxCacheEntries = 1024

	// defaultCacheTTL bounds how long a cached result is trusted even when
	// the certificate, PCK chain and collateral would allow longer: Intel
	// publishes revocations and TCB recoveries between nextUpdate dates.
	defaultCacheTTL = time.Hour

	// defaultValidity and the renewal margin of our own certificates. Short
	// lifetimes keep the evidence in them recent.
	defaultValidity = 24 * time.Hour

	// certBackdate is how far before "now" a certificate's NotBefore is set,
	// so peers whose clocks lag a little still accept it.
	certBackdate = 5 * time.Minute

	// Freshness challenge sizes: the client's nonce, the exporter length,
	// and the largest evidence a challenge response may carry.
	minNonceSize     = 16
	maxNonceSize     = 64
	exporterSize     = 32
	maxChallengeBody = maxNonceSize
	maxChallengeResp = maxExtensionSize

	// maxExtraClaims caps the size of caller claims put in our own claims
	// buffer (it must fit maxClaimsBufferSize with pubkey-hash).
	maxExtraClaimsSize = maxClaimsBufferSize - 128
)
