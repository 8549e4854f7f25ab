package kbs

import (
	"crypto/sha256"
	"crypto/sha512"
	"fmt"
	"hash"
	"slices"
	"strings"
	"unicode/utf16"
)

// BindingDigests returns the report data the evidence may carry for
// runtime data rd, hashed with hashAlg: each is the digest of the
// canonical JSON (RFC 8785: members sorted by UTF-16 code units, no
// white space) of a runtime-data object, zero-padded to the 64 bytes of
// report data, as guest-components' client computes it and Trustee
// checks it. Two objects are accepted:
//
//  1. {"additional-evidence": AE, "nonce": N, "tee-pubkey": K}, which
//     current clients hash (AE is additional_evidence as sent, "" when
//     there is no device);
//  2. {"nonce": N, "tee-pubkey": K}, which clients hashed before device
//     evidence existed; only when AE is "".
//
// Both bind the nonce and the key, and additional evidence must be empty
// (ParseAttestation), so accepting either binds the same things. K is
// the tee-pubkey's members as kbs-types defines them (kty, alg and n, e
// or crv, x, y), the only ones ParseAttestation lets through.
func BindingDigests(rd *RuntimeData, additional, hashAlg string) ([][reportDataSize]byte, error) {
	key := map[string]string{"kty": rd.TeePubKey.Kty, "alg": rd.TeePubKey.Alg}
	if rd.TeePubKey.Kty == "RSA" {
		key["n"], key["e"] = rd.TeePubKey.N, rd.TeePubKey.E
	} else {
		key["crv"], key["x"], key["y"] = rd.TeePubKey.Crv, rd.TeePubKey.X, rd.TeePubKey.Y
	}
	objs := []map[string]any{{"additional-evidence": additional, "nonce": rd.Nonce, "tee-pubkey": key}}
	if additional == "" {
		objs = append(objs, map[string]any{"nonce": rd.Nonce, "tee-pubkey": key})
	}
	var out [][reportDataSize]byte
	for _, o := range objs {
		h, err := newHash(hashAlg)
		if err != nil {
			return nil, err
		}
		h.Write(canonicalJSON(nil, o))
		var rdata [reportDataSize]byte
		copy(rdata[:], h.Sum(nil))
		out = append(out, rdata)
	}
	return out, nil
}

func newHash(name string) (hash.Hash, error) {
	switch name {
	case HashSHA256:
		return sha256.New(), nil
	case HashSHA384:
		return sha512.New384(), nil
	case HashSHA512:
		return sha512.New(), nil
	}
	return nil, fmt.Errorf("kbs: unknown hash algorithm %q", name)
}

// canonicalJSON appends the RFC 8785 form of v, which is a string, a
// map[string]string or a map[string]any of those (all runtime data holds):
// members sorted by their names' UTF-16 code units, strings escaped only
// where JSON requires it (", \, and control characters, with the short
// escapes where they exist and \u00xx in lower case otherwise).
func canonicalJSON(dst []byte, v any) []byte {
	switch v := v.(type) {
	case string:
		return appendJCSString(dst, v)
	case map[string]string:
		m := make(map[string]any, len(v))
		for k, s := range v {
			m[k] = s
		}
		return canonicalJSON(dst, m)
	case map[string]any:
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		slices.SortFunc(keys, compareUTF16)
		dst = append(dst, '{')
		for i, k := range keys {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = appendJCSString(dst, k)
			dst = append(dst, ':')
			dst = canonicalJSON(dst, v[k])
		}
		return append(dst, '}')
	}
	panic(fmt.Sprintf("kbs: canonicalJSON: unsupported type %T", v)) // unreachable: callers pass only the types above
}

func compareUTF16(a, b string) int {
	return slices.Compare(utf16.Encode([]rune(a)), utf16.Encode([]rune(b)))
}

func appendJCSString(dst []byte, s string) []byte {
	const hexDigits = "0123456789abcdef"
	dst = append(dst, '"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			dst = append(dst, '\\', c)
		case c == '\b':
			dst = append(dst, '\\', 'b')
		case c == '\f':
			dst = append(dst, '\\', 'f')
		case c == '\n':
			dst = append(dst, '\\', 'n')
		case c == '\r':
			dst = append(dst, '\\', 'r')
		case c == '\t':
			dst = append(dst, '\\', 't')
		case c < 0x20:
			dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
		default:
			dst = append(dst, c)
		}
	}
	return append(dst, '"')
}

// keyString names a runtime key for messages: its kty, alg and curve.
func keyString(k *TeePubKey) string {
	parts := []string{k.Kty, k.Alg}
	if k.Crv != "" {
		parts = append(parts, k.Crv)
	}
	return strings.Join(parts, " ")
}
