package aclapi

import (
	"fmt"
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
