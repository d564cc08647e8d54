package bolt

import (
	"context"
	"fmt"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/sluice-gw/sluice/internal/store"
)

// routeValue is a typical small route object.
var routeValue = []byte(`{"uri":"/api/v1/items/*","methods":["GET","POST"],"upstream":{"type":"roundrobin","nodes":{"127.0.0.1:8080":1}}}`)

func benchStore(b *testing.B, keys int) *Store {
	b.Helper()
	s, err := Open(filepath.Join(b.TempDir(), "bench.db"), Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	ctx := context.Background()
	// Load through concurrent Puts so the setup itself is group-committed.
	const workers = 64
	errs := make(chan error, workers)
	for w := range workers {
		go func() {
			for i := w; i < keys; i += workers {
				if _, _, err := s.Put(ctx, fmt.Sprintf("/routes/%05d", i), routeValue, store.PutOptions{}); err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	for range workers {
		if err := <-errs; err != nil {
			b.Fatal(err)
		}
	}
	return s
}

// BenchmarkPut measures one writer: every op pays its own fsync.
func BenchmarkPut(b *testing.B) {
	s := benchStore(b, 0)
	ctx := context.Background()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if _, _, err := s.Put(ctx, fmt.Sprintf("/routes/%d", i%10000), routeValue, store.PutOptions{}); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

// BenchmarkPutParallel measures group commit: concurrent writers share
// fsyncs, so ns/op should be far below BenchmarkPut's.
func BenchmarkPutParallel(b *testing.B) {
	s := benchStore(b, 0)
	ctx := context.Background()
	var n atomic.Int64
	b.ReportAllocs()
	b.SetParallelism(8)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := n.Add(1)
			if _, _, err := s.Put(ctx, fmt.Sprintf("/routes/%d", i%10000), routeValue, store.PutOptions{}); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

func BenchmarkGet(b *testing.B) {
	s := benchStore(b, 10000)
	ctx := context.Background()
	keys := make([]string, 10000)
	for i := range keys {
		keys[i] = fmt.Sprintf("/routes/%05d", i)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if _, err := s.Get(ctx, keys[i%len(keys)]); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

// BenchmarkList lists all 10,000 routes, as a gateway does on start-up or
// after ErrCompacted.
func BenchmarkList(b *testing.B) {
	s := benchStore(b, 10000)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		kvs, _, err := s.List(ctx, "/routes/")
		if err != nil || len(kvs) != 10000 {
			b.Fatalf("List: %d keys, %v", len(kvs), err)
		}
	}
}
