package aclapi

import (
	"crypto/tls"
	"fmt"
	"net/http"
	"strings"
	"testing"
)

// TestAdminCannotDemoteItself: the rule that an administrator cannot
// remove itself (DELETE) also holds for a PATCH to a lesser role, which
// would otherwise leave a ledger with no administrator.
func TestAdminCannotDemoteItself(t *testing.T) {
	f := start(t)
	self := f.adminID
	for _, role := range []string{"Contributor", "Reader"} {
		f.do(t, "admin", "PATCH", "/app/users/"+self, "application/merge-patch+json", fmt.Sprintf(`{"assignedRole":%q}`, role), 400, nil)
	}
	f.do(t, "admin", "DELETE", "/app/users/"+self, "", "", 400, nil)
	var u map[string]string
	f.do(t, "admin", "GET", "/app/users/"+self, "", "", 200, &u)
	if u["assignedRole"] != "Administrator" {
		t.Fatalf("the administrator is now %v", u)
	}
	// Keeping its own role (or patching nothing) is not a demotion.
	f.do(t, "admin", "PATCH", "/app/users/"+self, "application/merge-patch+json", `{"assignedRole":"Administrator"}`, 200, nil)
	f.do(t, "admin", "PATCH", "/app/users/"+self, "application/merge-patch+json", `{}`, 200, nil)
}

// TestListRangeChecked: a hostile or confused client's range is refused
// with a named error rather than read as something else: an id of another
// view (this ledger has one view) or a toTransactionId before the
// fromTransactionId.
func TestListRangeChecked(t *testing.T) {
	f := start(t)
	for i := 0; i < 3; i++ {
		f.do(t, "admin", "POST", "/app/transactions?collectionId=c", "application/json", `{"contents":"x"}`, 200, nil)
	}
	for _, q := range []string{
		"fromTransactionId=7.1",
		"toTransactionId=1.3",
		"fromTransactionId=2.5&toTransactionId=2.4",
		"fromTransactionId=2.x",
		"toTransactionId=2",
	} {
		f.do(t, "reader", "GET", "/app/transactions?collectionId=c&"+q, "", "", 400, nil)
	}
	var page struct{ Entries []map[string]string }
	f.do(t, "reader", "GET", "/app/transactions?collectionId=c&fromTransactionId=2.1&toTransactionId=2.1000", "", "", 200, &page)
	if len(page.Entries) != 3 {
		t.Fatalf("a valid range returned %d entries", len(page.Entries))
	}
}

// TestCountersArePerUser: a counter guards one user's state (kv's store
// counter: the Count a restarted store must find), so another user, even a
// Contributor or an Administrator, can neither move it (to hand the store
// an old Count and hide a rollback) nor read it: each user's counters are
// its own, under the same names.
func TestCountersArePerUser(t *testing.T) {
	f := start(t)
	var c CounterJSON
	f.do(t, "writer1", "POST", "/app/counters/store", "application/json", `{"expectedVersion":0,"value":"AQI="}`, 200, &c)
	if c.Version != 1 || c.Name != "store" {
		t.Fatalf("counter %+v", c)
	}
	// Another user names the same counter, at the version it has.
	for _, who := range []string{"writer2", "admin"} {
		f.do(t, who, "POST", "/app/counters/store", "application/json", `{"expectedVersion":1,"value":"BQY="}`, 409, nil)
		var other CounterJSON
		f.do(t, who, "GET", "/app/counters/store", "", "", 200, &other)
		if other.Version != 0 || other.Value != "" {
			t.Fatalf("%s reads writer1's counter: %+v", who, other)
		}
	}
	f.do(t, "writer2", "POST", "/app/counters/store", "application/json", `{"expectedVersion":0,"value":"BQY="}`, 200, nil)
	f.do(t, "writer1", "GET", "/app/counters/store", "", "", 200, &c)
	if c.Version != 1 || c.Value != "AQI=" || c.Name != "store" {
		t.Fatalf("writer1's counter after the others: %+v", c)
	}
}

// TestAPIVersionIsADate: an api-version that has the shape of a date but
// is none (month 13, day 45) is refused like any unknown version.
func TestAPIVersionIsADate(t *testing.T) {
	f := start(t)
	for _, v := range []string{"2022-13-01", "2023-02-30", "9999-99-99-preview", "2022-05-13-Preview", "2022-05-13-previewx"} {
		f.do(t, "reader", "GET", "/app/collections?api-version="+v, "", "", 400, nil)
	}
	for _, v := range []string{"2022-05-13", "2023-01-18-preview", "2024-08-22-preview"} {
		f.do(t, "reader", "GET", "/app/collections?api-version="+v, "", "", 200, nil)
	}
}

// TestRolesHold: a Contributor writes but cannot manage users (not even
// promote itself); a Reader reads but cannot write or move counters.
func TestRolesHold(t *testing.T) {
	f := start(t)
	f.do(t, "writer1", "POST", "/app/transactions", "application/json", `{"contents":"x"}`, 200, nil)
	f.do(t, "writer1", "PATCH", "/app/users/AA", "application/merge-patch+json", `{"assignedRole":"Administrator"}`, 403, nil)
	f.do(t, "writer1", "GET", "/app/users/"+f.adminID, "", "", 403, nil)
	f.do(t, "writer1", "DELETE", "/app/users/"+f.adminID, "", "", 403, nil)
	f.do(t, "reader", "POST", "/app/transactions", "application/json", `{"contents":"x"}`, 403, nil)
	f.do(t, "reader", "POST", "/app/counters/k", "application/json", `{"expectedVersion":0,"value":""}`, 403, nil)
	f.do(t, "reader", "PATCH", "/app/users/AA", "application/merge-patch+json", `{"assignedRole":"Reader"}`, 403, nil)
	f.do(t, "reader", "GET", "/app/collections", "", "", 200, nil)
}

// TestClientCertNeedsItsKey: the user id is the certificate's fingerprint,
// and the certificate is not chain-verified, so what makes it an identity
// is TLS's proof of possession: a client sending the administrator's
// certificate (public) signed with another key gets nothing.
func TestClientCertNeedsItsKey(t *testing.T) {
	f := start(t)
	other := selfSigned(t, "thief")
	stolen := tls.Certificate{Certificate: f.admin.Certificate, PrivateKey: other.PrivateKey}
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: f.pool, Certificates: []tls.Certificate{stolen}}}}
	req, _ := http.NewRequest("PATCH", f.url+"/app/users/EE?api-version=2022-05-13", strings.NewReader(`{"assignedRole":"Administrator"}`))
	req.Header.Set("Content-Type", "application/merge-patch+json")
	resp, err := c.Do(req)
	if err == nil {
		resp.Body.Close()
		t.Fatalf("the administrator's certificate without its key got %d", resp.StatusCode)
	}
	if f.node.User("EE") != 0 {
		t.Fatal("the user was created")
	}
}
