package kbs

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

// BenchmarkResourceGet is the handler cost of one resource request within
// an attested session (no network): policy decision (cached), sealed
// store read, JWE to a P-256 key.
func BenchmarkResourceGet(b *testing.B) {
	e := newEnv(b)
	e.setPolicy("", allowTestApp)
	e.adminDo("PUT", Prefix+"/resource/r/t/x", make([]byte, 32))
	c := e.client(TeeSGX)
	c.handshake()
	req := httptest.NewRequest("GET", Prefix+"/resource/r/t/x", nil)
	req.AddCookie(&http.Cookie{Name: SessionCookie, Value: c.cookie})
	b.ReportAllocs()
	for b.Loop() {
		w := httptest.NewRecorder()
		e.srv.ServeHTTP(w, req)
		if w.Code != 200 {
			b.Fatal(w.Code, w.Body.String())
		}
	}
}

// BenchmarkFlow is one whole KBS flow over loopback HTTP, the guest's
// quote included.
func BenchmarkFlow(b *testing.B) {
	e := newEnv(b)
	e.setPolicy("", allowTestApp)
	e.adminDo("PUT", Prefix+"/resource/r/t/x", make([]byte, 32))
	b.ReportAllocs()
	for b.Loop() {
		c := e.client(TeeSGX)
		c.handshake()
		if code, body := c.get("r/t/x", false); code != 200 {
			b.Fatal(code, string(body))
		}
	}
}
