package receipt

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"testing"
)

// The digests the Python SDK's tests pin: the LedgerEntryV1 claim of
// "Hello world" in subledger:0 digests to the ClaimDigest value, and both
// claims lists to receipt 3's claims digest.
func TestClaimsDigestPublished(t *testing.T) {
	for _, f := range []string{"acl_receipt_3_claims_ledger_entry.json", "acl_receipt_3_claims_digest.json"} {
		claims, err := ParseClaims(readVector(t, f))
		if err != nil {
			t.Fatal(err)
		}
		d, err := ClaimsDigest(claims)
		if err != nil {
			t.Fatal(err)
		}
		if got := hex.EncodeToString(d[:]); got != receipt3ClaimsDigest {
			t.Errorf("%s: claims digest %s, want %s", f, got, receipt3ClaimsDigest)
		}
	}
	claims, _ := ParseClaims(readVector(t, "acl_receipt_3_claims_ledger_entry.json"))
	e := claims[0].LedgerEntry
	if got := hex.EncodeToString(LedgerEntryV1Digest(e.SecretKey, e.CollectionID, e.Contents)); got != "feb516ef1f903c64f1e388d9ee9fde11f64d1e2bc170248828c9eab9894f9ab9" {
		t.Errorf("LedgerEntryV1 digest %s", got)
	}
}

// Claims as an ACL response carries them ({"applicationClaims": [...]})
// parse as the bare array does; a receipt response carrying them exposes them.
func TestClaimsInResponses(t *testing.T) {
	arr := readVector(t, "acl_receipt_3_claims_ledger_entry.json")
	wrapped := []byte(`{"applicationClaims": ` + string(arr) + `, "state": "Ready"}`)
	claims, err := ParseClaims(wrapped)
	if err != nil || len(claims) != 1 || claims[0].LedgerEntry == nil {
		t.Fatalf("%v %+v", err, claims)
	}
	resp := `{"applicationClaims": ` + string(arr) + `, "receipt": ` + string(readVector(t, "acl_receipt_3_p384.json")) + `, "state": "Ready", "transactionId": "2.13"}`
	r, err := Parse([]byte(resp))
	if err != nil {
		t.Fatal(err)
	}
	res, err := Verify(r, Options{ServiceCert: readVector(t, "acl_receipt_3_service_cert.pem"), Claims: r.ApplicationClaims})
	if err != nil || !res.ClaimsChecked {
		t.Fatalf("%v %+v", err, res)
	}
}

