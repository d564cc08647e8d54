package gateway

import (
	"fmt"
	"os"
	"runtime"
	"runtime/pprof"
	"testing"

	"github.com/sluice-gw/sluice/internal/plugin"
	"github.com/sluice-gw/sluice/internal/plugins/all"
	"github.com/sluice-gw/sluice/internal/store"
)

// profileDBuilder returns a builder holding n routes shaped like those of
// bench/run.sh profile d ({"uri":"/r/N","upstream_id":"1"} as the Admin
// API stores them) and one upstream, fed through the same apply path as
// watch events, not built yet.
func profileDBuilder(n int) *Builder {
	reg, _ := plugin.NewRegistry(all.Defs(), nil)
	compile := compileFunc("radixtree_host_uri", healthEnv{}, reg, &plugin.Shared{}, nil)
	b := NewBuilder(nil, quietLogger(), compile, nil)
	evs := make([]store.Event, 0, n+1)
	evs = append(evs, store.Event{Type: store.EventPut, KV: store.KV{Key: "/upstreams/1", ModRev: 1,
		Value: []byte(`{"id":"1","type":"roundrobin","nodes":{"127.0.0.1:8080":1},"create_time":1764200000,"update_time":1764200000}`)}})
	for i := 1; i <= n; i++ {
		evs = append(evs, store.Event{Type: store.EventPut, KV: store.KV{Key: fmt.Sprint("/routes/", i), ModRev: int64(i + 1),
			Value: fmt.Appendf(nil, `{"id":"%d","uri":"/r/%d","upstream_id":"1","create_time":1764200000,"update_time":1764200000}`, i, i)}})
	}
	b.apply(store.WatchResponse{Events: evs, Revision: int64(n + 1)})
	return b
}

// heapPerRoute builds a profile-d builder of n routes and returns the live
// heap it holds per route once built: the decoded objects, the builder's
// own index and the compiled snapshot (router, routes, upstreams).
func heapPerRoute(tb testing.TB, n int) float64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	b := profileDBuilder(n)
	b.build(int64(n + 1))
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&after)
	if f := os.Getenv("SLUICE_MEMPROFILE"); f != "" {
		// A heap profile of the built snapshot (set MemProfileRate low
		// with go test -memprofilerate=1 for exact figures).
		if fh, err := os.Create(f); err == nil {
			_ = pprof.WriteHeapProfile(fh)
			fh.Close()
		}
	}
	s := b.Current()
	if got := len(s.Objects["routes"]); got != n || len(s.Errors) > 0 {
		tb.Fatalf("built %d routes, errors %v", got, s.Errors)
	}
	runtime.KeepAlive(b)
	return (float64(after.HeapAlloc) - float64(before.HeapAlloc)) / float64(n)
}

// maxHeapPerRoute is the regression bound for TestHeapPerRoute: 10,000
// routes measured 953 bytes each (commit of this test; 1,307 before the
// memory work). The bound leaves room for Go version drift, not for a
// new per-route structure.
const maxHeapPerRoute = 1100

// TestHeapPerRoute fails when the live heap a snapshot of 10,000 plain
// routes holds grows past maxHeapPerRoute bytes per route (the RSS budget
// of profile d, docs/benchmarks.md, rests on it).
func TestHeapPerRoute(t *testing.T) {
	if testing.Short() {
		t.Skip("builds 10,000 routes")
	}
	per := heapPerRoute(t, 10000)
	t.Logf("live heap per route: %.0f bytes", per)
	if per > maxHeapPerRoute {
		t.Errorf("live heap per route %.0f bytes, over the %d-byte bound", per, maxHeapPerRoute)
	}
}

// BenchmarkHeapPerRoute reports the live heap per route of a 10,000-route
// profile-d snapshot (B/route) and the time of a first build (decoding
// included).
func BenchmarkHeapPerRoute(b *testing.B) {
	var per float64
	for b.Loop() {
		per = heapPerRoute(b, 10000)
	}
	b.ReportMetric(per, "B/route")
}

// BenchmarkSnapshotRebuild10000 is the rebuild after one Admin API write
// with 10,000 profile-d routes: every other object is decoded already, so
// this is the per-write cost of the builder and the compile hook.
func BenchmarkSnapshotRebuild10000(b *testing.B) {
	bld := profileDBuilder(10000)
	bld.build(10001)
	rev := int64(10001)
	b.ReportAllocs()
	for b.Loop() {
		rev++
		bld.apply(store.WatchResponse{Revision: rev, Events: []store.Event{{Type: store.EventPut, KV: store.KV{Key: "/routes/1", ModRev: rev,
			Value: []byte(`{"id":"1","uri":"/r/1","upstream_id":"1","create_time":1764200000,"update_time":1764200000}`)}}}})
		bld.build(rev)
	}
}
