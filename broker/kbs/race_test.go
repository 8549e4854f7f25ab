package kbs

import (
	"fmt"
	"testing"
)

// A policy change the administrator has been told is in force (its PUT
// answered 200) governs every release that completes after it: a resource
// request that decided under the old policy and was still reading the
// resource when the change landed must not be served under the old
// decision. The request is held inside its store read (gateBackend), the
// default policy is replaced by release-nothing, then the read goes on.
func TestPolicyChangeDuringReleaseGovernsIt(t *testing.T) {
	e := newEnv(t)
	e.adminDo("PUT", Prefix+"/resource/r/t/x", []byte("s3cret"))
	e.setPolicy("", allowTestApp)
	c := e.client(TeeSGX)
	c.handshake()
	if code, body := c.get("r/t/x", false); code != 200 {
		t.Fatalf("before the change: %d %s", code, body) // policy compiled and decision cached
	}
	entered, release := e.gate.arm()
	type answer struct {
		code int
		body []byte
	}
	got := make(chan answer, 1)
	go func() {
		code, body := c.get("r/t/x", false)
		got <- answer{code, body}
	}()
	<-entered // the request decided (allow) and is reading the resource
	e.setPolicy("", DefaultPolicy)
	close(release)
	a := <-got
	wantError(t, "a release completing after the policy change", a.code, a.body, 403, "PolicyDeny")
	code, body := c.get("r/t/x", true)
	wantError(t, "a release after the policy change", code, body, 403, "PolicyDeny")
}

// A release whose policy changes during every one of its rechecks ends:
// after maxPolicyRechecks decisions it is refused 503 with Retry-After,
// never served and never left waiting. Each change lands right after the
// attempt's resource read (afterResourceRead), before its check.
func TestReleaseUnderPolicyChurnEnds(t *testing.T) {
	e := newEnv(t)
	e.adminDo("PUT", Prefix+"/resource/r/t/x", []byte("s3cret"))
	e.setPolicy("", allowTestApp)
	c := e.client(TeeSGX)
	c.handshake()
	changes := 0
	e.srv.afterResourceRead = func() {
		// Another text that allows the same app: every attempt is
		// allowed, and every one finds the generation moved.
		changes++
		e.setPolicy("", allowTestApp+fmt.Sprintf("\n# change %d\n", changes))
	}
	code, body := c.get("r/t/x", false)
	wantError(t, "a release under constant policy change", code, body, 503, "ServiceUnavailable")
	if changes != maxPolicyRechecks {
		t.Errorf("%d attempts, want %d", changes, maxPolicyRechecks)
	}
	e.srv.afterResourceRead = nil
	if code, body := c.get("r/t/x", false); code != 200 {
		t.Fatalf("after the churn: %d %s", code, body)
	}
}
