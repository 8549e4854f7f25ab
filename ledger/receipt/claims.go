package receipt

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"fmt"

	"github.com/go-json-experiment/json/jsontext"
)

// Claim kinds and the one protocol ACL defines (azure-confidentialledger's
// receipt/_claims_digest_computation.py).
const (
	KindLedgerEntry     = "LedgerEntry"
	KindClaimDigest     = "ClaimDigest"
	ProtocolLedgerEntry = "LedgerEntryV1"
)

// Claim is one ACL application claim: a ledger entry revealed in full
// (LedgerEntry) or only its digest (ClaimDigest). Exactly one of LedgerEntry
// and Digest is set, as Kind says.
type Claim struct {
	Kind        string
	LedgerEntry *LedgerEntryClaim
	Digest      *DigestClaim
}

// LedgerEntryClaim is an entry as ACL commits to it. SecretKey is the
// per-entry HMAC key ACL returns with the claims; it hides the contents from
// anyone who holds only the receipt.
type LedgerEntryClaim struct {
	Protocol     string
	CollectionID string
	Contents     string
	SecretKey    []byte
}

// DigestClaim is a claim revealed only by its digest under Protocol.
type DigestClaim struct {
	Protocol string
	Value    [32]byte
}

// ParseClaims reads application claims: the JSON array ACL returns as
// "applicationClaims", or an object carrying that member (an ACL response).
func ParseClaims(data []byte) ([]Claim, error) {
	if len(data) > MaxClaimsSize {
		return nil, fail(StepClaims, "", "%d bytes, more than the %d allowed", len(data), MaxClaimsSize)
	}
	v := jsontext.Value(data)
	if v.Kind() == '{' {
		o, err := parseObject("", v)
		if err != nil {
			return nil, asClaims(err)
		}
		cv, where, ok, err := o.get("applicationClaims", "")
		if err != nil {
			return nil, asClaims(err)
		}
		if !ok {
			return nil, fail(StepClaims, where, "missing: want a claims array or an object with applicationClaims")
		}
		return parseClaimsArray(where, cv)
	}
	return parseClaimsArray("", v)
}

// asClaims relabels a format error found in a claims document.
func asClaims(err error) error {
	if v, ok := err.(*VerifyError); ok && v.Step == StepParse {
		return &VerifyError{Step: StepClaims, Where: v.Where, Err: v.Err}
	}
	return err
}

func parseClaimsArray(where string, v jsontext.Value) ([]Claim, error) {
	items, err := array(where, v, MaxClaims)
	if err != nil {
		return nil, asClaims(err)
	}
	if len(items) == 0 {
		// The reference refuses an empty list: a claims digest of no claims
		// is not what a receipt without claims carries (that is all zeros).
		return nil, fail(StepClaims, where, "empty claims list")
	}
	claims := make([]Claim, len(items))
	for i, it := range items {
		if claims[i], err = parseClaim(fmt.Sprintf("%s[%d]", where, i), it); err != nil {
			return nil, asClaims(err)
		}
	}
	return claims, nil
}

func parseClaim(where string, v jsontext.Value) (Claim, error) {
	o, err := parseObject(where, v)
	if err != nil {
		return Claim{}, err
	}
	var c Claim
	if c.Kind, _, _, err = o.str("kind", "", true); err != nil {
		return Claim{}, err
	}
	lv, lwhere, hasEntry, err := o.get("ledgerEntry", "")
	if err != nil {
		return Claim{}, err
	}
	dv, dwhere, hasDigest, err := o.get("digest", "")
	if err != nil {
		return Claim{}, err
	}
	switch c.Kind {
	case KindLedgerEntry:
		if hasDigest {
			return Claim{}, fail(StepClaims, dwhere, "a %s claim with a digest member: one claim, one meaning", c.Kind)
		}
		if !hasEntry {
			return Claim{}, fail(StepClaims, lwhere, "missing")
		}
		e, err := strictObject(lwhere, lv, "collectionId", "contents", "protocol", "secretKey")
		if err != nil {
			return Claim{}, err
		}
		le := &LedgerEntryClaim{CollectionID: e["collectionId"], Contents: e["contents"], Protocol: e["protocol"]}
		if le.SecretKey, err = decodeBase64(e["secretKey"]); err != nil {
			return Claim{}, wrap(StepClaims, lwhere+".secretKey", err)
		}
		c.LedgerEntry = le
	case KindClaimDigest:
		if hasEntry {
			return Claim{}, fail(StepClaims, lwhere, "a %s claim with a ledgerEntry member: one claim, one meaning", c.Kind)
		}
		if !hasDigest {
			return Claim{}, fail(StepClaims, dwhere, "missing")
		}
		d, err := strictObject(dwhere, dv, "protocol", "value")
		if err != nil {
			return Claim{}, err
		}
		value, err := parseDigest(dwhere+".value", d["value"])
		if err != nil {
			return Claim{}, err
		}
		c.Digest = &DigestClaim{Protocol: d["protocol"], Value: value}
	default:
		return Claim{}, fail(StepClaims, where+".kind", "unknown claim kind %q: want %q or %q", c.Kind, KindLedgerEntry, KindClaimDigest)
	}
	return c, nil
}

