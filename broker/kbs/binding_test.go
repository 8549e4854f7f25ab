package kbs

import (
	"crypto/sha256"
	"crypto/sha512"
	"encoding/json"
	"testing"
)

// The binding is frozen: the canonical JSON guest-components hashes for a
// fixed runtime-data, byte for byte, in both accepted forms, and the
// digest zero-padded to 64 bytes.
func TestBindingDigestsGolden(t *testing.T) {
	rd := RuntimeData{Nonce: "bm9uY2U=", TeePubKey: TeePubKey{Kty: "EC", Alg: AlgECDHESA256KW, Crv: "P-256", X: "eA", Y: "eQ"}}
	forms := []string{
		`{"additional-evidence":"","nonce":"bm9uY2U=","tee-pubkey":{"alg":"ECDH-ES+A256KW","crv":"P-256","kty":"EC","x":"eA","y":"eQ"}}`,
		`{"nonce":"bm9uY2U=","tee-pubkey":{"alg":"ECDH-ES+A256KW","crv":"P-256","kty":"EC","x":"eA","y":"eQ"}}`,
	}
	got, err := BindingDigests(&rd, "", HashSHA384)
	if err != nil || len(got) != 2 {
		t.Fatalf("%v, %d digests", err, len(got))
	}
	for i, f := range forms {
		var want [64]byte
		d := sha512.Sum384([]byte(f))
		copy(want[:], d[:])
		if got[i] != want {
			t.Errorf("form %d: digest %x, want SHA-384 of %s zero-padded", i, got[i], f)
		}
	}
	// RSA keys hash alg, e, kty, n; sha256 selects SHA-256; a non-empty
	// additional evidence is hashed as sent and allows only the first form.
	rsa := RuntimeData{Nonce: "n", TeePubKey: TeePubKey{Kty: "RSA", Alg: AlgRSAOAEP256, N: "bg", E: "AQAB"}}
	got, _ = BindingDigests(&rsa, "{}", HashSHA256)
	want := sha256.Sum256([]byte(`{"additional-evidence":"{}","nonce":"n","tee-pubkey":{"alg":"RSA-OAEP-256","e":"AQAB","kty":"RSA","n":"bg"}}`))
	if len(got) != 1 || string(got[0][:32]) != string(want[:]) || [32]byte(got[0][32:]) != [32]byte{} {
		t.Errorf("RSA, sha256, additional \"{}\": %x", got)
	}
	if _, err := BindingDigests(&rsa, "", "md5"); err == nil {
		t.Error("an unknown hash was accepted")
	}
}

// RFC 8785 §3.2.3's sorting example: members sorted by UTF-16 code units
// (U+1F600, a surrogate pair, sorts before U+FB33, unlike in UTF-8), and
// strings escaped only where JSON requires.
func TestCanonicalJSONRFC8785(t *testing.T) {
	m := map[string]any{"\u20ac": "Euro Sign", "\r": "Carriage Return", "\ufb33": "Hebrew Letter Dalet With Dagesh",
		"1": "One", "\U0001F600": "Emoji: Grinning Face", "\u0080": "Control", "\u00f6": "Latin Small Letter O With Diaeresis"}
	want := "{\"\\r\":\"Carriage Return\",\"1\":\"One\",\"\u0080\":\"Control\",\"\u00f6\":\"Latin Small Letter O With Diaeresis\"," +
		"\"\u20ac\":\"Euro Sign\",\"\U0001F600\":\"Emoji: Grinning Face\",\"\ufb33\":\"Hebrew Letter Dalet With Dagesh\"}"
	if got := string(canonicalJSON(nil, m)); got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	s := "q\"b\\\b\f\n\r\t\x01\x1f\u2028</>&"
	if got, want := string(canonicalJSON(nil, s)), `"q\"b\\\b\f\n\r\t\u0001\u001f`+"\u2028"+`</>&"`; got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	var back string
	if err := json.Unmarshal(canonicalJSON(nil, s), &back); err != nil || back != s {
		t.Errorf("round trip: %q %v", back, err)
	}
}
