package ledger

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cloister-dev/cloister/kv/kvtest"
)

// BenchmarkAppend64 appends b.N entries of 256 bytes from 64 writers to
// a node over memory storage: the ledger's CPU cost without the disk.
func BenchmarkAppend64(b *testing.B) {
	o := testOptions(kvtest.NewMemBackend())
	o.SignEvery, o.SignInterval, o.Now = 2000, 10*time.Millisecond, time.Now
	n, err := Open(context.Background(), o)
	if err != nil {
		b.Fatal(err)
	}
	defer n.Close()
	contents := string(make([]byte, 256))
	var next atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	for w := 0; w < 64; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(b.N) {
				if _, err := n.Append(context.Background(), "c", contents); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
}
