package appsign

// All caps and bounds of the package live here, so a reviewer sees every
// limit at once (STYLE.md "All caps live in one file").
const (
	// MaxConfigSize caps enclave.json. A configuration is five small
	// fields; the cap only stops a wrong path (a binary, a log) from being
	// read whole into memory.
	MaxConfigSize = 64 << 10
	// MaxSignatureSize caps an APP.sig file. A version 1 file is about
	// 1.7 KiB (two 384-byte values in hex plus the configuration).
	MaxSignatureSize = 64 << 10
	// MaxKeySize caps a key PEM file. An RSA-3072 private key is about
	// 2.5 KiB in PEM.
	MaxKeySize = 64 << 10

	// MinHeapMB and MaxHeapMB bound Config.HeapMB. 64 GiB is beyond any
	// EPC an SGX enclave is given today and well within a u32.
	MinHeapMB = 1
	MaxHeapMB = 64 << 10
	// MinThreads and MaxThreads bound Config.Threads (SGX TCS count).
	MinThreads = 1
	MaxThreads = 4096
)
