package main

import (
	"context"
	"testing"
	"time"
)

// The AKV release measurement runs its real setup end to end (its first
// release is opened and checked to be the key) and reports sane figures.
func TestBenchAKVRelease(t *testing.T) {
	r, err := benchAKVRelease(context.Background(), time.Now, 20)
	if err != nil {
		t.Fatal(err)
	}
	if r.Requests != 20 || r.PerS <= 0 || r.P50MS <= 0 || r.P99MS < r.P50MS {
		t.Fatalf("figures: %+v", r)
	}
}
