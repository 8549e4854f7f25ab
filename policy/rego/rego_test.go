package rego

import (
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

const sgxPolicy = `package cloister

default allow := false

allow if {
	input["x-ms-sgx-is-debuggable"] == false
	input["x-ms-sgx-mrsigner"] == "815f42f11cf64430c30bab7816ba596a1da0130c3b028b673133a66cf9a3e0e6"
	input["x-ms-sgx-svn"] >= 0
}

claims := {"tier": "gold", "svn": input["x-ms-sgx-svn"]} if allow
`

func compile(t *testing.T, module string) *Policy {
	t.Helper()
	p, err := Compile(context.Background(), module)
	if err != nil {
		t.Fatalf("Compile: %v", err)
	}
	return p
}

func TestEvaluate(t *testing.T) {
	p := compile(t, sgxPolicy)
	good := map[string]any{
		"x-ms-sgx-is-debuggable": false,
		"x-ms-sgx-mrsigner":      "815f42f11cf64430c30bab7816ba596a1da0130c3b028b673133a66cf9a3e0e6",
		"x-ms-sgx-svn":           3,
	}
	res, err := p.Evaluate(context.Background(), good)
	if err != nil {
		t.Fatal(err)
	}
	want := Result{Allow: true, Claims: map[string]any{"tier": "gold", "svn": json.Number("3")}}
	if !reflect.DeepEqual(res, want) {
		t.Errorf("got %+v, want %+v", res, want)
	}

	bad := map[string]any{}
	for k, v := range good {
		bad[k] = v
	}
	bad["x-ms-sgx-is-debuggable"] = true
	res, err = p.Evaluate(context.Background(), bad)
	if err != nil || res.Allow || res.Claims != nil {
		t.Errorf("debuggable: %v %+v", err, res)
	}
	res, err = p.Evaluate(context.Background(), nil)
	if err != nil || res.Allow {
		t.Errorf("nil input: %v %+v", err, res)
	}
}

// TestAllowDefaultsFalse: a module that never defines allow denies.
func TestAllowDefaultsFalse(t *testing.T) {
	for _, m := range []string{
		"package cloister\n",
		"package cloister\nallow if input.never == 1\n",
		"package cloister\nclaims := {\"a\": 1}\n",
	} {
		res, err := compile(t, m).Evaluate(context.Background(), map[string]any{"x": 1})
		if err != nil || res.Allow {
			t.Errorf("%q: %v %+v", m, err, res)
		}
	}
}

// TestCompileErrors: wrong package, syntax errors, v0 syntax, and every
// builtin that reaches outside the evaluation are refused at compile time.
func TestCompileErrors(t *testing.T) {
	tests := []struct{ module, want string }{
		{"package other\nallow := true\n", "package data.other, want package cloister"},
		{"", "empty module"},
		{"package cloister\nallow if {\n", "rego: "},
		{"package cloister\nallow { true }\n", "rego: "}, // Rego v0 syntax
		{`package cloister
allow if { http.send({"method": "get", "url": "http://127.0.0.1:1/"}).status_code == 200 }`, "http.send"},
		{"package cloister\nallow if { count(net.lookup_ip_addr(\"example.com\")) > 0 }", "net.lookup_ip_addr"},
		{"package cloister\nallow if { opa.runtime().env.HOME != \"\" }", "opa.runtime"},
		{"package cloister\nallow if { time.now_ns() > 0 }", "time.now_ns"},
		{"package cloister\nallow if { rand.intn(\"x\", 10) >= 0 }", "rand.intn"},
		{"package cloister\nallow if { uuid.rfc4122(\"x\") != \"\" }", "uuid.rfc4122"},
		{strings.Repeat(" ", MaxModuleSize+1), "more than the"},
	}
	for _, tc := range tests {
		_, err := Compile(context.Background(), tc.module)
		if err == nil || !strings.HasPrefix(err.Error(), "rego: ") || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Compile(%.60q) = %v, want an error ...%s...", tc.module, err, tc.want)
		}
	}
}

// TestHTTPSendRefused pins the network ban on its own: http.send is not
// in the capabilities at all, so even a dynamic call cannot reach it.
func TestHTTPSendRefused(t *testing.T) {
	if capabilities().ContainsBuiltin("http.send") {
		t.Fatal("http.send in capabilities")
	}
	if caps := capabilities(); caps.AllowNet == nil || len(caps.AllowNet) != 0 {
		t.Fatalf("AllowNet = %#v, want empty (no host)", caps.AllowNet)
	}
	_, err := Compile(context.Background(), "package cloister\nr := http.send({\"method\": \"get\", \"url\": \"http://127.0.0.1:9/\"})\nallow if r.status_code == 200\n")
	if err == nil || !strings.Contains(err.Error(), "undefined function http.send") {
		t.Fatalf("got %v, want undefined function http.send", err)
	}
}

// TestEvaluateTypeErrors: a policy whose allow or claims has the wrong type
// is an error, never a silent denial or a malformed token.
func TestEvaluateTypeErrors(t *testing.T) {
	for _, tc := range []struct{ module, want string }{
		{"package cloister\nallow := \"yes\"\n", "allow is string, want a boolean"},
		{"package cloister\nallow := true\nclaims := [1, 2]\n", "claims is []interface {}, want an object"},
		{"package cloister\nallow if 1 / 0 == 1\n", "divide by zero"},
	} {
		_, err := compile(t, tc.module).Evaluate(context.Background(), nil)
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "rego: evaluate: ") {
			t.Errorf("%q: got %v, want ...%s...", tc.module, err, tc.want)
		}
	}
	if _, err := (*Policy)(nil).Evaluate(context.Background(), nil); err == nil {
		t.Error("nil policy evaluated")
	}
}

// TestEvaluateBounded: an expensive module stops at the context deadline
// with an error wrapping the context's.
func TestEvaluateBounded(t *testing.T) {
	p := compile(t, `package cloister
allow if {
	some i in numbers.range(1, 20000)
	some j in numbers.range(1, 20000)
	i * j == -1
}`)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := p.Evaluate(ctx, nil)
	if err == nil {
		t.Fatal("expensive policy finished")
	}
	t.Logf("stopped after %v: %v", time.Since(start), err)
	if !strings.Contains(err.Error(), "cancel") && !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("got %v, want a cancellation", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("stopped after %v", d)
	}
}

// TestConcurrent: one compiled policy, many evaluations (the service's
// case), race-free under -race.
func TestConcurrent(t *testing.T) {
	p := compile(t, sgxPolicy)
	in := map[string]any{"x-ms-sgx-is-debuggable": false, "x-ms-sgx-mrsigner": "815f42f11cf64430c30bab7816ba596a1da0130c3b028b673133a66cf9a3e0e6", "x-ms-sgx-svn": 1}
	errs := make(chan error, 4)
	for range 4 {
		go func() {
			for range 50 {
				res, err := p.Evaluate(context.Background(), in)
				if err == nil && !res.Allow {
					err = errors.New("denied")
				}
				if err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	for range 4 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}
