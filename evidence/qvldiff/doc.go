// Package qvldiff has no code of its own: its tests run Intel's Quote
// Verification Library (the sample app AttestationApp, built from
// third_party/intel-qvl by build.sh) beside evidence.Verify on the SGX and TDX
// vectors in testdata, on quotes and collateral re-signed under a test root,
// and on seeded random mutations of both, and fail on any disagreement that is
// not listed, with its reason, in the allowlist and in DESIGN.md ("Deliberate
// differences from Intel's QVL").
//
// The tests need the path of AttestationApp in CLOISTER_QVL_APP. Without it
// they skip, except when CI=true, where they fail: the oracle must run in CI.
package qvldiff
