package kbs

import (
	"crypto/ed25519"
	"crypto/elliptic"
	"encoding/base64"
	"encoding/json"
	"testing"
	"time"

	jsonv2 "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
)

// seedAttestations are real Attestations: sim SGX and TDX quotes binding
// EC and RSA keys, as the flow test sends them.
func seedAttestations(t testing.TB) [][]byte {
	e := newEnv(t)
	var out [][]byte
	for _, tee := range []string{TeeSGX, TeeTDX} {
		c := e.client(tee)
		c.auth()
		out = append(out, c.attestation(RuntimeData{Nonce: c.nonce, TeePubKey: c.pub}, c.plat))
		_, rsaPub := newRSAKey(t)
		out = append(out, c.attestation(RuntimeData{Nonce: c.nonce, TeePubKey: rsaPub}, c.plat))
	}
	_, p521 := newECKey(t, elliptic.P521())
	out = append(out, attestationJSON(RuntimeData{Nonce: "n", TeePubKey: p521}, map[string]any{"tsm": "e30="}, "{}"))
	return out
}

func FuzzParseRequest(f *testing.F) {
	for _, tee := range []string{TeeSGX, TeeTDX, TeeSNP} {
		f.Add(authBody(tee))
	}
	f.Add([]byte(`{"version":"0.4.0","tee":"sgx","extra-params":""}`))
	f.Add([]byte(`{"version":"0.4.0","tee":"snp","extra-params":{"supported-hash-algorithms":["SHA512"]}}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		req, hash, err := ParseRequest(body)
		if err != nil {
			return
		}
		if req.Version != ProtocolVersion || !teeMatches(req.Tee, map[string]string{TeeSGX: "sgx", TeeTDX: "tdx", TeeSNP: "sev-snp"}[req.Tee]) {
			t.Fatalf("accepted %+v", req)
		}
		if _, err := newHash(hash); err != nil {
			t.Fatalf("selected %q", hash)
		}
	})
}

// FuzzParseAttestation: whatever parses has a usable key and a binding,
// and its runtime data's canonical JSON is JSON that reads back the same.
func FuzzParseAttestation(f *testing.F) {
	for _, s := range seedAttestations(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		a, err := ParseAttestation(body)
		if err != nil {
			return
		}
		if _, err := a.RuntimeData.TeePubKey.Parse(); err != nil {
			t.Fatalf("accepted an unusable key: %v", err)
		}
		ds, err := BindingDigests(&a.RuntimeData, a.TeeEvidence.AdditionalEvidence, HashSHA384)
		if err != nil || len(ds) == 0 {
			t.Fatalf("binding: %v", err)
		}
		var back map[string]any
		canon := canonicalJSON(nil, map[string]any{"nonce": a.RuntimeData.Nonce})
		if err := json.Unmarshal(canon, &back); err != nil || back["nonce"] != a.RuntimeData.Nonce {
			t.Fatalf("canonical JSON %q does not read back: %v", canon, err)
		}
		for _, tee := range []string{TeeSGX, TeeTDX, TeeSNP} {
			decodeEvidence(tee, a.TeeEvidence.PrimaryEvidence) // must not panic
		}
	})
}

// FuzzDecodeEvidence: an accepted primary_evidence names one form that
// matches the session's TEE.
func FuzzDecodeEvidence(f *testing.F) {
	for _, s := range seedAttestations(f) {
		var a struct {
			TE struct {
				PE jsontext.Value `json:"primary_evidence"`
			} `json:"tee-evidence"`
		}
		if err := jsonv2.Unmarshal(s, &a); err != nil {
			f.Fatal(err)
		}
		f.Add([]byte(a.TE.PE), uint8(0))
		f.Add([]byte(a.TE.PE), uint8(1))
	}
	f.Add([]byte(`{"report":"AAAA","vcek":"AAAA","cert_chain":"x"}`), uint8(2))
	f.Fuzz(func(t *testing.T, pe []byte, which uint8) {
		tee := []string{TeeSGX, TeeTDX, TeeSNP}[int(which)%3]
		if !jsontext.Value(pe).IsValid() {
			return
		}
		d, err := decodeEvidence(tee, pe)
		if err != nil {
			return
		}
		if len(d.raw) == 0 {
			t.Fatal("accepted empty evidence")
		}
	})
}

// FuzzCheckAdminToken: only the token signed by the admin key passes;
// every other string fails without panicking.
func FuzzCheckAdminToken(f *testing.F) {
	e := newEnv(f)
	good := e.adminToken(time.Hour)
	f.Add(good)
	f.Add("a.b.c")
	f.Add(base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"EdDSA"}`)) + ".e30.")
	keys := []ed25519.PublicKey{e.srv.cfg.AdminKeys[0]}
	now := e.clock.now()
	f.Fuzz(func(t *testing.T, tok string) {
		if err := checkAdminToken(tok, keys, now); err == nil && tok != good {
			// Another encoding of the same signed bytes would be a
			// malleability bug; strict decoding refuses them.
			t.Fatalf("accepted %q", tok)
		}
	})
}

// FuzzBearerToken: a resource request's bearer token is checked (signature,
// issuer, times) before any claim is read; whatever the bytes, check never
// panics, and nothing but the token the broker issued passes.
func FuzzBearerToken(f *testing.F) {
	e := newEnv(f)
	c := e.client(TeeSGX)
	c.handshake()
	f.Add(c.token)
	f.Add("a.b.c")
	f.Add(base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"ES256","kid":"`+e.srv.signer.kid+`"}`)) + ".eyJldmlkZW5jZSI6bnVsbH0.")
	now := e.clock.now()
	f.Fuzz(func(t *testing.T, tok string) {
		g, err := e.srv.signer.check(tok, e.srv.cfg.Issuer, now)
		if err == nil && tok != c.token {
			t.Fatalf("accepted %q", tok)
		}
		if err == nil && g.claims["mrenclave"] == nil {
			t.Fatal("the issued token's grant lost its claims")
		}
	})
}
