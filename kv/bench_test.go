package kv_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/cloister-dev/cloister/kv"
	"github.com/cloister-dev/cloister/kv/kvtest"
)

// BenchmarkPut1000Keys is one writer's CPU cost per durable Put (the
// backend is memory) on a store of 1000 keys.
func BenchmarkPut1000Keys(b *testing.B) {
	ctx := context.Background()
	s, err := kv.Open(ctx, kvtest.NewMemBackend(), "b", kv.Options{Sealer: sealer(), Create: true})
	if err != nil {
		b.Fatal(err)
	}
	v := make([]byte, 1024)
	for i := range 1000 {
		if err := s.Put(ctx, fmt.Sprintf("key/%06d", i), v); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	for i := range b.N {
		if err := s.Put(ctx, fmt.Sprintf("key/%06d", i%1000), v); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkGet is one reader's CPU cost per verified Get.
func BenchmarkGet(b *testing.B) {
	ctx := context.Background()
	s, err := kv.Open(ctx, kvtest.NewMemBackend(), "b", kv.Options{Sealer: sealer(), Create: true})
	if err != nil {
		b.Fatal(err)
	}
	if err := s.Put(ctx, "k", make([]byte, 1024)); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for range b.N {
		if _, err := s.Get(ctx, "k"); err != nil {
			b.Fatal(err)
		}
	}
}