// strictObject reads an object of exactly the given string members, as the
// reference's dataclasses (LedgerEntryClaim, ClaimDigest) take them: a
// missing or an extra member is an error.
func strictObject(where string, v jsontext.Value, names ...string) (map[string]string, error) {
	o, err := parseObject(where, v)
	if err != nil {
		return nil, err
	}
	out := make(map[string]string, len(names))
	for _, n := range names {
		s, _, _, err := o.str(n, "", true)
		if err != nil {
			return nil, err
		}
		out[n] = s
	}
	if len(o.members) != len(names) {
		for n := range o.members {
			if _, ok := out[n]; !ok {
				return nil, fail(StepClaims, o.path(n), "unknown member")
			}
		}
	}
	return out, nil
}

// ClaimsDigest computes the claims digest ACL puts in a receipt's leaf:
// SHA-256(u32le(len(claims)) ‖ d1 ‖ … ‖ dn), where a LedgerEntry claim's
// d = SHA-256(protocol ‖ SHA-256(HMAC(key, collectionId) ‖ HMAC(key, contents)))
// (HMAC-SHA-256 over the UTF-8 strings; LedgerEntryV1 is the only protocol)
// and a ClaimDigest claim's d = SHA-256(protocol ‖ value). Order matters.
func ClaimsDigest(claims []Claim) ([32]byte, error) {
	if len(claims) == 0 {
		return [32]byte{}, fail(StepClaims, "", "empty claims list")
	}
	if len(claims) > MaxClaims {
		return [32]byte{}, fail(StepClaims, "", "%d claims, more than the %d allowed", len(claims), MaxClaims)
	}
	h := sha256.New()
	var n [4]byte
	binary.LittleEndian.PutUint32(n[:], uint32(len(claims)))
	h.Write(n[:])
	for i, c := range claims {
		d, err := claimDigest(c)
		if err != nil {
			return [32]byte{}, wrap(StepClaims, fmt.Sprintf("[%d]", i), err)
		}
		h.Write(d[:])
	}
	var out [32]byte
	h.Sum(out[:0])
	return out, nil
}

func claimDigest(c Claim) ([32]byte, error) {
	switch {
	case c.Kind == KindLedgerEntry && c.LedgerEntry != nil && c.Digest == nil:
		e := c.LedgerEntry
		if e.Protocol != ProtocolLedgerEntry {
			return [32]byte{}, fmt.Errorf("unsupported ledger entry protocol %q: want %q", e.Protocol, ProtocolLedgerEntry)
		}
		return sha256.Sum256(append([]byte(e.Protocol), LedgerEntryV1Digest(e.SecretKey, e.CollectionID, e.Contents)...)), nil
	case c.Kind == KindClaimDigest && c.Digest != nil && c.LedgerEntry == nil:
		return sha256.Sum256(append([]byte(c.Digest.Protocol), c.Digest.Value[:]...)), nil
	}
	return [32]byte{}, fmt.Errorf("claim of kind %q does not carry exactly its one member", c.Kind)
}

// LedgerEntryV1Digest is the digest of an entry under LedgerEntryV1:
// SHA-256(HMAC-SHA-256(key, collectionId) ‖ HMAC-SHA-256(key, contents)).
// It is the value a ClaimDigest claim reveals in place of the entry. A
// ledger that issues receipts computes it the same way.
func LedgerEntryV1Digest(key []byte, collectionID, contents string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(collectionID))
	col := m.Sum(nil)
	m.Reset()
	m.Write([]byte(contents))
	con := m.Sum(nil)
	d := sha256.Sum256(append(col, con...))
	return d[:]
}
