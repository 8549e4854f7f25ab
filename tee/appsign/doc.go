// Package appsign is the identity of a Cloister enclave app: its signed
// configuration (Config, from enclave.json), its measurement MRENCLAVE
// (MeasureReader), its signer MRSIGNER (KeyMRSIGNER), and the signature file
// APP.sig that binds them (Signature), as SGX SIGSTRUCT does for an SGX
// enclave.
//
// Signing keys are RSA-3072 with public exponent 3, the SIGSTRUCT shape,
// so MRSIGNER agrees with SGX tooling for the same key. The sim platform
// reports exactly these values at run time, and `cloister measure` prints
// them.
//
// The steps stay apart (STYLE.md): ParseSignature checks format only,
// Verify checks the key and the signature, Check ties the signature to a
// binary by measuring it.
package appsign
