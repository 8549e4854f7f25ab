package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"testing"
	"time"
)

// TestBenchKVJSON runs a very short `bench kv --json` and checks that the
// seven keys scripts read are there: six positive figures and the key
// count asked for.
func TestBenchKVJSON(t *testing.T) {
	if testing.Short() {
		t.Skip("writes bbolt files and fsyncs")
	}
	var out bytes.Buffer
	e := &env{ctx: context.Background(), stdin: bytes.NewReader(nil), stdout: &out, stderr: io.Discard, now: time.Now}
	if err := runBenchKV(e, []string{"--json", "--duration", "20ms", "--keys", "20", "--dir", t.TempDir()}); err != nil {
		t.Fatal(err)
	}
	var got map[string]float64
	if err := json.Unmarshal(out.Bytes(), &got); err != nil {
		t.Fatalf("%v: %s", err, out.Bytes())
	}
	for _, k := range []string{"sealed_put_per_s_1w", "plain_put_per_s_1w", "sealed_put_per_s_64w", "plain_put_per_s_64w", "sealed_get_per_s", "plain_get_per_s"} {
		if v, ok := got[k]; !ok || v <= 0 {
			t.Errorf("%s = %v, %v; want a positive figure", k, v, ok)
		}
	}
	if got["keys"] != 20 {
		t.Errorf("keys = %v, want 20", got["keys"])
	}
	if len(got) != 7 {
		t.Errorf("%d keys, want 7: %s", len(got), out.Bytes())
	}
}
