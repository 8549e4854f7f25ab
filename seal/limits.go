package seal

// All size caps of the package live here, so that a reviewer can see in one
// place how much untrusted input Open will accept and how much Seal will
// produce.
const (
	// MaxPlaintextSize caps what one blob may carry. Sealed records are state
	// (keys, counters, store pages), not bulk data; the cap bounds the memory
	// Open allocates for a hostile blob. Callers with more data split it.
	MaxPlaintextSize = 64 << 20

	// MaxLabelSize caps the caller label. Labels are record keys or
	// purposes; the cap only stops a mistake from hashing megabytes into
	// every GCM call.
	MaxLabelSize = 64 << 10

	// MaxMeasurementSize caps Identity.Measurement. SGX MRENCLAVE is 32
	// bytes; TDX MRTD and the SNP launch measurement are 48.
	MaxMeasurementSize = 64

	// MaxSignerSize caps Identity.Signer. SGX MRSIGNER is 32 bytes; the SNP
	// author key digest is 48.
	MaxSignerSize = 64

	// MaxKDFContextSize caps the kdf context field on the wire. It is looser
	// than any context Seal writes (at most MaxSignerSize+4), so the length
	// is checked before any field is decoded and the field checks still
	// apply after.
	MaxKDFContextSize = 256

	// MinKeyMaterialSize is the least key material a KeySource may return,
	// and the least root DeriveKey accepts: 128 bits, the size of the SGX
	// sealing keys Gramine exposes.
	MinKeyMaterialSize = 16

	// MaxKeyMaterialSize caps what a KeySource may return; anything longer
	// is a bug in the platform layer, not a stronger key.
	MaxKeyMaterialSize = 64

	// maxBlobSize is the largest blob Seal can produce; Open rejects longer
	// input before looking at it.
	maxBlobSize = maxHeaderSize + MaxPlaintextSize + tagSize
)
