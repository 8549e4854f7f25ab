package aclapi

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/cloister-dev/cloister/kv/kvtest"
	"github.com/cloister-dev/cloister/ledger"
)

var now = time.Date(2026, 12, 6, 8, 0, 0, 0, time.UTC)

// selfSigned makes a client certificate as a user would (self-signed).
func selfSigned(t testing.TB, cn string) tls.Certificate {
	t.Helper()
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn}, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: k}
}

type fixture struct {
	url     string
	adminID string
	admin   tls.Certificate
	pool    *x509.CertPool
	svc     *x509.Certificate
	node    *ledger.Node
	clients map[string]*http.Client
}

func start(t *testing.T) *fixture {
	t.Helper()
	admin := selfSigned(t, "admin")
	n, err := ledger.Open(context.Background(), ledger.Options{
		Backend: kvtest.NewMemBackend(), Sealer: kvtest.Sealer(bytes.Repeat([]byte{3}, 32), 1, 1, 1),
		Now:      func() time.Time { return now },
		Identity: ledger.IdentityOptions{DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}},
		Admins:   []string{UserID(admin.Certificate[0])},
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(Handler(n))
	srv.TLS = TLSConfig(n.Identity())
	srv.StartTLS()
	t.Cleanup(func() { srv.Close(); n.Close() })
	pool := x509.NewCertPool()
	pool.AddCert(n.Identity().ServiceCert)
	client := func(c *tls.Certificate) *http.Client {
		cfg := &tls.Config{RootCAs: pool}
		if c != nil {
			cfg.Certificates = []tls.Certificate{*c}
		}
		return &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}}
	}
	reader, stranger := selfSigned(t, "reader"), selfSigned(t, "stranger")
	writer1, writer2 := selfSigned(t, "writer1"), selfSigned(t, "writer2")
	f := &fixture{url: srv.URL, adminID: UserID(admin.Certificate[0]), admin: admin, pool: pool, svc: n.Identity().ServiceCert, node: n, clients: map[string]*http.Client{
		"admin": client(&admin), "reader": client(&reader), "stranger": client(&stranger), "anonymous": client(nil),
		"writer1": client(&writer1), "writer2": client(&writer2),
	}}
	f.do(t, "admin", "PATCH", "/app/users/"+UserID(reader.Certificate[0]), "application/merge-patch+json", `{"assignedRole":"Reader"}`, 200, nil)
	for _, w := range []tls.Certificate{writer1, writer2} {
		f.do(t, "admin", "PATCH", "/app/users/"+UserID(w.Certificate[0]), "application/merge-patch+json", `{"assignedRole":"Contributor"}`, 200, nil)
	}
	return f
}

// do sends a request (api-version added unless the path has one or says
// "noversion") and checks the status; out receives the JSON body.
func (f *fixture) do(t *testing.T, who, method, path, ctype, body string, want int, out any) http.Header {
	t.Helper()
	u := f.url + path
	if !strings.Contains(path, "api-version") && !strings.Contains(path, "noversion") {
		sep := "?"
		if strings.Contains(path, "?") {
			sep = "&"
		}
		u += sep + "api-version=2022-05-13"
	}
	req, _ := http.NewRequest(method, u, strings.NewReader(body))
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	resp, err := f.clients[who].Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		t.Fatalf("%s %s as %s: %d %s, want %d", method, path, who, resp.StatusCode, b, want)
	}
	if want >= 400 {
		var e ErrorBody
		if err := json.Unmarshal(b, &e); err != nil || e.Error.Code == "" || e.Error.Message == "" {
			t.Fatalf("%s %s: error body %s is not ACL's shape", method, path, b)
		}
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("%s %s: %v: %s", method, path, err, b)
		}
	}
	return resp.Header
}

