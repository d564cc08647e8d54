package limitconn_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/engine"
	"github.com/sluice-gw/sluice/internal/plugin"
	limitconn "github.com/sluice-gw/sluice/internal/plugins/limit-conn"
	"github.com/sluice-gw/sluice/internal/plugins/plugintest"
)

const prefix = `{"error_msg":"failed to check the configuration of plugin limit-conn err: `

func route(uri, conf, upstream string) string {
	return `{"uri":"` + uri + `","plugins":{"limit-conn":` + conf + `},"upstream":` + upstream + `}`
}

// slowUpstream answers after delay and counts requests.
func slowUpstream(t *testing.T, delay time.Duration) (string, *atomic.Int64) {
	var n atomic.Int64
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		select {
		case <-time.After(delay):
		case <-r.Context().Done():
		}
		_, _ = w.Write([]byte("ok"))
	}))
	t.Cleanup(s.Close)
	return fmt.Sprintf(`{"type":"roundrobin","nodes":{"%s":1}}`, strings.TrimPrefix(s.URL, "http://")), &n
}

// waitHits waits until the upstream has seen n requests: those still
// held there count against the limit.
func waitHits(t *testing.T, hits *atomic.Int64, n int64) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for hits.Load() < n {
		if time.Now().After(deadline) {
			t.Fatalf("upstream saw %d requests, want %d", hits.Load(), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestConfigValidation(t *testing.T) {
	g := plugintest.Start(t, []*plugin.Def{limitconn.Def()}, nil)
	up := `{"nodes":{"127.0.0.1:1":1}}`
	tests := []struct {
		name, conf string
		status     int
		want       string
	}{
		{"minimal", `{"conn":1,"burst":0,"default_conn_delay":0.1,"key":"remote_addr"}`, 201, ""},
		{"all fields", `{"conn":"${http_c}","burst":"$http_b","default_conn_delay":1,"only_use_default_delay":true,"key":"$remote_addr $http_u","key_type":"var_combination","rejected_code":429,"rejected_msg":"busy","allow_degradation":true,"policy":"local"}`, 201, ""},
		{"rules", `{"default_conn_delay":0.1,"rules":[{"conn":1,"burst":0,"key":"${http_user}"}]}`, 201, ""},
		{"missing key", `{"conn":1,"burst":0,"default_conn_delay":0.1}`, 400, prefix + `value should match only one schema, but matches none"}`},
		{"conn zero", `{"conn":0,"burst":0,"default_conn_delay":0.1,"key":"remote_addr"}`, 400, prefix + `property \"conn\" validation failed: value should match only one schema, but matches none"}`},
		{"delay zero", `{"conn":1,"burst":0,"default_conn_delay":0,"key":"remote_addr"}`, 400, prefix + `property \"default_conn_delay\" validation failed: expected 0 to be greater than 0"}`},
		{"bad key_type", `{"conn":1,"burst":0,"default_conn_delay":0.1,"key":"remote_addr","key_type":"constant"}`, 400, prefix + `property \"key_type\" validation failed: matches none of the enum values"}`},
		{"redis refused", `{"conn":1,"burst":0,"default_conn_delay":0.1,"key":"remote_addr","policy":"redis","redis_host":"127.0.0.1"}`, 400, prefix + `policy redis is not supported yet"}`},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := g.Admin("PUT", fmt.Sprintf("/apisix/admin/routes/v%d", i), route("/v", tc.conf, up))
			if r.Status != tc.status {
				t.Fatalf("status %d, want %d: %s", r.Status, tc.status, r.Body)
			}
			if tc.want != "" && strings.TrimSpace(r.Body) != tc.want {
				t.Fatalf("body %s\nwant %s", r.Body, tc.want)
			}
		})
	}
}

// fire sends n parallel requests and returns the statuses.
func fire(g *plugintest.Gateway, n int, path string) map[int]int {
	var wg sync.WaitGroup
	var mu sync.Mutex
	out := map[int]int{}
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := g.Do("GET", path, nil, "")
			mu.Lock()
			out[r.Status]++
			mu.Unlock()
		}()
	}
	wg.Wait()
	return out
}

func TestConcurrencyWithSlowUpstream(t *testing.T) {
	g := plugintest.Start(t, []*plugin.Def{limitconn.Def()}, nil)
	up, hits := slowUpstream(t, time.Second)
	g.MustAdmin("PUT", "/apisix/admin/routes/1", route("/a", `{"conn":2,"burst":0,"default_conn_delay":0.1,"key":"remote_addr","rejected_msg":"busy"}`, up))
	got := fire(g, 6, "/a")
	if got[200] != 2 || got[503] != 4 || hits.Load() != 2 {
		t.Fatalf("statuses %v, upstream %d", got, hits.Load())
	}
	r := g.Do("GET", "/a", nil, "")
	if r.Status != 200 {
		t.Fatalf("after all finished: %d (counter not released)", r.Status)
	}
	// Rejection body.
	var wg sync.WaitGroup
	for i := 0; i < 2; i++ {
		wg.Add(1)
		go func() { defer wg.Done(); g.Do("GET", "/a", nil, "") }()
	}
	waitHits(t, hits, 5)
	r = g.Do("GET", "/a", nil, "")
	wg.Wait()
	if r.Status != 503 || r.Body != `{"error_msg":"busy"}`+"\n" {
		t.Fatalf("reject: %d %q", r.Status, r.Body)
	}
}

