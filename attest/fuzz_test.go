package attest

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"
)

// FuzzAttestRequest sends arbitrary bodies to every /attest endpoint of a
// real service (sim PKI, built-in AMD roots): nothing panics, nothing is a
// 5xx, and every answer is MAA's shape, a token or a CloudError with a code
// and a message.
func FuzzAttestRequest(f *testing.F) {
	fx := getFixture(f)
	s := newService(f, fx, "")
	runtime := []byte(`{"a":1}`)
	q := quote(f, fx, runtime, false)
	oe := make([]byte, 16, 16+len(q))
	oe[0], oe[8], oe[9] = 1, byte(len(q)), byte(len(q)>>8)
	oe = append(oe, q...)
	v := loadSNPVector(f)
	for _, seed := range []struct {
		typ  uint8
		body string
	}{
		{0, attestBody(q, runtime, `,"nonce":"n-1"`)},
		{0, attestBody(q, nil, `,"initTimeData":{"data":"eA","dataType":"Binary"}`)},
		{0, attestBody(q, nil, `,"draftPolicyForAttestation":"version=1.0; authorizationrules { => permit(); };"`)},
		{1, fmt.Sprintf(`{"report":%q}`, base64.RawURLEncoding.EncodeToString(oe))},
		{2, attestBody(q, nil, "")},
		{3, snpBody(maaSNPDoc(v.report, v.chainPEM(), ""), nil)},
		{3, fmt.Sprintf(`{"report":%q}`, base64.RawURLEncoding.EncodeToString(v.report))},
		{0, `{"quote":5}`},
		{0, `{`},
		{0, `{"Quote":"AAAA","quote":"AAAA"}`},
	} {
		f.Add(seed.typ, seed.body)
	}
	f.Fuzz(func(t *testing.T, typ uint8, body string) {
		name := types[int(typ)%len(types)]
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, httptest.NewRequest("POST", "/attest/"+name+av, strings.NewReader(body)))
		if rec.Code >= 500 {
			t.Fatalf("%s: status %d: %s", name, rec.Code, rec.Body)
		}
		var out struct {
			Token string
			Error struct{ Code, Message string }
		}
		if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil {
			t.Fatalf("%s: status %d, answer is not JSON: %q", name, rec.Code, rec.Body)
		}
		switch {
		case rec.Code == 200 && strings.Count(out.Token, ".") != 2:
			t.Fatalf("%s: 200 without a compact JWS: %q", name, rec.Body)
		case rec.Code != 200 && (out.Error.Code == "" || out.Error.Message == ""):
			t.Fatalf("%s: status %d without a CloudError code and message: %q", name, rec.Code, rec.Body)
		}
	})
}
