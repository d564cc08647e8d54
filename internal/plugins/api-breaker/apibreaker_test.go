package apibreaker_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/engine"
	"github.com/sluice-gw/sluice/internal/plugin"
	apibreaker "github.com/sluice-gw/sluice/internal/plugins/api-breaker"
	"github.com/sluice-gw/sluice/internal/plugins/plugintest"
)

const prefix = `{"error_msg":"failed to check the configuration of plugin api-breaker err: `

func route(id, conf, upstream string) string {
	return `{"uri":"/` + id + `","plugins":{"api-breaker":` + conf + `},"upstream":` + upstream + `}`
}

// statusUpstream answers with the status in the X-Code request header
// (200 without it) and counts requests.
func statusUpstream(t *testing.T) (string, *atomic.Int64) {
	var n atomic.Int64
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		code := 200
		if c, err := strconv.Atoi(r.Header.Get("X-Code")); err == nil {
			code = c
		}
		w.WriteHeader(code)
		_, _ = w.Write([]byte("upstream"))
	}))
	t.Cleanup(s.Close)
	return fmt.Sprintf(`{"type":"roundrobin","nodes":{"%s":1}}`, strings.TrimPrefix(s.URL, "http://")), &n
}

func TestConfigValidation(t *testing.T) {
	g := plugintest.Start(t, []*plugin.Def{apibreaker.Def()}, nil)
	up := `{"nodes":{"127.0.0.1:1":1}}`
	tests := []struct {
		name, conf string
		status     int
		want       string
	}{
		{"minimal", `{"break_response_code":502}`, 201, ""},
		{"full", `{"break_response_code":502,"break_response_body":"down","break_response_headers":[{"key":"X-Why","value":"$remote_addr"}],"max_breaker_sec":10,"unhealthy":{"http_statuses":[500,503],"failures":2},"healthy":{"http_statuses":[200,201],"successes":1}}`, 201, ""},
		{"missing code", `{}`, 400, prefix + `property \"break_response_code\" is required"}`},
		{"code range", `{"break_response_code":199}`, 400, prefix + `property \"break_response_code\" validation failed: expected 199 to be at least 200"}`},
		{"max_breaker_sec", `{"break_response_code":502,"max_breaker_sec":2}`, 400, prefix + `property \"max_breaker_sec\" validation failed: expected 2 to be at least 3"}`},
		{"unhealthy status", `{"break_response_code":502,"unhealthy":{"http_statuses":[499]}}`, 400, prefix + `property \"unhealthy\" validation failed: property \"http_statuses\" validation failed: failed to validate item 1: expected 499 to be at least 500"}`},
		{"healthy duplicate", `{"break_response_code":502,"healthy":{"http_statuses":[200,200]}}`, 400, prefix + `property \"healthy\" validation failed: property \"http_statuses\" validation failed: expected unique items but items 1 and 2 are equal"}`},
		{"failures zero", `{"break_response_code":502,"unhealthy":{"failures":0}}`, 400, prefix + `property \"unhealthy\" validation failed: property \"failures\" validation failed: expected 0 to be at least 1"}`},
		{"header without value", `{"break_response_code":502,"break_response_headers":[{"key":"a"}]}`, 400, prefix + `property \"break_response_headers\" validation failed: failed to validate item 1: property \"value\" is required"}`},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := g.Admin("PUT", fmt.Sprintf("/apisix/admin/routes/v%d", i), route("v", tc.conf, up))
			if r.Status != tc.status {
				t.Fatalf("status %d, want %d: %s", r.Status, tc.status, r.Body)
			}
			if tc.want != "" && strings.TrimSpace(r.Body) != tc.want {
				t.Fatalf("body %s\nwant %s", r.Body, tc.want)
			}
		})
	}
}