func TestBurstDelays(t *testing.T) {
	g := plugintest.Start(t, []*plugin.Def{limitconn.Def()}, nil)
	up, _ := slowUpstream(t, 400*time.Millisecond)
	g.MustAdmin("PUT", "/apisix/admin/routes/1", route("/a", `{"conn":1,"burst":1,"default_conn_delay":0.2,"key":"remote_addr"}`, up))
	start := time.Now()
	var mu sync.Mutex
	var times []time.Duration
	got := map[int]int{}
	var wg sync.WaitGroup
	for i := 0; i < 3; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := g.Do("GET", "/a", nil, "")
			mu.Lock()
			got[r.Status]++
			if r.Status == 200 {
				times = append(times, time.Since(start))
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	if got[200] != 2 || got[503] != 1 {
		t.Fatalf("statuses %v", got)
	}
	slow := max(times[0], times[1])
	if slow < 550*time.Millisecond {
		t.Fatalf("burst request was not delayed: %v", times)
	}
}

// TestReleasedOnEveryPath checks that the count goes back down when the
// upstream is unreachable and when the client disconnects mid-request.
func TestReleasedOnEveryPath(t *testing.T) {
	g := plugintest.Start(t, []*plugin.Def{limitconn.Def()}, nil)
	g.MustAdmin("PUT", "/apisix/admin/routes/1", route("/down", `{"conn":1,"burst":0,"default_conn_delay":0.1,"key":"remote_addr"}`, `{"nodes":{"127.0.0.1:1":1}}`))
	for i := 0; i < 3; i++ {
		if r := g.Do("GET", "/down", nil, ""); r.Status != 502 {
			t.Fatalf("request %d: %d, want 502 (not a leaked 503)", i, r.Status)
		}
	}
	up, hits := slowUpstream(t, 500*time.Millisecond)
	g.MustAdmin("PUT", "/apisix/admin/routes/2", route("/slow", `{"conn":1,"burst":0,"default_conn_delay":0.1,"key":"remote_addr"}`, up))
	for i := 0; i < 3; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		req, _ := http.NewRequestWithContext(ctx, "GET", g.ProxyURL+"/slow", nil)
		if _, err := http.DefaultClient.Do(req); err == nil {
			t.Fatal("want client timeout")
		}
		cancel()
		// Wait for the gateway to notice and run the log phase.
		deadline := time.Now().Add(3 * time.Second)
		for {
			r := g.Do("GET", "/slow", nil, "")
			if r.Status == 200 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("round %d: counter never released (%d)", i, r.Status)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	if hits.Load() < 3 {
		t.Fatalf("upstream hits %d", hits.Load())
	}
}

func TestRules(t *testing.T) {
	g := plugintest.Start(t, []*plugin.Def{limitconn.Def()}, nil)
	up, hits := slowUpstream(t, time.Second)
	g.MustAdmin("PUT", "/apisix/admin/routes/1", route("/a", `{"default_conn_delay":0.1,"rules":[{"conn":1,"burst":0,"key":"${http_user}"}]}`, up))
	// No rule applies without the header: 500.
	if r := g.Do("GET", "/a", nil, ""); r.Status != 500 {
		t.Fatalf("no rule: %d", r.Status)
	}
	var wg sync.WaitGroup
	var s1, s2 int
	wg.Add(2)
	go func() { defer wg.Done(); s1 = g.Do("GET", "/a", map[string]string{"User": "jack"}, "").Status }()
	go func() { defer wg.Done(); s2 = g.Do("GET", "/a", map[string]string{"User": "rose"}, "").Status }()
	waitHits(t, hits, 2)
	s3 := g.Do("GET", "/a", map[string]string{"User": "jack"}, "").Status
	wg.Wait()
	if s1 != 200 || s2 != 200 || s3 != 503 {
		t.Fatalf("statuses %d %d %d", s1, s2, s3)
	}
}

type respWriter struct{ h engine.Header }

func (w *respWriter) Header() engine.Header       { return w.h }
func (w *respWriter) WriteHeader(int)             {}
func (w *respWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *respWriter) Flush() error                { return nil }

func newPlugin(tb testing.TB) *limitconn.Plugin {
	inst, err := limitconn.New(json.RawMessage(`{"conn":1000000,"burst":0,"default_conn_delay":0.1,"key":"remote_addr"}`), &plugin.BuildEnv{Parent: "/routes/1", ConfHash: "h", Shared: &plugin.Shared{}})
	if err != nil {
		tb.Fatal(err)
	}
	return inst.(*limitconn.Plugin)
}

func TestUnitAccessLogBalance(t *testing.T) {
	p := newPlugin(t)
	c := engine.AcquireCtx()
	c.W = &respWriter{h: engine.Header{}}
	c.RemoteAddr = netip.MustParseAddrPort("10.0.0.1:5000")
	r := &plugin.Request{Ctx: c}
	for i := 0; i < 3; i++ {
		p.Access(r)
		if p.InFlight("10.0.0.1") != 1 {
			t.Fatalf("in flight %d", p.InFlight("10.0.0.1"))
		}
		p.Log(r)
		p.Log(r) // a second log phase must not decrement twice
		if p.InFlight("10.0.0.1") != 0 {
			t.Fatalf("after log %d", p.InFlight("10.0.0.1"))
		}
	}
}

func BenchmarkLimitConn(b *testing.B) {
	p := newPlugin(b)
	c := engine.AcquireCtx()
	c.W = &respWriter{h: engine.Header{}}
	c.RemoteAddr = netip.MustParseAddrPort("10.0.0.1:5000")
	r := &plugin.Request{Ctx: c}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		p.Access(r)
		p.Log(r)
	}
}