// Every part of a claim, changed, changes the digest, so the receipt is
// refused at the claims step; malformed claims are refused while parsing.
func TestClaimsTamperedRefused(t *testing.T) {
	opts := Options{ServiceCert: readVector(t, "acl_receipt_3_service_cert.pem")}
	receipt := readVector(t, "acl_receipt_3_p384.json")
	entry := `{"kind":"LedgerEntry","ledgerEntry":{"collectionId":"subledger:0","contents":"Hello world","protocol":"LedgerEntryV1","secretKey":"Jde/VvaIfyrjQ/B19P+UJCBwmcrgN7sERStoyHnYO0M="}}`
	digest := `{"kind":"ClaimDigest","digest":{"protocol":"LedgerEntryV1","value":"feb516ef1f903c64f1e388d9ee9fde11f64d1e2bc170248828c9eab9894f9ab9"}}`
	check := func(what, claimsJSON string, parseStep bool) {
		t.Helper()
		claims, err := ParseClaims([]byte(claimsJSON))
		if err != nil {
			if !parseStep {
				t.Errorf("%s: %v", what, err)
			} else if s, _ := StepOf(err); s != StepClaims {
				t.Errorf("%s: %v: want the claims step", what, err)
			}
			return
		}
		if parseStep {
			t.Errorf("%s: parsed", what)
			return
		}
		o := opts
		o.Claims = claims
		wantStep(t, what, receipt, o, StepClaims)
	}
	for _, tc := range []struct{ what, old, new string }{
		{"contents", `"Hello world"`, `"Hello World"`},
		{"contents extended", `"Hello world"`, `"Hello world "`},
		{"collectionId", `"subledger:0"`, `"subledger:1"`},
		{"secretKey", `"Jde/`, `"Jdf/`},
	} {
		check(tc.what, "["+strings.Replace(entry, tc.old, tc.new, 1)+"]", false)
	}
	check("digest value", "["+strings.Replace(digest, `"feb5`, `"feb6`, 1)+"]", false)
	check("digest protocol", "["+strings.Replace(digest, `"protocol":"LedgerEntryV1"`, `"protocol":"LedgerEntryV2"`, 1)+"]", false)
	check("claim twice", "["+entry+","+entry+"]", false)
	check("two claims reordered", "["+digest+","+entry+"]", false)

	// Refused while parsing or computing.
	for _, tc := range []struct{ what, claims string }{
		{"empty list", "[]"},
		{"not a list", `{"kind":"LedgerEntry"}`},
		{"null", "null"},
		{"unknown kind", `[{"kind":"Other"}]`},
		{"kind missing", `[{"ledgerEntry":{}}]`},
		{"ledgerEntry missing", `[{"kind":"LedgerEntry"}]`},
		{"digest missing", `[{"kind":"ClaimDigest"}]`},
		{"both members", `[{"kind":"LedgerEntry","ledgerEntry":{"collectionId":"a","contents":"b","protocol":"LedgerEntryV1","secretKey":""},"digest":{"protocol":"p","value":"` + zeroDigest + `"}}]`},
		{"extra ledgerEntry member", "[" + strings.Replace(entry, `"contents"`, `"x":"y","contents"`, 1) + "]"},
		{"contents not a string", "[" + strings.Replace(entry, `"Hello world"`, `5`, 1) + "]"},
		{"secretKey not base64", "[" + strings.Replace(entry, `"Jde/`, `"Jd!/`, 1) + "]"},
		{"digest value short", "[" + strings.Replace(digest, `"feb5`, `"`, 1) + "]"},
		{"duplicate member", "[" + strings.Replace(entry, `"contents"`, `"contents":"a","contents"`, 1) + "]"},
		{"wrapper without applicationClaims", `{"claims": []}`},
		{"truncated", "[" + entry},
	} {
		check(tc.what, tc.claims, true)
	}
	// An unsupported ledger entry protocol parses but cannot be digested.
	claims, err := ParseClaims([]byte("[" + strings.Replace(entry, `"LedgerEntryV1"`, `"LedgerEntryV2"`, 1) + "]"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ClaimsDigest(claims); err == nil || !strings.Contains(err.Error(), "LedgerEntryV2") {
		t.Errorf("LedgerEntryV2 digested: %v", err)
	}
	if _, err := ClaimsDigest([]Claim{{Kind: KindLedgerEntry}}); err == nil {
		t.Error("a LedgerEntry claim without its entry digested")
	}
	if _, err := ClaimsDigest(nil); err == nil {
		t.Error("no claims digested")
	}
}

// The claims digest is over the count (u32 little-endian) and the claims
// in order (ACL's _compute_claims_hexdigest), recomputed here by hand: one
// claim gives receipt 3's digest, two give SHA-256(02000000 ‖ c ‖ c).
func TestClaimsDigestByHand(t *testing.T) {
	v, _ := hex.DecodeString("feb516ef1f903c64f1e388d9ee9fde11f64d1e2bc170248828c9eab9894f9ab9")
	c := sha256.Sum256(append([]byte("LedgerEntryV1"), v...))
	one := sha256.Sum256(append([]byte{1, 0, 0, 0}, c[:]...))
	if hex.EncodeToString(one[:]) != receipt3ClaimsDigest {
		t.Fatalf("by hand: %x, want %s", one, receipt3ClaimsDigest)
	}
	var claims []Claim
	for _, f := range []string{"acl_receipt_3_claims_ledger_entry.json", "acl_receipt_3_claims_digest.json"} {
		cl, err := ParseClaims(readVector(t, f))
		if err != nil {
			t.Fatal(err)
		}
		claims = append(claims, cl...)
	}
	got, err := ClaimsDigest(claims)
	if err != nil {
		t.Fatal(err)
	}
	want := sha256.Sum256(append(append([]byte{2, 0, 0, 0}, c[:]...), c[:]...))
	if got != want {
		t.Errorf("two claims: %x, want %x", got, want)
	}
}
