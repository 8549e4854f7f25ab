package aclapi

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/cloister-dev/cloister/kv/kvtest"
	"github.com/cloister-dev/cloister/ledger"
)

// FuzzAPI drives the handler with hostile requests from an administrator
// (every route open to it): garbage ids, ranges, collection ids, bodies and
// content types. No request may crash it or earn a 5xx, every answer is
// JSON, and every refusal is in ACL's error shape with a code and a message.
func FuzzAPI(f *testing.F) {
	admin := selfSigned(f, "admin")
	n, err := ledger.Open(context.Background(), ledger.Options{
		Backend: kvtest.NewMemBackend(), Sealer: kvtest.Sealer(bytes.Repeat([]byte{3}, 32), 1, 1, 1),
		Now:      func() time.Time { return now },
		Identity: ledger.IdentityOptions{DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}},
		Admins:   []string{UserID(admin.Certificate[0])},
	})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { n.Close() })
	h := Handler(n)
	state := &tls.ConnectionState{}
	cert, err := parseCert(admin.Certificate[0])
	if err != nil {
		f.Fatal(err)
	}
	state.PeerCertificates = append(state.PeerCertificates, cert)

	for _, s := range []struct{ method, target, ctype, body string }{
		{"POST", "/app/transactions?collectionId=c&api-version=2022-05-13", "application/json", `{"contents":"hello"}`},
		{"POST", "/app/transactions?collectionId=%FF&api-version=2022-05-13", "application/json", `{"contents":"x"}`},
		{"POST", "/app/transactions?api-version=2022-05-13", "application/json", `{"contents":"\ud800"}`},
		{"GET", "/app/transactions?collectionId=c&fromTransactionId=2.5&toTransactionId=2.1&api-version=2022-05-13", "", ""},
		{"GET", "/app/transactions?fromTransactionId=3.1&api-version=2022-05-13", "", ""},
		{"GET", "/app/transactions/2.1?collectionId=c&api-version=2022-05-13", "", ""},
		{"GET", "/app/transactions/2.18446744073709551615/receipt?api-version=2022-05-13", "", ""},
		{"GET", "/app/transactions/99999999999999999999.1/status?api-version=2022-05-13", "", ""},
		{"GET", "/app/transactions/current?collectionId=&api-version=2022-05-13", "", ""},
		{"PATCH", "/app/users/AA?api-version=2022-05-13", "application/merge-patch+json", `{"assignedRole":"Reader"}`},
		{"DELETE", "/app/users/AA?api-version=2022-05-13", "", ""},
		{"POST", "/app/counters/k?api-version=2022-05-13", "application/json", `{"expectedVersion":18446744073709551615,"value":"AA=="}`},
		{"GET", "/app/collections?api-version=2022-02-30", "", ""},
	} {
		f.Add(s.method, s.target, s.ctype, s.body)
	}
	f.Fuzz(func(t *testing.T, method, target, ctype, body string) {
		switch method {
		case "GET", "POST", "PATCH", "DELETE":
		default:
			method = "GET"
		}
		if !strings.HasPrefix(target, "/") {
			target = "/" + target
		}
		req, err := http.NewRequest(method, "https://localhost"+target, strings.NewReader(body))
		if err != nil {
			return // not a request a server could receive
		}
		if ctype != "" {
			req.Header.Set("Content-Type", ctype)
		}
		req.TLS = state
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code >= 500 && w.Code != http.StatusServiceUnavailable {
			t.Fatalf("%s %s: %d %s", method, target, w.Code, w.Body)
		}
		if w.Code == http.StatusNoContent {
			return
		}
		if w.Code/100 == 3 {
			// ServeMux sends a non-canonical path ("/app//x", "/.") to
			// its clean form, where the checks above apply.
			if loc := w.Header().Get("Location"); !strings.HasPrefix(loc, "/") {
				t.Fatalf("%s %s: %d to %q", method, target, w.Code, loc)
			}
			return
		}
		if !json.Valid(w.Body.Bytes()) {
			t.Fatalf("%s %s: %d, not JSON: %q", method, target, w.Code, w.Body)
		}
		if w.Code >= 400 {
			var e ErrorBody
			if err := json.Unmarshal(w.Body.Bytes(), &e); err != nil || e.Error.Code == "" || e.Error.Message == "" {
				t.Fatalf("%s %s: %d, not ACL's error shape: %s", method, target, w.Code, w.Body)
			}
		}
	})
}

func parseCert(der []byte) (*x509.Certificate, error) { return x509.ParseCertificate(der) }
