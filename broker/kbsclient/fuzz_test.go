package kbsclient

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"testing"
)

// The broker's answers are parsed here before anything is trusted: no
// input panics, a challenge without a nonce never parses, and junk never
// decrypts. Seeds are real answers of broker/kbs (the challenge form and
// a resource JWE layout).
func FuzzParseAnswers(f *testing.F) {
	f.Add([]byte(`{"nonce":"bm9uY2Ug","extra-params":{"selected-hash-algorithm":"sha384"}}`))
	f.Add([]byte(`{"nonce":"x","extra-params":""}`))
	f.Add([]byte(`{"protected":"eyJhbGciOiJFQ0RILUVTK0EyNTZLVyIsImVuYyI6IkEyNTZHQ00ifQ","encrypted_key":"AA","iv":"AA","ciphertext":"AA","tag":"AA"}`))
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if ch, err := parseChallenge(b); err == nil && ch.Nonce == "" {
			t.Fatal("a challenge without a nonce parsed")
		}
		if out, err := DecryptResponse(b, key); err == nil {
			t.Fatalf("junk decrypted to %q", out)
		}
	})
}
