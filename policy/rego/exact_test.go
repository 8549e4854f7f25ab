package rego

import (
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"testing"
)

// A policy judges claim numbers exactly: the real Milan report's
// reported_tcb 0x4405000000000002 given as int64, uint64 or json.Number
// is that number to the policy (one below fails the bound, one above
// passes), and a number the policy issues comes back as the exact
// json.Number. A uint64 above 2^63 (a TCB with microcode SVN >= 0x80) is
// exact too. A float64 above 2^53 may already be rounded (0x4405000000000002
// is 0x4405000000000000 as a float64), so it is an error naming where it
// is, not a verdict on another number.
func TestEvaluateExactNumbers(t *testing.T) {
	ctx := context.Background()
	const tcb = uint64(0x4405000000000002)
	s := strconv.FormatUint(tcb, 10)
	p := compile(t, "package cloister\nallow if input.claims.reported_tcb >= "+s+"\nclaims := {\"tcb\": input.claims.reported_tcb} if allow\n")
	for _, tc := range []struct {
		v     any
		allow bool
		want  string
	}{
		{int64(tcb), true, s},
		{tcb, true, s},
		{json.Number(s), true, s},
		{tcb + 1, true, strconv.FormatUint(tcb+1, 10)},
		{int64(tcb - 1), false, ""},
		{json.Number(strconv.FormatUint(tcb-1, 10)), false, ""},
		{uint64(0xd105000000000002), true, "15061444528810491906"},
	} {
		res, err := p.Evaluate(ctx, map[string]any{"claims": map[string]any{"reported_tcb": tc.v}})
		if err != nil || res.Allow != tc.allow {
			t.Errorf("%T(%v): allow %v, %v; want allow %v", tc.v, tc.v, res.Allow, err, tc.allow)
			continue
		}
		if got, _ := res.Claims["tcb"].(json.Number); tc.allow && string(got) != tc.want {
			t.Errorf("%T(%v): issued tcb %v, want %s", tc.v, tc.v, res.Claims["tcb"], tc.want)
		}
	}

	for _, in := range []map[string]any{
		{"claims": map[string]any{"reported_tcb": float64(tcb)}},
		{"claims": map[string]any{"tcbs": []any{float64(2), float64(tcb)}}},
		{"claims": map[string]any{"svn": float32(1<<24 + 2)}},
	} {
		_, err := p.Evaluate(ctx, in)
		if err == nil || !strings.Contains(err.Error(), "beyond 2^") || !strings.Contains(err.Error(), "input.claims.") {
			t.Errorf("%v: got %v, want an error naming the float64 beyond 2^53 and where it is", in, err)
		}
	}
	// Small float64s (what encoding/json produces) are exact and fine.
	q := compile(t, "package cloister\nallow if input.svn == 2\n")
	if res, err := q.Evaluate(ctx, map[string]any{"svn": float64(2)}); err != nil || !res.Allow {
		t.Errorf("float64(2): %v %+v", err, res)
	}
	if res, err := q.Evaluate(ctx, map[string]any{"svn": float64(1 << 53)}); err != nil || res.Allow {
		t.Errorf("float64(2^53): %v %+v", err, res)
	}
}