func TestEntriesReceiptsPaging(t *testing.T) {
	f := start(t)
	var ids []string
	for i := 0; i < 130; i++ {
		var out map[string]string
		h := f.do(t, "admin", "POST", "/app/transactions?collectionId=col", "application/json", fmt.Sprintf(`{"contents":"e%d"}`, i), 200, &out)
		if out["collectionId"] != "col" || h.Get("x-ms-ccf-transaction-id") == "" {
			t.Fatalf("create: %v %v", out, h)
		}
		ids = append(ids, h.Get("x-ms-ccf-transaction-id"))
	}
	last, _ := ledger.ParseTxID(ids[len(ids)-1])
	f.node.WaitCommitted(context.Background(), last)

	var got struct {
		Entry struct{ Contents, CollectionID, TransactionID string }
		State string
	}
	f.do(t, "reader", "GET", "/app/transactions/"+ids[5]+"?collectionId=col", "", "", 200, &got)
	if got.State != "Ready" || got.Entry.Contents != "e5" || got.Entry.TransactionID != ids[5] || got.Entry.CollectionID != "col" {
		t.Fatalf("entry %+v", got)
	}
	f.do(t, "reader", "GET", "/app/transactions/"+ids[5], "", "", 404, nil) // default collection
	var st map[string]string
	f.do(t, "reader", "GET", "/app/transactions/"+ids[5]+"/status", "", "", 200, &st)
	if st["state"] != "Committed" {
		t.Fatalf("status %v", st)
	}
	var rc ledger.TransactionReceipt
	f.do(t, "reader", "GET", "/app/transactions/"+ids[5]+"/receipt", "", "", 200, &rc)
	if rc.State != "Ready" || rc.Receipt == nil || len(rc.Receipt.Proof) == 0 || rc.TransactionID != ids[5] || rc.ApplicationClaims[0].LedgerEntry.Contents != "e5" {
		t.Fatalf("receipt %+v", rc)
	}
	var cur map[string]string
	f.do(t, "reader", "GET", "/app/transactions/current?collectionId=col", "", "", 200, &cur)
	if cur["contents"] != "e129" {
		t.Fatalf("current %v", cur)
	}
	// Paging: nextLink has no api-version; following it (with one added)
	// walks every entry once.
	var seen []string
	path := "/app/transactions?collectionId=col"
	for pages := 0; path != ""; pages++ {
		var page struct {
			State    string
			Entries  []map[string]string
			NextLink string `json:"nextLink"`
		}
		f.do(t, "reader", "GET", path, "", "", 200, &page)
		if page.Entries == nil || page.State != "Ready" {
			t.Fatalf("page %d: %+v", pages, page)
		}
		for _, e := range page.Entries {
			seen = append(seen, e["transactionId"])
		}
		if strings.Contains(page.NextLink, "api-version") {
			t.Fatalf("nextLink repeats api-version: %s", page.NextLink)
		}
		path = page.NextLink
	}
	if fmt.Sprint(seen) != fmt.Sprint(ids) {
		t.Fatalf("paging returned %d entries, want %d", len(seen), len(ids))
	}
	var cols struct{ Collections []map[string]string }
	f.do(t, "reader", "GET", "/app/collections", "", "", 200, &cols)
	if len(cols.Collections) != 1 || cols.Collections[0]["collectionId"] != "col" {
		t.Fatalf("collections %+v", cols)
	}
	var empty struct{ Entries []any }
	f.do(t, "reader", "GET", "/app/transactions?collectionId=none", "", "", 200, &empty)
	if empty.Entries == nil {
		t.Fatal("an empty page has no entries array")
	}
}

func TestAccessAndErrors(t *testing.T) {
	f := start(t)
	f.do(t, "admin", "GET", "/app/collections?noversion", "", "", 400, nil)
	f.do(t, "admin", "GET", "/app/collections?api-version=2021-01-01", "", "", 400, nil)
	f.do(t, "admin", "GET", "/app/collections?api-version=2022-05-13&api-version=2022-05-13", "", "", 400, nil)
	f.do(t, "admin", "GET", "/app/collections?api-version=2024-12-09-preview", "", "", 200, nil)
	f.do(t, "anonymous", "GET", "/app/collections", "", "", 401, nil)
	f.do(t, "stranger", "GET", "/app/collections", "", "", 403, nil)
	f.do(t, "reader", "POST", "/app/transactions", "application/json", `{"contents":"x"}`, 403, nil)
	f.do(t, "reader", "GET", "/app/users/AA", "", "", 403, nil)
	f.do(t, "admin", "POST", "/app/transactions", "text/plain", `{"contents":"x"}`, 415, nil)
	f.do(t, "admin", "POST", "/app/transactions", "application/json", `{"contents":`, 400, nil)
	f.do(t, "admin", "POST", "/app/transactions", "application/json", `{}`, 400, nil)
	f.do(t, "admin", "GET", "/app/transactions/2.x/status", "", "", 400, nil)
	f.do(t, "admin", "GET", "/app/transactions/2.99999/status", "", "", 404, nil)
	f.do(t, "admin", "GET", "/app/nothing", "", "", 404, nil)

	// Users: create, read, change, delete (204), gone.
	var u map[string]string
	f.do(t, "admin", "PATCH", "/app/users/AA:BB", "application/merge-patch+json", `{"assignedRole":"Contributor"}`, 200, &u)
	if u["assignedRole"] != "Contributor" || u["userId"] != "AA:BB" {
		t.Fatalf("user %v", u)
	}
	f.do(t, "admin", "PATCH", "/app/users/AA:BB", "application/json", `{"assignedRole":"Reader"}`, 415, nil)
	f.do(t, "admin", "PATCH", "/app/users/AA:BB", "application/merge-patch+json", `{"assignedRole":"Owner"}`, 400, nil)
	f.do(t, "admin", "GET", "/app/users/AA:BB", "", "", 200, &u)
	f.do(t, "admin", "DELETE", "/app/users/AA:BB", "", "", 204, nil)
	f.do(t, "admin", "GET", "/app/users/AA:BB", "", "", 404, nil)

	// Counters: compare-and-increment.
	var c CounterJSON
	f.do(t, "admin", "POST", "/app/counters/k", "application/json", `{"expectedVersion":0,"value":"AQI="}`, 200, &c)
	if c.Version != 1 || c.TransactionID == "" {
		t.Fatalf("counter %+v", c)
	}
	f.do(t, "admin", "POST", "/app/counters/k", "application/json", `{"expectedVersion":0,"value":""}`, 409, nil)
	f.do(t, "admin", "GET", "/app/counters/k", "", "", 200, &c) // its own counter
	if c.Value != "AQI=" {
		t.Fatalf("counter %+v", c)
	}
}
