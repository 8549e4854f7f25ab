package tsmreport

// Caps on what Parse accepts and Encode* produce. A configfs-tsm outblob is
// a TDX quote (a few KiB to ~16 KiB with its PCK chain) or an SNP report
// (1184 bytes); an auxblob is the SNP certificate table (a few KiB).
// The caps leave ample room and bound memory for hostile input.
const (
	// MaxEncodedSize caps the JSON or CBOR document.
	MaxEncodedSize = 1 << 20
	// MaxBlobSize caps each decoded blob.
	MaxBlobSize = 512 << 10
	// MaxNameLen caps the provider and service provider names. The kernel's
	// names are short identifiers such as "tdx_guest".
	MaxNameLen = 64
	// maxCBORMapPairs caps the top-level CBOR map: five keys are defined,
	// and fxamacker/cbor's minimum for this option is 16.
	maxCBORMapPairs = 16
	// maxCBORNesting caps CBOR nesting: the document is one flat map, and
	// 4 is fxamacker/cbor's minimum for this option.
	maxCBORNesting = 4
	// maxCBORArrayElements is fxamacker/cbor's minimum: the format has no
	// arrays at all.
	maxCBORArrayElements = 16
)
