package pcs

import "time"

// All size and count caps of the package live here, so that a reviewer can
// see in one place how much untrusted input any code path will accept.
const (
	// maxBundleSize caps a collateral bundle file. Real bundles are 14-16 KiB;
	// a PCK CRL with a few thousand entries still fits twice over in hex.
	maxBundleSize = 1 << 20

	// maxResponseSize caps one PCS response body (and one saved response
	// file given to AssembleBundle). The largest real item, the PCK Platform
	// CA CRL, is a few KiB.
	maxResponseSize = 512 << 10

	// maxCacheEntrySize caps one cache file: the body in base64 plus the
	// issuer-chain headers, with room to spare.
	maxCacheEntrySize = 2 * maxResponseSize

	// maxSignedTextSize caps the signed tcbInfo / enclaveIdentity text.
	maxSignedTextSize = 256 << 10

	// maxCRLSize caps one DER CRL.
	maxCRLSize = 256 << 10

	// maxChainCerts caps the certificates in one PEM issuer chain. Intel's
	// issuer chains have 2 (signing or intermediate CA, then root).
	maxChainCerts = 4

	// signatureSize is the size of a raw P-256 ECDSA signature r||s, and
	// signatureHexLen its length in hex.
	signatureSize   = 64
	signatureHexLen = 2 * signatureSize

	// fmspcSize is the size of an FMSPC.
	fmspcSize = 6

	// defaultHTTPTimeout bounds one request made by a zero HTTPGetter, so a
	// stalled server cannot hang a caller that passed a context without a
	// deadline.
	defaultHTTPTimeout = 60 * time.Second
)
