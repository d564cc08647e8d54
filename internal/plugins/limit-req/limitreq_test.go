package limitreq_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/engine"
	"github.com/sluice-gw/sluice/internal/plugin"
	limitreq "github.com/sluice-gw/sluice/internal/plugins/limit-req"
	"github.com/sluice-gw/sluice/internal/plugins/plugintest"
)

const prefix = `{"error_msg":"failed to check the configuration of plugin limit-req err: `

func route(uri, conf, upstream string) string {
	return `{"uri":"` + uri + `","plugins":{"limit-req":` + conf + `},"upstream":` + upstream + `}`
}

func TestConfigValidation(t *testing.T) {
	g := plugintest.Start(t, []*plugin.Def{limitreq.Def()}, nil)
	up := `{"nodes":{"127.0.0.1:1":1}}`
	tests := []struct {
		name, conf string
		status     int
		want       string
	}{
		{"minimal", `{"rate":1,"burst":0,"key":"remote_addr"}`, 201, ""},
		{"all fields", `{"rate":0.5,"burst":2.5,"key":"$http_a $http_b","key_type":"var_combination","rejected_code":429,"rejected_msg":"x","nodelay":true,"allow_degradation":true,"policy":"local"}`, 201, ""},
		{"negative rate", `{"rate":-1,"burst":0,"key":"remote_addr"}`, 400, prefix + `property \"rate\" validation failed: expected -1 to be greater than 0"}`},
		{"missing key", `{"rate":1,"burst":0}`, 400, prefix + `property \"key\" is required"}`},
		{"negative burst", `{"rate":1,"burst":-1,"key":"remote_addr"}`, 400, prefix + `property \"burst\" validation failed: expected -1 to be at least 0"}`},
		{"constant key_type", `{"rate":1,"burst":0,"key":"k","key_type":"constant"}`, 400, prefix + `property \"key_type\" validation failed: matches none of the enum values"}`},
		{"redis needs host", `{"rate":1,"burst":0,"key":"remote_addr","policy":"redis"}`, 400, prefix + `then clause did not match"}`},
		{"redis refused", `{"rate":1,"burst":0,"key":"remote_addr","policy":"redis","redis_host":"127.0.0.1"}`, 400, prefix + `policy redis is not supported yet"}`},
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

func TestRejectBeyondBurst(t *testing.T) {
	g := plugintest.Start(t, []*plugin.Def{limitreq.Def()}, nil)
	rec := plugintest.NewRecorder(t)
	g.MustAdmin("PUT", "/apisix/admin/routes/1", route("/a", `{"rate":0.1,"burst":0,"key":"remote_addr","rejected_code":503}`, rec.Upstream()))
	g.MustAdmin("PUT", "/apisix/admin/routes/2", route("/msg", `{"rate":0.1,"burst":0,"key":"remote_addr","rejected_code":429,"rejected_msg":"take it easy"}`, rec.Upstream()))
	got := []int{}
	for i := 0; i < 4; i++ {
		got = append(got, g.Do("GET", "/a", nil, "").Status)
	}
	if fmt.Sprint(got) != "[200 503 503 503]" {
		t.Fatalf("statuses %v", got)
	}
	if rec.Count() != 1 {
		t.Fatalf("upstream saw %d", rec.Count())
	}
	g.Do("GET", "/msg", nil, "")
	r := g.Do("GET", "/msg", nil, "")
	if r.Status != 429 || r.Body != `{"error_msg":"take it easy"}`+"\n" {
		t.Fatalf("reject %d %q", r.Status, r.Body)
	}
	// Another key has its own bucket.
	g.MustAdmin("PUT", "/apisix/admin/routes/3", route("/h", `{"rate":0.1,"burst":0,"key":"http_user"}`, rec.Upstream()))
	for _, u := range []string{"a", "b"} {
		if r := g.Do("GET", "/h", map[string]string{"User": u}, ""); r.Status != 200 {
			t.Fatalf("user %s: %d", u, r.Status)
		}
	}
}

// TestDelayWithinBurst sends requests in parallel at rate 2/s with burst
// 3: four pass (one at once, three delayed 0.5, 1, 1.5 s) and the rest
// are rejected; with nodelay the same four pass at once. The rate is low
// so that requests spread over up to ~0.4 s by a loaded machine still
// meet a full bucket.
func TestDelayWithinBurst(t *testing.T) {
	g := plugintest.Start(t, []*plugin.Def{limitreq.Def()}, nil)
	rec := plugintest.NewRecorder(t)
	g.MustAdmin("PUT", "/apisix/admin/routes/1", route("/delay", `{"rate":2,"burst":3,"key":"remote_addr"}`, rec.Upstream()))
	g.MustAdmin("PUT", "/apisix/admin/routes/2", route("/nodelay", `{"rate":2,"burst":3,"key":"remote_addr","nodelay":true}`, rec.Upstream()))
	for _, tc := range []struct {
		path     string
		minSlow  time.Duration
		maxTotal time.Duration
	}{
		{"/delay", 1250 * time.Millisecond, 5 * time.Second},
		{"/nodelay", 0, time.Second},
	} {
		t.Run(tc.path, func(t *testing.T) {
			start := time.Now()
			var wg sync.WaitGroup
			var mu sync.Mutex
			ok, rejected := 0, 0
			var slowest time.Duration
			for i := 0; i < 8; i++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					r := g.Do("GET", tc.path, nil, "")
					el := time.Since(start)
					mu.Lock()
					defer mu.Unlock()
					switch r.Status {
					case 200:
						ok++
						slowest = max(slowest, el)
					case 503:
						rejected++
					}
				}()
			}
			wg.Wait()
			if ok != 4 || rejected != 4 {
				t.Fatalf("ok=%d rejected=%d", ok, rejected)
			}
			if slowest < tc.minSlow || time.Since(start) > tc.maxTotal {
				t.Fatalf("slowest accepted after %v (want >= %v), total %v", slowest, tc.minSlow, time.Since(start))
			}
		})
	}
}

