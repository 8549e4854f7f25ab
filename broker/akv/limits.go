package akv

// Caps on what clients and authorities send. Real documents are far below
// them; they bound the work and memory a hostile request can cost.
const (
	// MaxBody caps a request body. A release request carries one token,
	// and a token with collateral claims is tens of KiB.
	MaxBody = 1 << 20
	// MaxToken caps the attestation token of a release request.
	MaxToken = 256 << 10
	// MaxPolicySize caps a release policy document (decoded).
	MaxPolicySize = 32 << 10
	// MaxPolicyAuthorities caps the authorities of a policy's anyOf.
	MaxPolicyAuthorities = 32
	// MaxPolicyConditions caps the conditions of a policy, nested ones included.
	MaxPolicyConditions = 512
	// MaxPolicyDepth caps the nesting of anyOf/allOf under an authority.
	MaxPolicyDepth = 16
	// MaxClaimName caps a claim name in dot notation.
	MaxClaimName = 256
	// MaxJWKS caps an authority's discovery document and key set.
	MaxJWKS = 1 << 20
	// MaxTags caps the tags of a key; Azure allows 15.
	MaxTags = 15
	// MaxTagSize caps a tag name and a tag value; Azure allows 512 and 256.
	MaxTagSize = 512
	// MinTransferKeyBits and MaxTransferKeyBits bound the RSA key of a
	// token's x-ms-runtime keys that a released key is wrapped to: below
	// 2048 bits it protects too little; above 8192 it only costs time.
	MinTransferKeyBits = 2048
	MaxTransferKeyBits = 8192
)
