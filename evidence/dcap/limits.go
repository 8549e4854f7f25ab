package dcap

// Caps on every length read from a quote or from collateral, so that no
// input can make the verifier allocate or loop without bound. Real quotes
// are about 5 KiB; the caps leave generous room.
const (
	// MaxQuoteSize caps a whole quote.
	MaxQuoteSize = 64 << 10
	// MaxAuthDataSize caps the QE authentication data.
	MaxAuthDataSize = 4 << 10
	// MaxCertDataSize caps the certification data (PEM PCK chain).
	MaxCertDataSize = 32 << 10
	// MaxChainLength caps the number of certificates in any chain.
	MaxChainLength = 5
	// MaxTCBLevels caps the TCB levels read from TCB info or QE identity.
	MaxTCBLevels = 256
	// MaxCRLEntries caps the revoked serials read from one CRL.
	MaxCRLEntries = 100000
)
