package kv_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/cloister-dev/cloister/kv"
	"github.com/cloister-dev/cloister/kv/kvtest"
)

// BenchmarkPut is one writer's CPU cost per durable Put of a 1 KiB value
// to a random key (the backend is memory, so no fsync) on stores of 1,000
// and 100,000 keys with 64-byte names: the cost grows with the index
// height, not the number of keys.
func BenchmarkPut(b *testing.B) {
	ctx := context.Background()
	for _, keys := range []int{1000, 100000} {
		b.Run(fmt.Sprintf("keys=%d", keys), func(b *testing.B) {
			s, err := kv.Open(ctx, kvtest.NewMemBackend(), "b", kv.Options{Sealer: sealer(), Create: true})
			if err != nil {
				b.Fatal(err)
			}
			v := make([]byte, 1024)
			for n := 0; n < keys; n += 100 {
				if err := s.Update(ctx, func(tx *kv.Tx) error {
					for i := n; i < n+100; i++ {
						tx.Put(fmt.Sprintf("%064d", i), v)
					}
					return nil
				}); err != nil {
					b.Fatal(err)
				}
			}
			b.ResetTimer()
			for i := range b.N {
				if err := s.Put(ctx, fmt.Sprintf("%064d", (i*7919)%keys), v); err != nil {
					b.Fatal(err)
				}
			}
		})
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
