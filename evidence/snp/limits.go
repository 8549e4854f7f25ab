package snp

// Caps on everything Verify takes from outside. They are far above what AMD
// hardware and the Key Distribution Service produce, and exist so that a
// hostile certificate table or chain cannot make the verifier parse or
// verify without bound.
const (
	// maxCertSize caps one DER or PEM certificate (a VCEK is about 1.4 KiB,
	// an ASK or ARK about 1.6 KiB).
	maxCertSize = 16 << 10
	// maxCertTableSize caps the SNP extended-report certificate table. The
	// GHCB protocol hands it over in guest pages; a few pages hold the
	// VCEK/VLEK, ASK and ARK with room to spare.
	maxCertTableSize = 256 << 10
	// maxCertTableEntries caps the GUID table entries (not counting the
	// all-zero terminator).
	maxCertTableEntries = 32
	// maxChainCerts caps the PEM certificates in Options.Chain.
	maxChainCerts = 8
	// maxChainSize caps the PEM text of Options.Chain.
	maxChainSize = maxChainCerts * maxCertSize
	// maxTrustRoots caps Options.TrustRoots.
	maxTrustRoots = 16
)
