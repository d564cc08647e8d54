package e2e

import (
	"fmt"
	"net/http"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestConfigPropagation measures how long after an Admin API write returns
// the data plane follows it (p50/p99 over 100 writes), while a background
// client keeps sending requests that must never fail.
func TestConfigPropagation(t *testing.T) {
	g := startDefault(t, "")
	a, b := echoUpstream(t, "a"), echoUpstream(t, "b")
	route := func(up string) string {
		return fmt.Sprintf(`{"uri":"/prop","upstream":{"nodes":{"%s":1}}}`, up)
	}
	g.admin("PUT", "/apisix/admin/routes/p", route(hostPort(a)))
	g.waitRoute("/prop", nil)

	// Background traffic on the same route: every request must succeed.
	var failed, total atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			client := &http.Client{}
			for {
				select {
				case <-stop:
					return
				default:
				}
				r, err := client.Get(fmt.Sprintf("http://127.0.0.1:%d/prop", g.httpPort))
				total.Add(1)
				if err != nil || r.StatusCode != 200 {
					failed.Add(1)
				}
				if r != nil {
					r.Body.Close()
				}
			}
		}()
	}

	const writes = 100
	delays := make([]time.Duration, 0, writes)
	names := []string{"a", "b"}
	ups := []string{hostPort(a), hostPort(b)}
	for i := 1; i <= writes; i++ {
		want := names[i%2]
		r := g.admin("PUT", "/apisix/admin/routes/p", route(ups[i%2]))
		if r.Status != 200 {
			t.Fatalf("write %d: %d %s", i, r.Status, r.Body)
		}
		done := time.Now()
		for {
			if g.proxy("GET", "/prop", nil).Header.Get("X-Upstream") == want {
				delays = append(delays, time.Since(done))
				break
			}
			if time.Since(done) > 10*time.Second {
				t.Fatalf("write %d not applied after 10s", i)
			}
		}
	}
	close(stop)
	wg.Wait()
	sort.Slice(delays, func(i, j int) bool { return delays[i] < delays[j] })
	p50, p99 := delays[len(delays)/2], delays[len(delays)*99/100]
	t.Logf("write-to-traffic delay over %d writes: p50 %v, p99 %v, max %v", writes, p50, p99, delays[len(delays)-1])
	t.Logf("background requests during churn: %d, failed %d", total.Load(), failed.Load())
	if failed.Load() != 0 {
		t.Fatalf("%d requests failed while the config changed", failed.Load())
	}
}