// TestDelayHonoursClientCancel checks that a delayed request whose client
// gives up never reaches the upstream.
func TestDelayHonoursClientCancel(t *testing.T) {
	g := plugintest.Start(t, []*plugin.Def{limitreq.Def()}, nil)
	rec := plugintest.NewRecorder(t)
	g.MustAdmin("PUT", "/apisix/admin/routes/1", route("/slow", `{"rate":0.5,"burst":5,"key":"remote_addr"}`, rec.Upstream()))
	if r := g.Do("GET", "/slow", nil, ""); r.Status != 200 {
		t.Fatal(r.Status)
	}
	// The next request would wait 2 s; the client gives up after 200 ms.
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", g.ProxyURL+"/slow", nil)
	if _, err := http.DefaultClient.Do(req); err == nil {
		t.Fatal("request finished despite the delay")
	}
	time.Sleep(2500 * time.Millisecond)
	if rec.Count() != 1 {
		t.Fatalf("cancelled request reached the upstream: %d", rec.Count())
	}
}

func TestUnitSleepCancel(t *testing.T) {
	c := engine.AcquireCtx()
	ctx, cancel := context.WithCancel(context.Background())
	c.Context = ctx
	w := &respWriter{h: engine.Header{}}
	c.W = w
	r := &plugin.Request{Ctx: c}
	go func() { time.Sleep(20 * time.Millisecond); cancel() }()
	start := time.Now()
	limitreq.Sleep(r, 5*time.Second)
	if time.Since(start) > time.Second || !r.Exited() || w.status != 499 {
		t.Fatalf("sleep took %v exited=%v status=%d", time.Since(start), r.Exited(), w.status)
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

func BenchmarkLimitReq(b *testing.B) {
	inst, err := limitreq.New(json.RawMessage(`{"rate":1e12,"burst":1e12,"key":"remote_addr","nodelay":true}`), &plugin.BuildEnv{Parent: "/routes/1", ConfHash: "h", Shared: &plugin.Shared{}})
	if err != nil {
		b.Fatal(err)
	}
	p := inst.(*limitreq.Plugin)
	c := engine.AcquireCtx()
	c.W = &respWriter{h: engine.Header{}}
	c.RemoteAddr = netip.MustParseAddrPort("10.0.0.1:5000")
	r := &plugin.Request{Ctx: c}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		p.Access(r)
	}
	if r.Exited() {
		b.Fatal("rejected")
	}
}