// TestTripAndRecover: three 500s open the breaker for 2 s (2^1); the
// upstream is not contacted meanwhile; afterwards requests pass again, and
// three 200s reset the count so that it takes three new 500s to trip.
func TestTripAndRecover(t *testing.T) {
	g := plugintest.Start(t, []*plugin.Def{apibreaker.Def()}, nil)
	up, hits := statusUpstream(t)
	g.MustAdmin("PUT", "/apisix/admin/routes/1", route("a", `{"break_response_code":502,"break_response_body":"{\"msg\":\"broken\"}","break_response_headers":[{"key":"Content-Type","value":"application/json"},{"key":"X-Client","value":"$remote_addr"}],"max_breaker_sec":10}`, up))
	bad := map[string]string{"X-Code": "500"}
	for i := 0; i < 3; i++ {
		if r := g.Do("GET", "/a", bad, ""); r.Status != 500 {
			t.Fatalf("failure %d: %d", i, r.Status)
		}
	}
	r := g.Do("GET", "/a", nil, "")
	if r.Status != 502 || r.Body != `{"msg":"broken"}` || r.Header.Get("Content-Type") != "application/json" || r.Header.Get("X-Client") != "127.0.0.1" {
		t.Fatalf("open breaker: %d %q %v", r.Status, r.Body, r.Header)
	}
	if hits.Load() != 3 {
		t.Fatalf("upstream contacted while open: %d", hits.Load())
	}
	// Another URI on the same route is not affected (state is host+uri).
	g.MustAdmin("PUT", "/apisix/admin/routes/2", `{"uris":["/b","/c"],"plugins":{"api-breaker":{"break_response_code":502}},"upstream":`+up+`}`)
	for i := 0; i < 3; i++ {
		g.Do("GET", "/b", bad, "")
	}
	if r := g.Do("GET", "/b", nil, ""); r.Status != 502 || !strings.Contains(r.Body, "502 Bad Gateway") {
		t.Fatalf("/b open: %d %q", r.Status, r.Body)
	}
	if r := g.Do("GET", "/c", nil, ""); r.Status != 200 {
		t.Fatalf("/c: %d", r.Status)
	}

	deadline := time.Now().Add(5 * time.Second)
	for g.Do("GET", "/a", nil, "").Status == 502 {
		if time.Now().After(deadline) {
			t.Fatal("breaker never closed")
		}
		time.Sleep(100 * time.Millisecond)
	}
	// That request got a 200: one success. Two more reset the state.
	g.Do("GET", "/a", nil, "")
	g.Do("GET", "/a", nil, "")
	for i := 0; i < 2; i++ {
		g.Do("GET", "/a", bad, "")
	}
	if r := g.Do("GET", "/a", nil, ""); r.Status != 200 {
		t.Fatalf("after reset two failures must not trip: %d", r.Status)
	}
}

// TestBreakerUnit drives the phases directly: four trips with failures=1
// (2^4 s, capped by max_breaker_sec) open the breaker, and `successes`
// healthy responses close it.
func TestBreakerUnit(t *testing.T) {
	shared := &plugin.Shared{}
	inst, err := apibreaker.New(json.RawMessage(`{"break_response_code":503,"unhealthy":{"failures":1},"max_breaker_sec":3}`), &plugin.BuildEnv{Parent: "/routes/1", ConfHash: "h", Shared: shared})
	if err != nil {
		t.Fatal(err)
	}
	p := inst.(*apibreaker.Plugin)
	req := func(upstream int) *plugin.Request {
		c := engine.AcquireCtx()
		c.W = &respWriter{h: engine.Header{}}
		c.Host, c.Path = "example.com", "/x"
		c.RemoteAddr = netip.MustParseAddrPort("10.0.0.1:1")
		if upstream != 0 {
			c.UpstreamStatus = append(c.UpstreamStatus, upstream)
		}
		return &plugin.Request{Ctx: c}
	}
	for i := 0; i < 4; i++ {
		p.Log(req(500))
	}
	r := req(0)
	p.Access(r)
	if !r.Exited() || r.W.(*respWriter).status != 503 {
		t.Fatal("breaker should be open")
	}
	// Three successes close it.
	for i := 0; i < 3; i++ {
		p.Log(req(200))
	}
	r = req(0)
	p.Access(r)
	if r.Exited() {
		t.Fatal("breaker should be closed after successes")
	}
}

type respWriter struct {
	h      engine.Header
	status int
}

func (w *respWriter) Header() engine.Header       { return w.h }
func (w *respWriter) WriteHeader(s int)           { w.status = s }
func (w *respWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *respWriter) Flush() error                { return nil }

func BenchmarkAPIBreaker(b *testing.B) {
	inst, err := apibreaker.New(json.RawMessage(`{"break_response_code":502}`), &plugin.BuildEnv{Parent: "/routes/1", ConfHash: "h", Shared: &plugin.Shared{}})
	if err != nil {
		b.Fatal(err)
	}
	p := inst.(*apibreaker.Plugin)
	c := engine.AcquireCtx()
	c.W = &respWriter{h: engine.Header{}}
	c.Host, c.Path = "example.com", "/api/users"
	c.UpstreamStatus = append(c.UpstreamStatus, 200)
	r := &plugin.Request{Ctx: c}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		p.Access(r)
		p.Log(r)
	}
}
